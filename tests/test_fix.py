"""``--fix``: the rewritten plans load the weights in nnU-Net itself; what cannot be fixed is refused.

nnU-Net decides everywhere it can: the fixed plans are read by its ``PlansManager``, the
fixed network is built on the CPU by ``nnUNetTrainer.build_network_architecture``, the
verdict is its ``load_pretrained_weights`` (tests/nnunet_oracle.py), and the move strategy
is compared with its ``move_plans_between_datasets`` run in a temporary nnU-Net tree.
"""

from __future__ import annotations

import gc
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnunet_oracle as oracle
from conftest import ROOT, fixture, fixture_id, fixture_plans, load
from plancheck import check
from plancheck.check import load_side
from plancheck.network.classpath import resolve_class
from plancheck.errors import ExitCode, FixError, InputError
from plancheck.remedies.fix import (
    FixResult,
    OutputExists,
    Unfixable,
    choose_patch_size,
    plan_fix,
    write_fix,
)
from plancheck.network.planner import estimate_vram, planner_batch_size, planner_reference
from plancheck.inputs.plans import find_dataset_json

D901 = "Dataset901_CTIsotropic"
D902 = "Dataset902_CTAnisotropic"
D903 = "Dataset903_ProstateMRI"
D905 = "Dataset905_CardiacCine"
D906 = "Dataset906_SmallImages"
CONFIGURATIONS = ("3d_fullres", "2d")


def _dataset_json(path: pathlib.Path) -> dict | None:
    found = find_dataset_json(str(path))
    return None if found is None else load(found)


def _side(role: str, path: pathlib.Path, configuration: str = "3d_fullres"):
    return load_side(role, path, configuration)


def _fix(source: pathlib.Path, target: pathlib.Path, out: pathlib.Path, configuration: str = "3d_fullres",
         **kwargs) -> FixResult:
    return plan_fix(_side("source", source, configuration), _side("target", target, configuration), out=str(out),
                    **kwargs)


