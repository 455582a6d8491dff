"""The Python API and the report: what `check` returns, accepts, and renders."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

from conftest import fixture, load
from plancheck import check
from plancheck.render import render
from plancheck.records.report import Status


def test_import_plancheck_does_not_import_torch():
    code = ("import sys, plancheck, plancheck.cli, plancheck.records.report, plancheck.render.report; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_paths_and_dicts_give_the_same_report():
    a, b = fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic")
    by_path = check(a, b)
    by_dict = check(load(a), load(b), source_dataset_json=load(a.parent / "dataset.json"),
                    target_dataset_json=load(b.parent / "dataset.json"))
    assert by_path.compatible is by_dict.compatible is False
    assert [r.to_dict() for r in by_path.tensors] == [r.to_dict() for r in by_dict.tensors]


def test_report_json_schema():
    report = check(fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic"))
    d = json.loads(render(report, "json"))
    assert d["compatible"] is False
    assert d["configuration"] == {"source": "3d_fullres", "target": "3d_fullres"}
    assert set(d["nnunet_first_failure"]) >= {"key", "reason"}
    assert d["nnunet_first_failure"]["reason"] in ("missing", "shape")
    statuses = {s.value for s in Status}
    for row in d["tensors"]:
        assert row["status"] in statuses and isinstance(row["keys"], list) and row["keys"]
    s = d["summary"]
    assert sum(s[k] for k in statuses) == len(d["tensors"])
    assert s["tensors_total"] == sum(p["tensors_total"] for p in s["parts"].values())
    assert set(s["parts"]) == {"encoder", "decoder"}
    # every raw key of the target appears exactly once
    keys = [k for row in d["tensors"] if row["target_shape"] is not None for k in row["keys"]]
    assert len(keys) == len(set(keys))


def test_summary_counts_are_consistent_with_rows():
    report = check(fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic"))
    rows = [r for r in report.tensors if r.target_shape is not None and r.status is not Status.HEAD]
    assert report.summary.tensors_total == len(rows)
    assert report.summary.tensors_loadable == sum(r.status is Status.OK for r in rows)
    assert report.summary.parameters_total == sum(r.parameters for r in rows)


def test_aliases_are_folded_in_text_and_kept_in_json():
    path = fixture("Dataset901_CTIsotropic")
    report = check(path, path)
    assert report.compatible
    first = report.tensors[0]
    assert first.key == "encoder.stages.0.0.convs.0.conv.weight"
    assert set(first.keys) == {
        "encoder.stages.0.0.convs.0.conv.weight",
        "encoder.stages.0.0.convs.0.all_modules.0.weight",
        "decoder.encoder.stages.0.0.convs.0.conv.weight",
        "decoder.encoder.stages.0.0.convs.0.all_modules.0.weight",
    }
    text = str(report)
    assert "decoder.encoder.stages.0.0.convs.0.conv.weight" not in text
    assert text.startswith("COMPATIBLE")


def test_text_report_order_verdict_first_failure_counts_table():
    report = check(fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic"))
    text = str(report)
    assert text.startswith("INCOMPATIBLE: nnU-Net's load_pretrained_weights would stop at " + report.first_failure.key)
    assert text.index("Root causes") < text.index("Would load") < text.index("Tensors")
    md = render(report, "markdown")
    assert "| status" in md and "### Root causes" in md


def test_no_dataset_json_uses_normalization_schemes(tmp_path):
    src = fixture("Dataset903_ProstateMRI")
    plans = load(src)
    lonely = tmp_path / "plans.json"
    lonely.write_text(json.dumps(plans))
    report = check(lonely, src)
    assert report.source.input_channels == 2
    assert report.source.segmentation_heads is None
    assert "normalization_schemes" in report.source.input_channels_from
    assert any("no dataset.json" in n for n in report.to_dict()["notes"])
    assert report.compatible


def test_target_configuration():
    path = fixture("Dataset901_CTIsotropic")
    report = check(path, path, "3d_fullres", target_configuration="2d")
    assert not report.compatible
    assert report.to_dict()["configuration"] == {"source": "3d_fullres", "target": "2d"}


def test_cascade_uses_foreground_labels():
    path = fixture("Dataset901_CTIsotropic")
    dj = load(path.parent / "dataset.json")
    n_fg = len([v for v in dj["labels"].values() if v != 0])
    report = check(path, path, "3d_cascade_fullres")
    assert report.target.input_channels == len(dj["channel_names"]) + n_fg
    assert "cascade" in report.target.input_channels_from
    plans = copy.deepcopy(load(path))
    # without a dataset.json, a cascade cannot be sized: a clear input error
    from plancheck.errors import InputError
    import pytest

    with pytest.raises(InputError, match="cascade"):
        check(plans, plans, "3d_cascade_fullres")


def test_percentages_never_round_up_to_100_and_agree_everywhere():
    """A pair that loads all but a few parameters never shows 100.0%; check (text, markdown) and matrix agree."""
    import dataclasses

    from plancheck.matrix import Matrix, MatrixRow

    report = check(fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic"))
    s = report.summary
    almost = dataclasses.replace(s, parameters_loadable=s.parameters_total - 1, tensors_loadable=s.tensors_total - 1)
    report = dataclasses.replace(report, summary=almost)
    for fmt in ("text", "markdown"):
        out = render(report, fmt)
        assert "100.0%" not in out.split("Segmentation head")[0].split("encoder")[0], out
        assert f"{s.parameters_total - 1:,} of {s.parameters_total:,} parameters (99.9%)" in out
    row = MatrixRow(target="t", configuration="3d_fullres", compatible=False, parameter_share=almost.parameter_share)
    assert "99.9%" in render(Matrix(source="s", rows=(row,)), "text")
    # exact tenths are not pushed down by floating point (29 of 100 is 29.0%, not 28.9%)
    row = MatrixRow(target="t", configuration="3d_fullres", compatible=False, parameter_share=29 / 100)
    assert "29.0%" in render(Matrix(source="s", rows=(row,)), "text")
    everything = dataclasses.replace(s, parameters_loadable=s.parameters_total, tensors_loadable=s.tensors_total)
    assert f"{s.parameters_total:,} of {s.parameters_total:,} parameters (100.0%)" in render(
        dataclasses.replace(report, summary=everything), "text")


def test_check_refuses_an_unknown_option_naming_the_valid_ones():
    import pytest

    from plancheck.errors import UsageError

    a = fixture("Dataset901_CTIsotropic")
    with pytest.raises(UsageError) as e:
        check(a, a, allow_imports=["x"])
    message = str(e.value)
    assert "unknown option 'allow_imports'" in message
    assert "allow_import" in message.split("valid options:")[1] and "target_trainer" in message
    assert isinstance(e.value, TypeError)  # what Python raises for an unknown keyword: callers catching it still do
