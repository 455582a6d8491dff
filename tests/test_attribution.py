"""Root causes by intervention: every failing tensor is attributed to the field that was changed."""

from __future__ import annotations

import copy

import pytest

from conftest import fixture, load
from plancheck import check
from plancheck.records.report import Status

CAUSED = {Status.MISMATCH, Status.MISSING, Status.UNUSED}

# (dataset, plans name): a PlainConvUNet and a ResEnc plans file; both have 3d_fullres and 2d.
PLANS = {
    "plain": ("Dataset901_CTIsotropic", "nnUNetPlans"),
    "resenc": ("Dataset901_CTIsotropic", "nnUNetResEncUNetMPlans"),
}


def _pair(kind: str, configuration: str):
    path = fixture(*PLANS[kind])
    plans = load(path)
    dataset_json = load(path.parent / "dataset.json")
    return plans, dataset_json


def _arch(plans: dict, configuration: str) -> dict:
    return plans["configurations"][configuration]["architecture"]["arch_kwargs"]


def _prefix(configuration: str) -> str:
    return f"configurations.{configuration}.architecture.arch_kwargs."


def _blocks_key(kwargs: dict) -> str:
    return "n_conv_per_stage" if "n_conv_per_stage" in kwargs else "n_blocks_per_stage"


def _check(plans, target, dataset_json, configuration, target_dataset_json=None):
    return check(
        plans,
        target,
        configuration,
        source_dataset_json=dataset_json,
        target_dataset_json=target_dataset_json or dataset_json,
    )


def _causes_of_failures(report) -> list[set[str]]:
    rows = [r for r in report.tensors if r.status in CAUSED]
    assert rows, "the mutation must break something"
    return [{c.parameter for c in r.causes} for r in rows]


def _mutations(kwargs: dict):
    last = kwargs["n_stages"] - 1
    blocks = _blocks_key(kwargs)
    stride = kwargs["strides"][last]
    new_stride = [1 if s == 2 else 2 for s in stride]
    kernel = kwargs["kernel_sizes"][1]
    new_kernel = [1] + kernel[1:] if kernel[0] != 1 else [3] + kernel[1:]
    return {
        f"strides[{last}]": ("strides", last, new_stride),
        "kernel_sizes[1]": ("kernel_sizes", 1, new_kernel),
        "features_per_stage[2]": ("features_per_stage", 2, kwargs["features_per_stage"][2] + 16),
        f"{blocks}[1]": (blocks, 1, kwargs[blocks][1] + 1),
        "n_conv_per_stage_decoder[0]": ("n_conv_per_stage_decoder", 0, kwargs["n_conv_per_stage_decoder"][0] + 1),
    }


@pytest.mark.parametrize("kind", ["plain", "resenc"])
@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
@pytest.mark.parametrize("which", range(5))
def test_single_element_mutation(kind, configuration, which):
    plans, dj = _pair(kind, configuration)
    name, (key, index, value) = list(_mutations(_arch(plans, configuration)).items())[which]
    target = copy.deepcopy(plans)
    _arch(target, configuration)[key][index] = value
    report = _check(plans, target, dj, configuration)
    assert not report.compatible
    expected = {_prefix(configuration) + name}
    for causes in _causes_of_failures(report):
        assert causes == expected
    assert [rc.cause.parameter for rc in report.root_causes] == [_prefix(configuration) + name]


@pytest.mark.parametrize("kind", ["plain", "resenc"])
@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_depth_is_one_group(kind, configuration):
    plans, dj = _pair(kind, configuration)
    target = copy.deepcopy(plans)
    kw = _arch(target, configuration)
    n = kw["n_stages"]
    kw["n_stages"] = n - 1
    changed = []
    for key, value in list(kw.items()):
        if isinstance(value, list) and len(value) in (n, n - 1) and key != "n_stages":
            kw[key] = value[: len(value) - 1]
            changed.append(key)
    report = _check(plans, target, dj, configuration)
    expected = {_prefix(configuration) + k for k in ["n_stages", *changed]}
    for causes in _causes_of_failures(report):
        assert causes == expected
    assert len(report.root_causes) == 1
    assert f"depth: {n} stages vs {n - 1}" in report.root_causes[0].note
    assert f"depth: {n} stages vs {n - 1}" in str(report)