def _listing(directory: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _canonical_class(plans: dict, configuration: str) -> str | None:
    """nnU-Net cannot locate classes that moved (its fallback imports timm); tell it where they live."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    declared = PlansManager(plans).get_configuration(configuration).network_arch_class_name
    resolved = resolve_class(declared, field="network_class_name", source="oracle")
    return resolved.canonical if resolved.moved else None


def _divisor(strides: list, dim: int) -> list[int]:
    out = [1] * dim
    for stage in strides:
        for axis in range(dim):
            out[axis] *= stage if isinstance(stage, int) else stage[axis]
    return out


# --- every incompatible pair whose only differences are architectural ------------------------------------------------

_SOURCES = [(p, c) for p in fixture_plans() for c in CONFIGURATIONS if c in load(p)["configurations"]]
_WEIGHTS: dict[str, pathlib.Path] = {}  # source spec -> placeholder weights file
_OUTCOMES: dict[tuple[str, str], oracle.Outcome] = {}  # (fixed network spec, source spec) -> nnU-Net's verdict


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fix-weights")


def _source_weights(path: pathlib.Path, configuration: str, key: str, weights_dir: pathlib.Path) -> pathlib.Path:
    if key not in _WEIGHTS:
        plans = load(path)
        network = oracle.build_real(plans, configuration, _dataset_json(path), _canonical_class(plans, configuration))
        out = weights_dir / f"{len(_WEIGHTS)}.pth"
        oracle.save_placeholder_weights(network, out)
        del network
        gc.collect()
        _WEIGHTS[key] = out
    return _WEIGHTS[key]


@pytest.mark.slow
@pytest.mark.parametrize(("source_path", "configuration"), _SOURCES,
                         ids=[f"{fixture_id(p)}-{c}" for p, c in _SOURCES])
def test_fix_makes_every_architectural_pair_load_in_nnunet(source_path, configuration, tmp_path, weights_dir):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    source = _side("source", source_path, configuration)
    fixed_pairs = 0
    problems: list[str] = []
    for target_path in fixture_plans():
        if target_path == source_path or configuration not in load(target_path)["configurations"]:
            continue
        target = _side("target", target_path, configuration)
        if target.spec.input_channels != source.spec.input_channels:  # not architectural: refused, tested below
            continue
        if check(source_path, target_path, configuration, explain=False).compatible:
            continue
        name = fixture_id(target_path)
        out = tmp_path / name.replace("/", "__")
        out.mkdir()
        result = plan_fix(source, target, out=str(out))
        written = pathlib.Path(write_fix(result))
        fixed_pairs += 1

        # (a) nnU-Net reads the fixed plans
        manager = PlansManager(str(written))
        cm = manager.get_configuration(configuration)
        assert manager.plans_name == result.plans_name == written.stem, name
        # (b) the patch size is divisible by the product of the new strides on every axis
        patch = list(cm.patch_size)
        divisor = _divisor(cm.pool_op_kernel_sizes, len(patch))
        if any(p % d for p, d in zip(patch, divisor)):
            problems.append(f"{name}: patch {patch} not divisible by {divisor}")
        if math.prod(p // d for p, d in zip(patch, divisor)) < 2:
            problems.append(f"{name}: patch {patch} leaves a one-voxel bottleneck (instance norm fails)")
        assert cm.batch_size >= 2, name
        # (c) nnU-Net's own loader takes the source's weights into the network built from the fixed plans
        fixed_side = load_side("target", written, configuration, _dataset_json(target_path))
        key = (fixed_side.spec.key(), source.spec.key())
        if key not in _OUTCOMES:
            weights = _source_weights(source_path, configuration, source.spec.key(), weights_dir)
            network = oracle.build_real(load(written), configuration, _dataset_json(target_path))
            _OUTCOMES[key] = oracle.load_outcome(network, weights)
            del network
            gc.collect()
        if not _OUTCOMES[key].loaded:
            problems.append(f"{name}: nnU-Net refuses the weights: {_OUTCOMES[key]}")
        # (d) and plancheck agrees
        again = check(source_path, written, configuration, target_dataset_json=find_dataset_json(str(target_path)),
                      explain=False)
        if not again.compatible:
            problems.append(f"{name}: plancheck still says incompatible at {again.first_failure}")
    assert fixed_pairs >= 1, "no incompatible pair with the same channels for this source"
    assert not problems, "\n".join(problems)


def test_forward_pass_at_the_new_patch_size(tmp_path):
    """One training-mode forward pass on the CPU: a 7-stage 2D network in 64x56 images (a 1x1 bottleneck would fail)."""
    import torch

    source, target, configuration = fixture(D901), fixture(D906), "2d"
    result = _fix(source, target, tmp_path, configuration)
    assert result.patch is not None and result.patch.old == (64, 56) and result.patch.new == (128, 64)
    written = write_fix(result)
    network = oracle.build_real(load(written), configuration, _dataset_json(target)).train()
    channels, heads = oracle.channels(load(written), configuration, _dataset_json(target))
    with torch.no_grad():
        output = network(torch.zeros(1, channels, *result.patch.new))
    first = output[0] if isinstance(output, (list, tuple)) else output
    assert tuple(first.shape) == (1, heads, *result.patch.new)


# --- what plans cannot fix ------------------------------------------------------------------------------------------


def _assert_refused(call, tmp_path: pathlib.Path, *needles: str) -> Unfixable:
    before = _listing(tmp_path)
    with pytest.raises(Unfixable) as exc:
        call()
    error = exc.value
    assert isinstance(error, FixError) and error.exit_code == ExitCode.INCOMPATIBLE == 1
    assert "\n" not in error.message
    text = error.message + "\n" + error.explanation
    for needle in needles:
        assert needle in text, (needle, text)
    assert error.options and "Options:" in error.explanation and "Nothing was written." in error.explanation
    assert _listing(tmp_path) == before
    return error


def test_refuses_other_input_channels(tmp_path):
    error = _assert_refused(
        lambda: _fix(fixture(D903), fixture(D901), tmp_path), tmp_path,
        "input channel", "2 input channel(s)", "first convolution", "dataset with the source's 2 channel",
    )
    assert len(error.options) == 2


def test_refuses_2d_weights_for_a_3d_configuration(tmp_path):
    source = load_side("source", fixture(D901), "2d")
    target = load_side("target", fixture(D902), "3d_fullres")
    _assert_refused(
        lambda: plan_fix(source, target, out=str(tmp_path)), tmp_path,
        "2D", "3D", "--target-configuration 2d", "pretrained weights of a 3D configuration",
    )


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_refuses_prefixed_keys(tmp_path, prefix):
    _assert_refused(
        lambda: _fix(fixture(D901), fixture(D902), tmp_path, source_key_prefix=prefix), tmp_path,
        f"'{prefix}'", "strip", "network_weights",
    )


def test_refuses_all_reasons_at_once(tmp_path):
    source = load_side("source", fixture(D903), "2d")
    target = load_side("target", fixture(D901), "3d_fullres")
    error = _assert_refused(lambda: plan_fix(source, target, out=str(tmp_path), source_key_prefix="module."), tmp_path)
    assert len(error.reasons) == 3


# --- idempotency, --force, --dry-run, atomicity ---------------------------------------------------------------------

IDEMPOTENT_CASES = [
    # source, target, source configuration, target configuration, strategy
    (fixture(D901), fixture(D902), "3d_fullres", "3d_fullres", "architecture"),
    (fixture(D901), fixture(D905), "3d_fullres", "3d_fullres", "architecture"),  # conflicting preferences
    (fixture(D901, "nnUNetResEncUNetLPlans"), fixture("Legacy902"), "3d_fullres", "3d_fullres", "architecture"),
    (fixture(D902), fixture("Inherits901"), "3d_fullres", "3d_fullres_ps96", "architecture"),  # inherits_from
    (fixture(D901), fixture(D906), "2d", "2d", "architecture"),
    (fixture(D901, "nnUNetResEncUNetLPlans"), fixture(D902), "3d_fullres", "3d_fullres", "move"),
]


@pytest.mark.parametrize(("source", "target", "source_configuration", "target_configuration", "strategy"),
                         IDEMPOTENT_CASES,
                         ids=[f"{fixture_id(s)}-{fixture_id(t)}-{c}-{m}" for s, t, _, c, m in IDEMPOTENT_CASES])
def test_fix_is_idempotent(tmp_path, source, target, source_configuration, target_configuration, strategy):
    src = load_side("source", source, source_configuration)
    first = plan_fix(src, load_side("target", target, target_configuration), out=str(tmp_path), strategy=strategy)
    assert first.changed and not first.already_compatible
    written = pathlib.Path(write_fix(first))
    before = written.read_bytes()
    fixed = load_side("target", written, first.configuration, find_dataset_json(str(target)))
    second = plan_fix(src, fixed, out=str(tmp_path), strategy=strategy)
    assert second.already_compatible and not second.changed
    assert second.new_plans == first.new_plans
    assert second.changes == () and "nothing to change" in second.data_identifier_note
    assert second.plans_name == first.plans_name and second.path == str(written)
    assert write_fix(second) == str(written)  # nothing to write
    assert written.read_bytes() == before
    assert set(_listing(tmp_path)) == {written.name}


def test_refuses_to_overwrite_without_force(tmp_path):
    result = _fix(fixture(D901), fixture(D902), tmp_path)
    path = pathlib.Path(write_fix(result))
    path.write_text("{}")
    with pytest.raises(OutputExists) as exc:
        write_fix(result)
    assert exc.value.exit_code == ExitCode.USAGE and "`force`" in str(exc.value)
    assert path.read_text() == "{}"
    assert write_fix(result, force=True) == str(path)
    assert json.loads(path.read_text()) == result.new_plans
    assert path.read_text() == json.dumps(result.new_plans, indent=4)  # as nnU-Net's save_json writes plans
    assert set(_listing(tmp_path)) == {path.name}


def test_dry_run_shows_a_diff_and_writes_nothing(tmp_path):
    result = _fix(fixture(D901), fixture(D905), tmp_path)
    text = result.unified_diff()
    assert text.startswith("--- ") and "\n+++ " in text and "@@" in text
    assert f'+    "plans_name": "{result.plans_name}",' in text
    assert '-    "plans_name": "nnUNetPlans",' in text
    assert _listing(tmp_path) == {}
    assert result.to_dict()["path"] == str(tmp_path / f"{result.plans_name}.json")


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path, monkeypatch, failing):
    result = _fix(fixture(D901), fixture(D902), tmp_path)
    path = tmp_path / f"{result.plans_name}.json"
    path.write_bytes(b'{"old": true}\n')
    os.chmod(path, 0o640)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(InputError, match="cannot write the fixed plans") as exc:
        write_fix(result, force=True)
    assert exc.value.exit_code == ExitCode.INPUT
    monkeypatch.undo()
    assert path.read_bytes() == b'{"old": true}\n'
    assert set(_listing(tmp_path)) == {path.name}  # no temporary file left
    # and a new file is not created half-way either
    path.unlink()
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(InputError):
        write_fix(result)
    monkeypatch.undo()
    assert _listing(tmp_path) == {}
    write_fix(result)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


# --- --strategy move against nnU-Net's move_plans_between_datasets ---------------------------------------------------

MOVE_CASES = [
    (fixture(D901, "nnUNetResEncUNetLPlans"), fixture(D902), "3d_fullres"),
    (fixture(D902), fixture(D905, "nnUNetResEncUNetMPlans"), "3d_fullres"),
    (fixture(D905), fixture(D906), "2d"),
    # old-format source plans naming a class that moved: moved as they are
    (fixture("Legacy901ResEnc", "nnUNetResEncUNetMPlans"), fixture("Dataset908_CTIsotropicCropped"), "3d_fullres"),
]

_MOVE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import SimpleITK as sitk
    from nnunetv2.experiment_planning.plans_for_pretraining.move_plans_between_datasets import (
        move_plans_between_datasets,
    )
    for case in json.loads(sys.argv[1]):
        images = os.path.join(os.environ["nnUNet_raw"], case["target"], "imagesTr")
        os.makedirs(images, exist_ok=True)
        sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkFloat32), os.path.join(images, "case_0000.nii.gz"))
        move_plans_between_datasets(case["source"], case["target"], case["source_plans"], case["target_plans"])
    """
)


