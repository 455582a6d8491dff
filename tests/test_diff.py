"""``plancheck diff``: categories and paths on fixture pairs, old format and inheritance, exit codes, no torch."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FIXTURES, ROOT, fixture, fixture_plans, load
from plancheck.errors import ConfigurationNotFound, PlansError, UsageError
from plancheck.inputs.paths import DATASET_JSON, PathSyntaxError, format_path, locate, parse_path
from plancheck.inputs.plans import load_plans, resolve_configuration
from plancheck.compare.plansdiff import (
    CONFIGURATION_FIELDS,
    PERMUTATION_NOTE,
    PLANS_FIELDS,
    Category,
    PlansDiff,
    diff,
    preprocessing_warnings,
)
from plancheck.render import render

D901 = "Dataset901_CTIsotropic"
D902 = "Dataset902_CTAnisotropic"
D907 = "Dataset907_CTIsotropicOther"
D908 = "Dataset908_CTIsotropicCropped"
ARCH = "configurations.3d_fullres.architecture.arch_kwargs"


def by_path(result: PlansDiff) -> dict[str, object]:
    """Rendered canonical path -> change (fails on a path reported twice)."""
    out = {}
    for change in result.changes:
        key = format_path(change.path)
        assert key not in out, f"{key} reported twice"
        out[key] = change
    return out


def categories(result: PlansDiff) -> set[Category]:
    return {c.category for c in result.changes}


def src(change) -> str:
    return format_path(change.source_path)


def tgt(change) -> str:
    return format_path(change.target_path)


# --- categories and paths on fixture pairs --------------------------------------------------------------------------


def test_901_vs_902_architecture_elements_and_preprocessing():
    a, b = load(fixture(D901)), load(fixture(D902))
    result = diff(fixture(D901), fixture(D902), "3d_fullres")
    changes = by_path(result)
    kw_a = a["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw_b = b["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert kw_a["n_stages"] == kw_b["n_stages"]  # same depth: element-level changes
    for key in ("strides", "kernel_sizes"):
        differing = [i for i, (x, y) in enumerate(zip(kw_a[key], kw_b[key])) if x != y]
        assert differing, key
        for i in differing:
            change = changes[f"{ARCH}.{key}[{i}]"]
            assert change.category is Category.ARCHITECTURE
            assert (change.source, change.target) == (kw_a[key][i], kw_b[key][i])
            assert src(change) == tgt(change) == f"{ARCH}.{key}[{i}]"
        assert f"{ARCH}.{key}" not in changes  # never the whole list at unchanged depth
        assert not any(p.startswith(f"{ARCH}.{key}[") and p.count("[") > 1 for p in changes)  # never strides[4][0]
    spacing = changes["configurations.3d_fullres.spacing"]
    assert spacing.category is Category.PREPROCESSING and spacing.kind == "changed"
    assert changes["dataset_name"].category is Category.IDENTITY
    assert changes["foreground_intensity_properties_per_channel.0.mean"].category is Category.PREPROCESSING
    assert any(p.startswith("dataset.json:labels.") for p in changes)  # liver tumor vs spleen/pancreas
    assert result.has_blocking


def test_901_vs_907_only_labels_and_identity():
    result = diff(fixture(D901), fixture(D907))
    assert result.configurations == tuple((c, c) for c in load(fixture(D901))["configurations"])
    assert categories(result) == {Category.IO, Category.IDENTITY}
    io = [format_path(c.path) for c in result.changes if c.category is Category.IO]
    assert io and all(p.startswith("dataset.json:labels.") for p in io)
    added = {c.path[-1] for c in result.changes if c.category is Category.IO and c.kind == "added"}
    assert {"left kidney", "right kidney", "gallbladder"} <= added
    # labels are io; they block only where they change the input channels: the cascade stage's
    # extra inputs are the foreground labels (3 vs 5 here), compared among the configurations
    assert result.has_blocking
    assert not diff(fixture(D901), fixture(D907), "3d_fullres").has_blocking


@pytest.mark.parametrize("plans", ["nnUNetPlans", "nnUNetResEncUNetLPlans"])
def test_901_vs_908_patch_and_batch_size_are_training(plans):
    result = diff(fixture(D901, plans), fixture(D908, plans))
    assert Category.ARCHITECTURE not in categories(result) and Category.IO not in categories(result)
    training = {format_path(c.path) for c in result.changes if c.category is Category.TRAINING}
    a, b = load(fixture(D901, plans))["configurations"], load(fixture(D908, plans))["configurations"]
    for name in ("2d", "3d_fullres"):
        for key in ("patch_size", "batch_size"):
            if a[name][key] != b[name][key]:
                assert f"configurations.{name}.{key}" in training
    assert "configurations.2d.patch_size" in training
    assert not result.has_blocking


def test_908_patch_size_differs_at_same_depth_resenc_l():
    result = diff(fixture(D901, "nnUNetResEncUNetLPlans"), fixture(D908, "nnUNetResEncUNetLPlans"), "3d_fullres")
    patch = by_path(result)["configurations.3d_fullres.patch_size"]
    assert patch.category is Category.TRAINING
    assert isinstance(patch.source, list) and isinstance(patch.target, list)  # the whole vector, not patch_size[0]


def test_identical_files_have_no_change():
    for path in fixture_plans():
        result = diff(path, path)
        assert result.changes == () and not result.has_blocking, path


# --- old format ---------------------------------------------------------------------------------------------------


def test_old_format_is_understood():
    result = diff(FIXTURES / "Legacy902" / "nnUNetPlans.json", fixture(D902))
    assert Category.ARCHITECTURE not in categories(result)
    assert result.configurations  # every configuration compared
    assert not result.has_blocking


def test_old_format_field_is_named_by_its_old_name():
    legacy = load(FIXTURES / "Legacy902" / "nnUNetPlans.json")
    mutated = copy.deepcopy(legacy)
    cfg = mutated["configurations"]["3d_fullres"]
    cfg["pool_op_kernel_sizes"][2] = [2, 1, 1]
    cfg["conv_kernel_sizes"][0] = [3, 3, 3]
    result = diff(legacy, mutated, "3d_fullres")
    changes = by_path(result)
    assert set(changes) == {f"{ARCH}.strides[2]", f"{ARCH}.kernel_sizes[0]"}
    strides, kernels = changes[f"{ARCH}.strides[2]"], changes[f"{ARCH}.kernel_sizes[0]"]
    assert src(strides) == tgt(strides) == "configurations.3d_fullres.pool_op_kernel_sizes[2]"
    assert src(kernels) == "configurations.3d_fullres.conv_kernel_sizes[0]"
    assert strides.category is kernels.category is Category.ARCHITECTURE
    # against new-format plans: A is written in the old names, B in the new ones
    result = diff(mutated, fixture(D902), "3d_fullres")
    strides = by_path(result)[f"{ARCH}.strides[2]"]
    assert src(strides) == "configurations.3d_fullres.pool_op_kernel_sizes[2]"
    assert tgt(strides) == f"{ARCH}.strides[2]"


def test_old_format_features_and_depth_paths():
    legacy = load(FIXTURES / "Legacy902" / "nnUNetPlans.json")
    cfg = legacy["configurations"]["3d_fullres"]
    fewer = copy.deepcopy(legacy)
    fewer["configurations"]["3d_fullres"]["unet_max_num_features"] = cfg["UNet_base_num_features"] * 4
    changes = by_path(diff(legacy, fewer, "3d_fullres"))
    capped = [p for p in changes if p.startswith(f"{ARCH}.features_per_stage[")]
    assert capped
    for p in capped:  # B caps these stages; A follows the base up to its own cap
        stage = int(p.rsplit("[", 1)[1][:-1])
        capped_in_a = cfg["UNet_base_num_features"] * 2**stage > cfg["unet_max_num_features"]
        assert tgt(changes[p]) == "configurations.3d_fullres.unet_max_num_features"
        assert src(changes[p]) == "configurations.3d_fullres." + (
            "unet_max_num_features" if capped_in_a else "UNet_base_num_features"
        )
    base = copy.deepcopy(legacy)
    base["configurations"]["3d_fullres"]["UNet_base_num_features"] = 16
    changes = by_path(diff(legacy, base, "3d_fullres"))
    assert src(changes[f"{ARCH}.features_per_stage[0]"]) == "configurations.3d_fullres.UNet_base_num_features"
    shallower = copy.deepcopy(legacy)
    c = shallower["configurations"]["3d_fullres"]
    for key in ("n_conv_per_stage_encoder", "pool_op_kernel_sizes", "conv_kernel_sizes"):
        c[key] = c[key][:-1]
    c["n_conv_per_stage_decoder"] = c["n_conv_per_stage_decoder"][:-1]
    changes = by_path(diff(legacy, shallower, "3d_fullres"))
    assert src(changes[f"{ARCH}.n_stages"]) == "configurations.3d_fullres.n_conv_per_stage_encoder"
    assert src(changes[f"{ARCH}.strides"]) == "configurations.3d_fullres.pool_op_kernel_sizes"
    assert src(changes[f"{ARCH}.n_conv_per_stage"]) == "configurations.3d_fullres.n_conv_per_stage_encoder"


def test_old_format_moved_class_is_named_by_unet_class_name():
    result = diff(
        FIXTURES / "Legacy901ResEnc" / "nnUNetResEncUNetMPlans.json", fixture(D901, "nnUNetResEncUNetMPlans"),
        "3d_fullres",
    )
    changes = by_path(result)
    assert set(changes) == {"configurations.3d_fullres.architecture.network_class_name"}
    change = changes["configurations.3d_fullres.architecture.network_class_name"]
    assert change.category is Category.ARCHITECTURE
    assert src(change) == "configurations.3d_fullres.UNet_class_name"
    assert tgt(change) == "configurations.3d_fullres.architecture.network_class_name"
    assert "another module" in change.note


def test_old_format_class_nnunet_cannot_convert_still_diffs():
    legacy = load(FIXTURES / "Legacy902" / "nnUNetPlans.json")
    custom = copy.deepcopy(legacy)
    custom["configurations"]["3d_fullres"]["UNet_class_name"] = "MyUNet"
    result = diff(legacy, custom, "3d_fullres")
    change = by_path(result)["configurations.3d_fullres.architecture.network_class_name"]
    assert change.target == "MyUNet" and tgt(change) == "configurations.3d_fullres.UNet_class_name"
    assert any("MyUNet" in n for n in result.notes)


# --- inheritance --------------------------------------------------------------------------------------------------


def test_inherited_configuration_against_its_parent_in_another_file():
    inherits = FIXTURES / "Inherits901" / "nnUNetPlans.json"
    result = diff(inherits, fixture(D901), "3d_fullres_bs4", target_configuration="3d_fullres")
    assert result.configurations == (("3d_fullres_bs4", "3d_fullres"),)
    changes = by_path(result)
    batch = changes["configurations.3d_fullres_bs4.batch_size"]
    assert batch.category is Category.TRAINING and (batch.source, batch.target) == (4, 2)
    assert src(batch) == "configurations.3d_fullres_bs4.batch_size"
    assert tgt(batch) == "configurations.3d_fullres.batch_size"
    assert changes["configurations.3d_fullres_bs4.inherits_from"].category is Category.IDENTITY
    assert categories(result) == {Category.TRAINING, Category.IDENTITY}


def test_inherited_change_is_named_where_it_is_defined():
    plans = load(FIXTURES / "Inherits901" / "nnUNetPlans.json")
    parent_changed = copy.deepcopy(plans)
    parent_changed["configurations"]["3d_fullres"]["spacing"] = [2.0, 2.0, 2.0]
    parent_changed["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"][1] = [1, 2, 2]
    result = diff(parent_changed, fixture(D901), "3d_fullres_bs4", target_configuration="3d_fullres")
    changes = by_path(result)
    spacing = changes["configurations.3d_fullres_bs4.spacing"]
    assert spacing.category is Category.PREPROCESSING
    assert src(spacing) == "configurations.3d_fullres.spacing"  # A: defined in the parent
    strides = changes["configurations.3d_fullres_bs4.architecture.arch_kwargs.strides[1]"]
    assert src(strides) == "configurations.3d_fullres.architecture.arch_kwargs.strides[1]"
    assert strides.category is Category.ARCHITECTURE
    assert "inherited by 3d_fullres_bs4" in render(result, "text")


def test_two_level_chain_names_each_key_where_defined():
    path = FIXTURES / "Inherits901" / "nnUNetPlans.json"
    configs = load(path)["configurations"]
    grandchild = next(n for n, c in configs.items() if configs.get(c.get("inherits_from"), {}).get("inherits_from"))
    parent = configs[grandchild]["inherits_from"]
    result = diff(path, fixture(D901), grandchild, target_configuration="3d_fullres")
    changes = by_path(result)
    assert src(changes[f"configurations.{grandchild}.batch_size"]) == f"configurations.{grandchild}.batch_size"
    assert src(changes[f"configurations.{grandchild}.patch_size"]) == f"configurations.{parent}.patch_size"
    assert changes[f"configurations.{grandchild}.patch_size"].category is Category.TRAINING


def test_old_format_child_overrides_parent_old_field():
    legacy = load(FIXTURES / "Legacy902" / "nnUNetPlans.json")
    plans = copy.deepcopy(legacy)
    strides = copy.deepcopy(plans["configurations"]["3d_fullres"]["pool_op_kernel_sizes"])
    strides[1] = list(reversed(strides[1]))
    plans["configurations"]["3d_child"] = {"inherits_from": "3d_fullres", "pool_op_kernel_sizes": strides}
    plans["configurations"]["3d_fullres"]["conv_kernel_sizes"][0] = [5, 5, 5]
    result = diff(plans, legacy, "3d_child", target_configuration="3d_fullres")
    changes = by_path(result)
    arch = "configurations.3d_child.architecture.arch_kwargs"
    assert src(changes[f"{arch}.strides[1]"]) == "configurations.3d_child.pool_op_kernel_sizes[1]"
    assert src(changes[f"{arch}.kernel_sizes[0]"]) == "configurations.3d_fullres.conv_kernel_sizes[0]"
    assert tgt(changes[f"{arch}.kernel_sizes[0]"]) == "configurations.3d_fullres.conv_kernel_sizes[0]"


# --- notes, depth, dataset.json -----------------------------------------------------------------------------------


def test_permutation_note():
    a = load(fixture(D902))
    b = copy.deepcopy(a)
    strides = b["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"]
    i = next(i for i, s in enumerate(strides) if len(set(s)) > 1)
    strides[i] = list(reversed(strides[i]))
    change = by_path(diff(a, b, "3d_fullres"))[f"{ARCH}.strides[{i}]"]
    assert change.note == PERMUTATION_NOTE and change.category is Category.ARCHITECTURE


def test_depth_change_is_one_change_per_list():
    a = load(fixture(D901))
    b = copy.deepcopy(a)
    cfg = b["configurations"]["3d_fullres"]
    kw = cfg["architecture"]["arch_kwargs"]
    kw["n_stages"] -= 1
    for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage", "n_conv_per_stage_decoder"):
        kw[key] = kw[key][:-1]
    cfg["patch_size"] = [64, 64, 64]
    changes = by_path(diff(a, b, "3d_fullres"))
    expected = {f"{ARCH}.{k}" for k in ("n_stages", "features_per_stage", "kernel_sizes", "strides",
                                        "n_conv_per_stage", "n_conv_per_stage_decoder")}
    assert expected <= set(changes)
    assert not any("[" in p for p in changes if p.startswith(ARCH))
    assert all(changes[p].category is Category.ARCHITECTURE for p in expected)
    assert changes["configurations.3d_fullres.patch_size"].category is Category.TRAINING  # even with a depth change


def test_shape_neutral_arch_kwargs_are_training():
    a = load(fixture(D901))
    b = copy.deepcopy(a)
    kw = b["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw["norm_op_kwargs"]["eps"] = 1e-3
    kw["norm_op_kwargs"]["affine"] = False
    changes = by_path(diff(a, b, "3d_fullres"))
    assert changes[f"{ARCH}.norm_op_kwargs.eps"].category is Category.TRAINING
    assert changes[f"{ARCH}.norm_op_kwargs.affine"].category is Category.ARCHITECTURE


def test_plan_wide_fields():
    a = load(fixture(D901))
    b = copy.deepcopy(a)
    b["transpose_forward"] = [2, 0, 1]
    b["label_manager"] = "MyLabelManager"
    b["plans_name"] = "other"
    changes = by_path(diff(a, b, "3d_fullres"))
    assert changes["transpose_forward"].category is Category.PREPROCESSING
    assert changes["label_manager"].category is Category.IO
    assert changes["plans_name"].category is Category.IDENTITY


def test_channel_count_without_dataset_json_is_io():
    a = load(fixture(D901))
    b = copy.deepcopy(a)
    cfg = b["configurations"]["3d_fullres"]
    cfg["normalization_schemes"] = cfg["normalization_schemes"] * 2
    cfg["use_mask_for_norm"] = cfg["use_mask_for_norm"] * 2
    result = diff(a, b, "3d_fullres")
    change = by_path(result)["configurations.3d_fullres.normalization_schemes"]
    assert change.category is Category.IO and "input channels" in change.note
    assert any("no dataset.json" in n for n in result.notes)


def test_dataset_json_fields_and_old_modality_key():
    dataset = load(FIXTURES / D901 / "dataset.json")
    old = {k: v for k, v in dataset.items() if k != "channel_names"}
    old["modality"] = {"0": "MRI"}
    old["labels"] = {**dataset["labels"], "liver": 7}
    plans = fixture(D901)
    result = diff(plans, plans, "3d_fullres", dataset_json_a=FIXTURES / D901 / "dataset.json", dataset_json_b=old)
    changes = by_path(result)
    channel = changes["dataset.json:channel_names.0"]
    assert channel.category is Category.IO
    assert src(channel) == "dataset.json:channel_names.0" and tgt(channel) == "dataset.json:modality.0"
    assert changes["dataset.json:labels.liver"].target == 7


def test_default_compares_every_shared_configuration():
    inherits = FIXTURES / "Inherits901" / "nnUNetPlans.json"
    result = diff(fixture(D901), inherits)
    assert [a for a, _ in result.configurations] == list(load(fixture(D901))["configurations"])
    assert any("only in B" in n and "3d_fullres_bs4" in n for n in result.notes)


def test_errors():
    with pytest.raises(ConfigurationNotFound):
        diff(fixture(D901), fixture(D902), "4d")
    with pytest.raises(UsageError):
        diff(fixture(D901), fixture(D902), ("2d", "3d_fullres"), target_configuration="3d_fullres")
    with pytest.raises(UsageError):
        diff(fixture(D901), fixture(D902), target_configuration="3d_fullres")
    with pytest.raises(PlansError):
        diff(fixture(D901), FIXTURES / D901 / "dataset_fingerprint.json")


def test_dicts_are_not_mutated():
    a, b = load(fixture(D901)), load(FIXTURES / "Legacy902" / "nnUNetPlans.json")
    before = json.dumps([a, b], sort_keys=True)
    diff(a, b)
    assert json.dumps([a, b], sort_keys=True) == before


def test_preprocessing_warnings():
    result = diff(fixture(D901), fixture(D902), "3d_fullres")
    warnings = preprocessing_warnings(result, names=("source", "target"))
    preprocessing = [c for c in result.changes if c.category is Category.PREPROCESSING]
    statistics = [c for c in preprocessing if c.path[0] == "foreground_intensity_properties_per_channel"]
    assert len(statistics) > 1
    # one sentence per difference, except the intensity statistics: one sentence per channel
    channels = {c.path[1] for c in statistics}
    assert len(warnings) == len(preprocessing) - len(statistics) + len(channels)
    assert any(w.startswith("target spacing differs (configurations.3d_fullres.spacing)") for w in warnings)
    (stats,) = [w for w in warnings if w.startswith("foreground intensity statistics of channel 0")]
    for c in statistics:
        assert f"{c.path[-1]} " in stats
    assert all(("in source" in w and "in target" in w) or "source vs target" in w for w in warnings)


def test_classification_table_covers_every_field_planners_write():
    for path in fixture_plans():
        plans = load(path)
        assert set(plans) - {"configurations"} <= set(PLANS_FIELDS), path
        for name in plans["configurations"]:
            resolved = resolve_configuration(load_plans(plans), name)
            assert set(resolved.data) - {"architecture"} <= set(CONFIGURATION_FIELDS), (path, name)


# --- rendering and the command line -------------------------------------------------------------------------------


def test_json_output_shape(run_cli):
    code, out, err = run_cli("diff", fixture(D901), fixture(D902), "-c", "3d_fullres", "--format", "json")
    assert code == 1, err
    data = json.loads(out)
    assert set(data) == {"a", "b", "configurations", "changes", "summary", "blocking", "notes"}
    assert data["configurations"] == [{"a": "3d_fullres", "b": "3d_fullres"}]
    assert data["blocking"] is True
    assert list(data["summary"]) == [c.value for c in Category]
    assert sum(data["summary"].values()) == len(data["changes"])
    keys = {"category", "path", "source_path", "target_path", "kind", "source", "target", "note", "blocking"}
    assert all(set(c) == keys for c in data["changes"])
    strides = [c for c in data["changes"] if c["path"].startswith(f"{ARCH}.strides[")]
    assert strides and all(c["category"] == "architecture" and c["kind"] == "changed" for c in strides)
    assert parse_path(strides[0]["path"])[-2:] == ("strides", int(strides[0]["path"].rsplit("[", 1)[1][:-1]))


def test_text_output_groups_by_category(run_cli):
    code, out, _ = run_cli("diff", fixture(D901), fixture(D902), "-c", "3d_fullres")
    assert code == 1
    assert out.startswith("BLOCKING")
    order = [out.index(f"\n{c.value} ") for c in Category if f"\n{c.value} " in out]
    assert order == sorted(order) and len(order) == 5
    assert f"{ARCH}.strides[1]" in out


def test_markdown_output(run_cli):
    code, out, _ = run_cli("diff", fixture(D901), fixture(D907), "-c", "3d_fullres", "--format", "markdown")
    assert code == 0
    assert out.startswith("## plancheck diff") and "| io " in out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("Legacy902/nnUNetPlans.json", f"{D902}/nnUNetPlans.json"), 0),
        ((f"{D901}/nnUNetPlans.json", f"{D908}/nnUNetPlans.json"), 0),
        ((f"{D901}/nnUNetPlans.json", f"{D902}/nnUNetPlans.json"), 1),
        ((f"{D901}/nnUNetPlans.json", f"{D907}/nnUNetPlans.json", "-c", "3d_fullres"), 0),
        ((f"{D901}/nnUNetPlans.json", f"{D907}/nnUNetPlans.json", "-c", "3d_cascade_fullres"), 1),
        (("Inherits901/nnUNetPlans.json", f"{D901}/nnUNetPlans.json", "-c", "3d_fullres_bs4",
          "--target-configuration", "3d_fullres"), 0),
        ((f"{D901}/nnUNetPlans.json", f"{D902}/nnUNetPlans.json", "-c", "2d", "-c", "3d_fullres",
          "--target-configuration", "3d_fullres"), 2),
        ((f"{D901}/nnUNetPlans.json", f"{D902}/nnUNetPlans.json", "--format", "yaml"), 2),
        ((f"{D901}/nnUNetPlans.json", f"{D902}/nnUNetPlans.json", "-c", "4d"), 3),
        ((f"{D901}/nnUNetPlans.json", f"{D902}/missing.json"), 3),
        ((f"{D901}/nnUNetPlans.json", f"{D902}/dataset.json"), 3),
    ],
)
def test_exit_codes(run_cli, args, code):
    argv = [str(FIXTURES / a) if a.endswith(".json") else a for a in args]
    got, out, err = run_cli("diff", *argv)
    assert got == code, out + err
    if code >= 2:
        assert err.strip() and not out.strip()


def test_diff_does_not_import_torch():
    script = (
        "import sys\n"
        "import plancheck.cli\n"
        "assert 'torch' not in sys.modules, 'import plancheck.cli imported torch'\n"
        "from plancheck.cli import main\n"
        "try:\n"
        f"    main(['diff', {str(fixture(D901))!r}, {str(fixture(D902))!r}, '--format', 'json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 1, e.code\n"
        "main_result = [m for m in ('torch', 'nnunetv2', 'dynamic_network_architectures') if m in sys.modules]\n"
        "assert not main_result, main_result\n"
        "print('clean')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("clean")


# --- paths ----------------------------------------------------------------------------------------------------------

keys = st.text(min_size=0, max_size=12)
elements = st.one_of(keys, st.integers(min_value=-5, max_value=10**6))


@given(st.lists(elements, max_size=8).map(tuple))
def test_parse_format_round_trip(path):
    assert parse_path(format_path(path)) == path


@given(st.lists(elements, max_size=6).map(lambda p: (DATASET_JSON, *p)))
def test_dataset_json_paths_round_trip(path):
    text = format_path(path)
    assert text.startswith("dataset.json:")
    assert parse_path(text) == path


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("configurations", "3d_fullres", "architecture", "arch_kwargs", "strides", 4),
         "configurations.3d_fullres.architecture.arch_kwargs.strides[4]"),
        (("configurations", "3d_fullres", "pool_op_kernel_sizes", 4),
         "configurations.3d_fullres.pool_op_kernel_sizes[4]"),
        (("foreground_intensity_properties_per_channel", "0", "mean"),
         "foreground_intensity_properties_per_channel.0.mean"),
        ((DATASET_JSON, "channel_names"), "dataset.json:channel_names"),
        ((DATASET_JSON, "labels", "liver"), "dataset.json:labels.liver"),
        (("labels", "a.b", 0), 'labels["a.b"][0]'),
    ],
)
def test_format_path_examples(path, text):
    assert format_path(path) == text
    assert parse_path(text) == path


@pytest.mark.parametrize("text", [".a", "a..b", "a[", "a[x]", "a]b", 'a["unterminated', "a[0]b"])
def test_parse_path_rejects(text):
    with pytest.raises(PathSyntaxError):
        parse_path(text)


def test_locate_inherited_and_legacy():
    inherits = load_plans(FIXTURES / "Inherits901" / "nnUNetPlans.json")
    resolved = resolve_configuration(inherits, "3d_fullres_bs4")
    assert locate(inherits, resolved, ("batch_size",)) == ("configurations", "3d_fullres_bs4", "batch_size")
    assert locate(inherits, resolved, ("architecture", "arch_kwargs", "strides", 4)) == (
        "configurations", "3d_fullres", "architecture", "arch_kwargs", "strides", 4)
    legacy = load_plans(FIXTURES / "Legacy902" / "nnUNetPlans.json")
    resolved = resolve_configuration(legacy, "3d_fullres")
    cases = {
        ("architecture", "arch_kwargs", "strides", 4): ("pool_op_kernel_sizes", 4),
        ("architecture", "arch_kwargs", "kernel_sizes", 1, 0): ("conv_kernel_sizes", 1, 0),
        ("architecture", "arch_kwargs", "n_stages"): ("n_conv_per_stage_encoder",),
        ("architecture", "arch_kwargs", "n_conv_per_stage", 2): ("n_conv_per_stage_encoder", 2),
        ("architecture", "arch_kwargs", "n_conv_per_stage_decoder", 0): ("n_conv_per_stage_decoder", 0),
        ("architecture", "arch_kwargs", "features_per_stage", 0): ("UNet_base_num_features",),
        ("architecture", "arch_kwargs", "features_per_stage", 5): ("unet_max_num_features",),
        ("architecture", "network_class_name"): ("UNet_class_name",),
        ("architecture", "arch_kwargs", "conv_op"): ("patch_size",),
        ("architecture", "arch_kwargs", "norm_op"): ("patch_size",),
        ("spacing",): ("spacing",),
    }
    for canonical, expected in cases.items():
        assert locate(legacy, resolved, canonical) == ("configurations", "3d_fullres", *expected), canonical


# --- real plans (make test-real) ------------------------------------------------------------------------------------


def _real_plans() -> list[pathlib.Path]:
    from conftest import real_plans_folder

    return sorted(p for p in real_plans_folder().glob("[0-9][0-9][0-9].json"))


@pytest.mark.real
def test_every_real_plans_file_diffs_against_every_other():
    files = _real_plans()
    assert len(files) == 44, "make test-real sets PLANCHECK_REAL_PLANS to the folder of the 44 real plans files"

    def dataset_json(path: pathlib.Path) -> pathlib.Path | None:
        companion = path.with_name(path.stem + ".dataset.json")
        return companion if companion.is_file() else None

    for a in files:
        for b in files:
            result = diff(a, b, dataset_json_a=dataset_json(a), dataset_json_b=dataset_json(b))
            for fmt in ("text", "json", "markdown"):
                render(result, fmt)
            if a == b:
                assert not result.changes, a


# --- the same target kinds as check (issue 9) -----------------------------------------------------------------------


@pytest.fixture
def preprocessed(tmp_path, monkeypatch) -> pathlib.Path:
    import shutil

    folder = tmp_path / "nnUNet_preprocessed"
    for name in (D901, D902):
        shutil.copytree(FIXTURES / name, folder / name)
    monkeypatch.setenv("nnUNet_preprocessed", str(folder))
    return folder


def _changes_of(out: str) -> list[dict]:
    return [{k: v for k, v in c.items() if not k.endswith("path")} for c in json.loads(out)["changes"]]


@pytest.mark.parametrize("kind", ["folder", "dataset-id", "dataset-name"])
def test_diff_accepts_preprocessed_folders_and_dataset_ids(run_cli, preprocessed, kind):
    """What check accepts as a TARGET, diff accepts on both sides, with the dataset.json found the same way."""
    code, expected, err = run_cli("diff", fixture(D901), fixture(D902), "--format", "json")
    assert code == 1, err
    a, b = {"folder": (preprocessed / D901, preprocessed / D902), "dataset-id": ("901", "902"),
            "dataset-name": (D901, D902)}[kind]
    code, out, err = run_cli("diff", a, b, "--format", "json")
    assert code == 1, err
    assert _changes_of(out) == _changes_of(expected)
    assert any(c["path"].startswith("dataset.json:labels") for c in json.loads(out)["changes"])
    # -p picks the plans of a folder or ID, as for check
    code, out, err = run_cli("diff", a, b, "-p", "nnUNetResEncUNetMPlans", "--format", "json")
    assert code == 1, err
    plans = json.loads(out)
    assert plans["a"].endswith("nnUNetResEncUNetMPlans.json") and plans["b"].endswith("nnUNetResEncUNetMPlans.json")


def test_diff_folder_errors_are_one_line(run_cli, tmp_path):
    code, out, err = run_cli("diff", FIXTURES / D901, tmp_path)
    assert code == 3 and not out
    assert len(err.strip().splitlines()) == 1 and "without nnUNetPlans.json" in err
    from plancheck.inputs.plans import load_plans

    with pytest.raises(PlansError) as e:
        load_plans(FIXTURES / D901)
    assert "file file" not in str(e.value) and "is a directory, expected a plans file" in str(e.value)


def test_diff_of_dataset_ids_does_not_import_torch(preprocessed):
    script = (
        "import sys\n"
        "from plancheck.cli import main\n"
        "try:\n"
        "    main(['diff', '901', '902', '--format', 'json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 1, e.code\n"
        "loaded = [m for m in ('torch', 'dynamic_network_architectures') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr


# --- diff's verdict agrees with check's (issue 9) -------------------------------------------------------------------


def test_label_only_difference_is_not_blocking(run_cli):
    code, out, err = run_cli("diff", fixture(D901), fixture(D907), "-c", "3d_fullres")
    assert code == 0, err
    verdict = out.splitlines()[0]
    assert verdict.startswith("NOT BLOCKING") and "may not load" not in verdict
    assert "labels" in verdict and "segmentation head" in verdict
    code, out, err = run_cli("diff", fixture(D901), fixture(D907), "-c", "3d_fullres", "--format", "json")
    data = json.loads(out)
    assert data["blocking"] is False and data["summary"]["io"] > 0
    assert all(c["blocking"] is False for c in data["changes"])


@pytest.mark.parametrize(
    ("a", "b", "configuration"),
    [
        (D901, D907, "3d_fullres"),  # labels only
        (D901, D907, "3d_cascade_fullres"),  # labels feed the cascade's input channels
        (D901, D902, "3d_fullres"),  # architecture
        (D901, D908, "3d_fullres"),  # patch and batch size
        ("Dataset903_ProstateMRI", "Dataset904_BrainMRI", "2d"),  # 2 vs 4 input channels
        ("Dataset906_SmallImages", "Dataset905_CardiacCine", "2d"),
    ],
)
def test_diff_exit_code_agrees_with_check(run_cli, a, b, configuration):
    """diff decides from categories alone (no torch); its exit code must be what check says about loading."""
    from plancheck import check

    report = check(fixture(a), fixture(b), configuration)
    code, out, err = run_cli("diff", fixture(a), fixture(b), "-c", configuration)
    assert code == (0 if report.compatible else 1), out + err
    assert out.startswith("NOT BLOCKING" if report.compatible else "BLOCKING"), out


@pytest.mark.parametrize("labels", [
    None,  # each fixture's own
    {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing": 3},  # regions
    {"background": 0, "a": 1, "b": 2, "ignore": 3},
])
def test_cascade_label_count_is_nnunets(labels):
    """diff counts the cascade's foreground-label inputs without torch; nnU-Net's label manager agrees."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from plancheck.inputs.plans import load_dataset_json
    from plancheck.compare.plansdiff import _foreground_count

    for path in sorted(FIXTURES.glob("*/dataset.json")):
        data = load(path)
        if labels is not None:
            data["labels"] = labels
            if any(isinstance(v, list) for v in labels.values()):
                data["regions_class_order"] = [1, 2, 3]
        manager = LabelManager(data["labels"], regions_class_order=data.get("regions_class_order"))
        assert _foreground_count(load_dataset_json(data)) == len(manager.foreground_labels), (path, labels)