@pytest.mark.parametrize("kind", ["plain", "resenc"])
def test_conv_op(kind):
    # 2D weights for a 3D network: conv_op, norm_op and the per-axis lists move as one group.
    plans, dj = _pair(kind, "2d")
    target = copy.deepcopy(plans)
    kw = _arch(target, "2d")
    kw["conv_op"] = "torch.nn.modules.conv.Conv3d"
    kw["kernel_sizes"] = [[1, *k] for k in kw["kernel_sizes"]]
    kw["strides"] = [[1, *s] for s in kw["strides"]]
    kw["norm_op"] = "torch.nn.modules.instancenorm.InstanceNorm3d"
    report = _check(plans, target, dj, "2d")
    assert not report.compatible
    expected = {_prefix("2d") + f for f in ("conv_op", "norm_op", "kernel_sizes", "strides")}
    for causes in _causes_of_failures(report):
        assert causes == expected
    (root,) = report.root_causes
    assert root.cause.parameter == _prefix("2d") + "conv_op" and "dimension: 2D vs 3D" in root.note


def test_conv_op_alone_changes_no_shape_and_nnunet_agrees(tmp_path):
    # Conv2d built with 3-element kernels has 3D-shaped weights: nothing changes shape, and
    # nnU-Net's own loader agrees that the weights load.
    import nnunet_oracle as oracle

    plans, dj = _pair("plain", "3d_fullres")
    target = copy.deepcopy(plans)
    _arch(target, "3d_fullres")["conv_op"] = "torch.nn.modules.conv.Conv2d"
    _arch(target, "3d_fullres")["norm_op"] = "torch.nn.modules.instancenorm.InstanceNorm2d"
    report = _check(plans, target, dj, "3d_fullres")
    weights = tmp_path / "w.pth"
    oracle.save_placeholder_weights(oracle.build_real(plans, "3d_fullres", dj), weights)
    outcome = oracle.load_outcome(oracle.build_real(target, "3d_fullres", dj), weights)
    assert report.compatible is outcome.loaded is True


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_network_class(configuration):
    plans, dj = _pair("plain", configuration)
    target = copy.deepcopy(plans)
    arch = target["configurations"][configuration]["architecture"]
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    arch["arch_kwargs"]["n_blocks_per_stage"] = arch["arch_kwargs"].pop("n_conv_per_stage")
    report = _check(plans, target, dj, configuration)
    assert not report.compatible
    expected = {
        f"configurations.{configuration}.architecture.network_class_name",
        _prefix(configuration) + "n_blocks_per_stage",
        _prefix(configuration) + "n_conv_per_stage",
    }
    for causes in _causes_of_failures(report):
        assert causes == expected


@pytest.mark.parametrize("kind", ["plain", "resenc"])
@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_input_channels(kind, configuration):
    plans, dj = _pair(kind, configuration)
    target_dj = copy.deepcopy(dj)
    target_dj["channel_names"] = {"0": "CT", "1": "PET"}
    report = _check(plans, plans, dj, configuration, target_dataset_json=target_dj)
    assert not report.compatible
    assert report.first_failure.key.startswith("encoder.")
    for causes in _causes_of_failures(report):
        assert causes == {"dataset.json:channel_names"}
    (root,) = report.root_causes
    assert root.cause.source == dj["channel_names"] and root.cause.target == {"0": "CT", "1": "PET"}
    assert root.tensors == 1  # only the very first convolution sees the channels


@pytest.mark.parametrize("kind", ["plain", "resenc"])
def test_two_independent_mutations(kind):
    plans, dj = _pair(kind, "3d_fullres")
    target = copy.deepcopy(plans)
    kw = _arch(target, "3d_fullres")
    last = kw["n_stages"] - 1
    kw["strides"][last] = [1 if s == 2 else 2 for s in kw["strides"][last]]
    kw["n_conv_per_stage_decoder"][last - 1] += 1  # the decoder stage nearest the output
    report = _check(plans, target, dj, "3d_fullres")
    strides = _prefix("3d_fullres") + f"strides[{last}]"
    decoder = _prefix("3d_fullres") + f"n_conv_per_stage_decoder[{last - 1}]"
    seen = set()
    for row in report.tensors:
        if row.status not in CAUSED:
            continue
        causes = {c.parameter for c in row.causes}
        assert causes in ({strides}, {decoder}), (row.key, causes)
        seen |= causes
        if "transpconvs" in row.key:
            assert causes == {strides}
        if f"decoder.stages.{last - 1}." in row.key:
            assert causes == {decoder}
    assert seen == {strides, decoder}