def test_move_agrees_with_nnunet_move_plans_between_datasets(tmp_path):
    raw, preprocessed, results = tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results"
    cases, expected = [], {}
    for source, target, configuration in MOVE_CASES:
        src = load_side("source", source, configuration)
        tgt = load_side("target", target, configuration)
        result = plan_fix(src, tgt, strategy="move", out=str(tmp_path / "plancheck"))
        assert not result.data_identifier_kept and result.commands[0].startswith("nnUNetv2_preprocess ")
        assert all(w.startswith("preprocessing changes") for w in result.warnings if "configuration" not in w)
        if tgt.plans.data["configurations"][configuration]["spacing"] != src.configuration.data["spacing"]:
            assert any(w.startswith("preprocessing changes: target spacing differs") for w in result.warnings)
        source_name, target_name = src.plans.dataset_name, tgt.plans.dataset_name
        for root, name, files in ((preprocessed, source_name, {source.name: source}),
                                  (raw, target_name, {"dataset.json": find_dataset_json(str(target))}),
                                  (preprocessed, target_name, {})):
            (root / name).mkdir(parents=True, exist_ok=True)
            for file_name, origin in files.items():
                destination, content = root / name / file_name, pathlib.Path(origin).read_bytes()
                assert not destination.exists() or destination.read_bytes() == content, "cases collide"
                destination.write_bytes(content)
        cases.append({"source": source_name, "target": target_name, "source_plans": source.stem,
                      "target_plans": result.plans_name})
        expected[(target_name, result.plans_name)] = result
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results)}
    run = subprocess.run([sys.executable, "-c", _MOVE_SCRIPT, json.dumps(cases)], env=env, capture_output=True,
                         text=True, cwd=str(ROOT))
    assert run.returncode == 0, run.stderr[-3000:]
    for (target_name, plans_name), result in expected.items():
        written = preprocessed / target_name / f"{plans_name}.json"
        theirs = load(written)
        mismatched = [k for k in {*theirs, *result.new_plans} if theirs.get(k) != result.new_plans.get(k)]
        assert not mismatched, f"{plans_name}: fields differ: {mismatched}"
        for name, cfg in theirs["configurations"].items():
            assert cfg == result.new_plans["configurations"][name], name
        assert result.new_text() == written.read_text()  # same fields, same order, same formatting