def test_permutation_is_called_an_axis_order_change():
    plans, dj = _pair("plain", "3d_fullres")
    target = copy.deepcopy(plans)
    kw = _arch(target, "3d_fullres")
    i = next(i for i, k in enumerate(kw["kernel_sizes"]) if len(set(map(str, k))) == 1) or 1
    kw["kernel_sizes"][i] = [1, 3, 3]
    src = copy.deepcopy(plans)
    _arch(src, "3d_fullres")["kernel_sizes"][i] = [3, 3, 1]
    report = _check(src, target, dj, "3d_fullres")
    (root,) = report.root_causes
    assert "axis order" in root.note and "transpose_forward" in root.note


def test_compatible_pair_has_no_root_causes():
    plans, dj = _pair("plain", "3d_fullres")
    report = _check(plans, copy.deepcopy(plans), dj, "3d_fullres")
    assert report.compatible and report.root_causes == ()
    assert all(not r.causes for r in report.tensors)


def test_json_causes_only_on_failing_rows():
    plans, dj = _pair("plain", "3d_fullres")
    target = copy.deepcopy(plans)
    _arch(target, "3d_fullres")["features_per_stage"][0] = 48
    d = _check(plans, target, dj, "3d_fullres").to_dict()
    for row in d["tensors"]:
        if row["status"] in ("mismatch", "missing", "unused"):
            assert row["causes"] == [
                {"parameter": _prefix("3d_fullres") + "features_per_stage[0]", "source": 32, "target": 48}
            ]
        else:
            assert "causes" not in row
    assert d["root_causes"][0]["parameter"].endswith("features_per_stage[0]")


CUSTOM = "custom_architectures.RenamedUNet"


def test_custom_class_is_refused_without_allow_import():
    from plancheck.errors import ClassRefused

    plans, dj = _pair("plain", "3d_fullres")
    plans = copy.deepcopy(plans)
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = CUSTOM
    with pytest.raises(ClassRefused, match="refusing to import network_class_name 'custom_architectures"):
        check(plans, plans, source_dataset_json=dj, target_dataset_json=dj)


@pytest.mark.parametrize("which", range(5))
def test_custom_architecture_attribution(which):
    plans, dj = _pair("plain", "3d_fullres")
    plans = copy.deepcopy(plans)
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = CUSTOM
    name, (key, index, value) = list(_mutations(_arch(plans, "3d_fullres")).items())[which]
    target = copy.deepcopy(plans)
    _arch(target, "3d_fullres")[key][index] = value
    report = check(plans, target, source_dataset_json=dj, target_dataset_json=dj,
                   allow_import=("custom_architectures",))
    assert report.source.network_class == "RenamedUNet"
    rows = [r for r in report.tensors if r.status in CAUSED]
    assert rows and all(r.key.startswith(("contracting.", "expanding.")) for r in rows)
    for causes in _causes_of_failures(report):
        assert causes == {_prefix("3d_fullres") + name}