def test_move_never_reuses_a_data_identifier_of_other_preprocessing(tmp_path):
    # nnU-Net's move keeps the source's data identifiers when the plans name does not change; the target's
    # own nnUNetPlans_3d_fullres data (other spacing) would then be overwritten by the next preprocessing.
    src = load_side("source", fixture(D901), "3d_fullres")
    tgt = load_side("target", fixture(D902), "3d_fullres")
    result = plan_fix(src, tgt, strategy="move", plans_name="nnUNetPlans", out=str(tmp_path))
    assert result.new_plans["configurations"]["3d_fullres"]["data_identifier"] != "nnUNetPlans_3d_fullres"
    assert any("move_plans_between_datasets" in w and "overwritten" in w for w in result.warnings)
    assert not any("target's own plans" in w for w in result.warnings)  # out= is elsewhere


# --- the planner's numbers and the patch rule ------------------------------------------------------------------------


def test_batch_size_formula_reproduces_the_planner_on_every_fixture():
    from plancheck.remedies.fix_architecture import dataset_voxels, planner_channels

    checked = 0
    for path in fixture_plans():
        plans = load(path)
        if path.parent.name.startswith(("Legacy", "Inherits")):
            continue
        planner = planner_reference(plans["experiment_planner_used"])
        assert planner.name == plans["experiment_planner_used"]
        for configuration in ("2d", "3d_fullres", "3d_lowres"):
            if configuration not in plans["configurations"]:
                continue
            side = load_side("target", path, configuration)
            patch = side.configuration.data["patch_size"]
            in_ch, out_ch, _ = planner_channels(side)
            estimate = estimate_vram(side.spec, patch, input_channels=in_ch, output_channels=out_ch)
            voxels, _ = dataset_voxels(side, len(patch))
            batch, _ = planner_batch_size(planner, estimate, patch, voxels)
            assert batch == side.configuration.data["batch_size"], (fixture_id(path), configuration)
            checked += 1
    assert checked >= 50