# --- readable root causes (issue 9) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        ("Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans"),  # class and depth: only together
        ("Dataset904_BrainMRI", "nnUNetResEncUNetLPlans"),  # class at the same depth
        ("Dataset906_SmallImages", "nnUNetPlans"),  # depth
    ],
)
def test_root_causes_never_count_more_than_exists(target):
    from plancheck.render import render

    report = check(fixture("Dataset901_CTIsotropic"), fixture(*target), "3d_fullres")
    s = report.summary
    assert report.root_causes
    for rc in report.root_causes:
        assert rc.tensors <= s.tensors_total - s.tensors_loadable, rc
        assert rc.parameters <= s.parameters_total - s.parameters_loadable, rc
        assert rc.tensors > 0 or "unused" in rc.note, rc  # a cause of dropped source tensors only says so
    # the counts are of distinct failing target tensors, alias keys once, as the totals
    failing = [r for r in report.tensors if r.status in (Status.MISMATCH, Status.MISSING)]
    for rc in report.root_causes:
        wanted = {c.parameter for c in rc.group or (rc.cause,)}
        explained = [r for r in failing if {c.parameter for c in r.causes} >= wanted]
        assert rc.tensors == len(explained) and rc.parameters == sum(r.parameters for r in explained), rc
    text = render(report, "text").split("\n\nWould load")[0]
    assert max(len(line) for line in text.splitlines()) < 400, text


def test_a_combination_is_one_short_line_with_its_values_in_json():
    import json

    from plancheck.render import render

    report = check(fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans"))
    (rc,) = [rc for rc in report.root_causes if rc.group and rc.cause.parameter.endswith(" together")]
    assert len(rc.cause.parameter) <= 120, rc.cause.parameter
    assert rc.cause.parameter.startswith(("network_class_name, ", "n_stages, "))
    assert "configurations." not in rc.cause.parameter
    data = json.loads(render(report, "json"))
    (entry,) = [e for e in data["root_causes"] if e["parameter"] == rc.cause.parameter]
    group = {g["parameter"]: g for g in entry["group"]}
    plans_a = load(fixture("Dataset901_CTIsotropic"))["configurations"]["3d_fullres"]["architecture"]
    plans_b = load(fixture("Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans"))["configurations"]["3d_fullres"]
    klass = group["configurations.3d_fullres.architecture.network_class_name"]
    assert klass["source"] == plans_a["network_class_name"]
    assert klass["target"] == plans_b["architecture"]["network_class_name"]
    strides = group["configurations.3d_fullres.architecture.arch_kwargs.strides"]
    assert strides["source"] == plans_a["arch_kwargs"]["strides"]
    assert strides["target"] == plans_b["architecture"]["arch_kwargs"]["strides"]
    table = render(report, "text").split("Root causes\n", 1)[1].split("\n\n")[0]
    assert str(plans_a["arch_kwargs"]["strides"]) not in table


def test_wide_values_are_summarised_in_the_table_and_whole_in_json():
    """The cascade's labels, identical on both sides, are one short cell; the JSON keeps the dicts."""
    import json

    from plancheck.render import render

    path = fixture("Dataset901_CTIsotropic")
    dj = load(path.parent / "dataset.json")
    dj["labels"] = {"background": 0, **{f"organ number {i}": i for i in range(1, 13)}}
    report = check(path, path, "3d_cascade_fullres", target_configuration="3d_fullres",
                   source_dataset_json=dj, target_dataset_json=dj)
    assert not report.compatible
    text = render(report, "text")
    table = text.split("Root causes\n", 1)[1].split("\n\n")[0]
    assert "organ number" not in table
    assert "13 labels, same" in table
    assert max(len(line) for line in table.splitlines()) < 300, table
    entry = [e for e in json.loads(render(report, "json"))["root_causes"] if "labels" in e["parameter"]][0]
    assert entry["source"] == entry["target"] == dj["labels"]
    markdown = render(report, "markdown")
    assert "13 labels, same" in markdown and "organ number" not in markdown.split("### Root causes")[1].split("###")[0]


def test_a_trainer_difference_is_named_as_the_cause():
    from plancheck.render import render

    path = fixture("Dataset901_CTIsotropic")
    report = check(path, path, target_trainer="nnUNetTrainerBN")
    assert not report.compatible
    assert report.root_causes
    (rc,) = report.root_causes
    assert rc.cause.parameter == "trainer (build_network_architecture)"
    assert rc.cause.source == "get_network_from_plans" and rc.cause.target == "nnUNetTrainerBN"
    failing = [r for r in report.tensors if r.status in (Status.MISMATCH, Status.MISSING)]
    assert rc.tensors == len(failing)
    text = render(report, "text")
    assert "(unexplained)" not in text
    assert all(r.causes[0].parameter == rc.cause.parameter for r in report.tensors if r.status in CAUSED)