@pytest.mark.parametrize(
    ("old", "divisor", "median", "new", "given_up"),
    [
        ((128, 128, 128), (32, 32, 32), (450.0, 448.5, 446.0), (128, 128, 128), 0),  # already valid: kept
        ((40, 224, 192), (32, 32, 32), (99.0, 512.0, 512.0), (128, 224, 192), 1),  # min edge kept, past median
        ((20, 256, 256), (8, 32, 32), (18.0, 238.5, 227.0), (16, 256, 256), 1),  # median kept, edge given up
        ((20, 256, 256), (32, 32, 32), (18.0, 238.5, 227.0), (32, 256, 256), 2),  # both given up
        ((64, 56), (64, 64), (58.0, 55.5), (128, 64), 5),  # a 1x1 bottleneck cannot be instance-normalised
    ],
)
def test_patch_rule(old, divisor, median, new, given_up):
    got, reasons = choose_patch_size(old, divisor, median, 4)
    assert got == new and len(reasons) == given_up
    assert all(p % d == 0 for p, d in zip(got, divisor))
    assert choose_patch_size(got, divisor, median, 4)[0] == got  # a valid choice is a fixed point


@given(
    st.lists(st.tuples(st.integers(1, 400), st.sampled_from([1, 2, 4, 8, 16, 32, 64]), st.floats(1, 600)),
             min_size=2, max_size=3),
    st.integers(1, 6),
)
def test_patch_rule_properties(axes, min_edge):
    old, divisor, median = zip(*axes)
    new, reasons = choose_patch_size(old, divisor, median, min_edge)
    assert all(p % d == 0 and p >= d for p, d in zip(new, divisor))  # the hard rules
    assert math.prod(p // d for p, d in zip(new, divisor)) >= 2
    for axis, (p, d, m) in enumerate(zip(new, divisor, median)):
        if new == tuple(old):  # already valid: nnU-Net's choice is kept
            continue
        within = p <= max(math.ceil(m / d) * d, d)  # not past the median (rounded up to the divisor)
        assert within or any(f"axis {axis} raised" in r for r in reasons)
        assert p // d >= min_edge or any(f"bottleneck edge on axis {axis}" in r for r in reasons)
    assert choose_patch_size(new, divisor, median, min_edge)[0] == new  # idempotent


def test_import_fix_does_not_import_torch():
    code = "import sys, plancheck.remedies.fix, plancheck.atomic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_patch_decision_is_reported(tmp_path):
    result = _fix(fixture(D901), fixture(D905), tmp_path)
    patch = result.patch
    assert patch is not None
    assert patch.divisor == (32, 32, 32) and patch.new == (32, 256, 256) and patch.bottleneck[0] == 1
    assert any("median image shape on axis 0 (32 > 18 voxels)" in g for g in patch.given_up)
    assert patch.memory_new and patch.memory_old and patch.memory_reference == 560000000
    assert patch.batch_size_new == 2 and "ExperimentPlanner" in patch.batch_size_reason
    assert result.data_identifier_kept and "nnUNetPlans_3d_fullres kept" in result.data_identifier_note
    assert result.commands == (
        f"nnUNetv2_preprocess -d 905 -plans_name {result.plans_name} -c 3d_fullres",
        f"nnUNetv2_train 905 3d_fullres FOLD -p {result.plans_name} -pretrained_weights PATH/TO/checkpoint_final.pth",
    )
    assert result.plans_name == "nnUNetPlans_from_Dataset901_CTIsotropic"
    d = json.loads(json.dumps(result.to_dict()))
    assert d["patch"]["given_up"] == list(patch.given_up) and d["changed"] is True
    assert "gave up: " in str(result) and math.isfinite(patch.memory_reference)


def test_a_patch_already_divisible_by_the_new_strides_is_kept(tmp_path):
    """nnU-Net's planner chose 512x448 for Dataset901's 2d; the small-image network's strides (product 8) divide it."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    result = _fix(fixture(D906), fixture(D901), tmp_path, "2d")
    assert result.patch is not None and result.patch.divisor == (8, 8)
    assert result.patch.old == result.patch.new == (512, 448)
    assert not any("patch" in g and "median" in g for g in result.patch.given_up)
    written = write_fix(result)
    assert list(PlansManager(written).get_configuration("2d").patch_size) == [512, 448]
    assert "patch_size" not in {c.path[-1] for c in result.changes if c.path[:2] == ("configurations", "2d")}


def test_memory_may_force_a_smaller_patch_and_the_report_says_so(tmp_path, monkeypatch):
    from plancheck.network.planner import PlannerReference

    budget = 62_000_000  # between the new network's estimate at 456x448 and at 512x448

    def ratio(self, estimate, dim):
        return estimate / budget

    monkeypatch.setattr(PlannerReference, "budget_ratio", ratio)
    result = _fix(fixture(D906), fixture(D901), tmp_path, "2d")
    patch = result.patch
    assert patch is not None and patch.old == (512, 448) and patch.new == (456, 448)
    assert any("memory" in g and "[512, 448]" in g and "[456, 448]" in g for g in patch.given_up)
    assert "memory" in str(result)


def _nnunet_configurations(plans: dict) -> dict[str, dict]:
    """Every configuration as nnU-Net's PlansManager resolves it (inherits_from applied)."""
    import contextlib
    import io

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    with contextlib.redirect_stdout(io.StringIO()):
        manager = PlansManager(plans)
        return {name: manager.get_configuration(name).configuration for name in plans["configurations"]}


@pytest.mark.parametrize(("strategy", "source", "target"), [
    ("move", fixture(D901), fixture(D902)),
    ("move", fixture(D901, "nnUNetResEncUNetLPlans"), fixture(D905)),
    ("architecture", fixture(D901), fixture(D902)),  # 3d_cascade_fullres inherits the new architecture
])
def test_every_change_of_the_written_file_is_listed(tmp_path, strategy, source, target):
    result = _fix(source, target, tmp_path, strategy=strategy)
    old, new = _nnunet_configurations(result.old_plans), _nnunet_configurations(result.new_plans)
    listed = {c.path[1] for c in result.changes if c.path[:1] == ("configurations",) and len(c.path) > 1}
    for name in old.keys() & new.keys():
        if old[name] != new[name]:
            assert name in listed, (name, sorted(listed))
    for name in new.keys() - old.keys():
        assert any(name in w and "added" in w for w in result.warnings), (name, result.warnings)
    top = {k for k in {*result.old_plans, *result.new_plans} - {"configurations"}
           if result.old_plans.get(k) != result.new_plans.get(k)}
    assert top <= {c.path[0] for c in result.changes}
    text = str(result)
    assert all(f"configurations.{name}." in text for name in listed)


@pytest.mark.parametrize("strategy", ["architecture", "move"])
def test_plan_fixes_puts_every_configuration_into_one_file(tmp_path, strategy):
    from plancheck.remedies.fix import plan_fixes

    pairs = [(_side("source", fixture(D901), c), _side("target", fixture(D902), c)) for c in ("3d_fullres", "2d")]
    results = plan_fixes(pairs, strategy=strategy, out=str(tmp_path))
    assert all(isinstance(r, FixResult) and r.compatible for r in results)
    first, second = results
    assert first.new_plans == second.new_plans and first.path == second.path
    assert first.plans_name == second.plans_name == "nnUNetPlans_from_Dataset901_CTIsotropic"
    assert first.old_plans == load(fixture(D902))
    source = load(fixture(D901))["configurations"]
    for configuration in ("3d_fullres", "2d"):
        assert first.new_plans["configurations"][configuration]["architecture"]["arch_kwargs"] == \
            source[configuration]["architecture"]["arch_kwargs"]
        # nnU-Net's loader agrees for the one file, per configuration, on meta networks built by plancheck
        assert check(fixture(D901), first.new_plans, configuration,
                     target_dataset_json=find_dataset_json(str(fixture(D902))), explain=False).compatible
    assert [r.configuration for r in results] == ["3d_fullres", "2d"]
    assert any(f"-p {first.plans_name}" in c and " 2d " in c for c in second.commands)
    if strategy == "move":  # the first move already brought the source's 2d
        assert any("needs no change of its own" in n for n in second.notes)
        assert not second.data_identifier_kept


def test_plan_fixes_keeps_what_plans_cannot_fix_apart(tmp_path):
    from plancheck.remedies.fix import plan_fixes

    pairs = [(_side("source", fixture(D901), "3d_fullres"), _side("target", fixture(D902), "3d_fullres")),
             (_side("source", fixture(D901), "2d"), _side("target", fixture(D902), "3d_fullres"))]
    fixed, refused = plan_fixes(pairs, out=str(tmp_path))
    assert isinstance(fixed, FixResult) and fixed.compatible
    assert isinstance(refused, Unfixable) and "2D weights for a 3D configuration" in refused.message
