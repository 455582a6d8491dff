"""plancheck transfer: differential against nnU-Net's loader, values rule by rule, function, and hostile input.

Checkpoints are written here like ``nnUNetTrainer.save_checkpoint`` (tests/nnunet_oracle.py):
from REAL small networks with random weights (Dataset906_SmallImages), or, for the 30-100 M
parameter fixture networks, with placeholder values (keys and shapes are what the loader
checks). Every written transfer is loaded by nnU-Net's own ``load_pretrained_weights`` into the
network nnU-Net builds from the target plans, and by ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import json
import pathlib
import shutil

import pytest
import torch

import nnunet_oracle as oracle
from conftest import fixture, load
from nnunet_oracle import nnunet_checkpoint
from pickle_payloads import Exec as _Exec, System as _System

D901, D902, D903, D904, D906, D907 = (
    "Dataset901_CTIsotropic", "Dataset902_CTAnisotropic", "Dataset903_ProstateMRI", "Dataset904_BrainMRI",
    "Dataset906_SmallImages", "Dataset907_CTIsotropicOther",
)


def fixture_data(dataset: str, plans: str = "nnUNetPlans") -> tuple[dict, dict]:
    path = fixture(dataset, plans)
    return load(path), load(path.parent / "dataset.json")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


class Store:
    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.paths: dict[str, pathlib.Path] = {}
        self.weights: dict[str, dict[str, torch.Tensor]] = {}

    def real(self, name: str, dataset: str, configuration: str, plans_name: str = "nnUNetPlans",
             plans: dict | None = None) -> pathlib.Path:
        """A checkpoint of the network nnU-Net builds, with random (seeded) weights."""
        p, dj = fixture_data(dataset, plans_name)
        p = plans or p
        torch.manual_seed(len(self.paths))
        net = oracle.build_real(p, configuration, dj)
        with torch.no_grad():
            for v in net.parameters():
                v.normal_()  # distinct values everywhere, norms included
        path = self.folder / name
        torch.save(nnunet_checkpoint(net, p, dj, configuration), path)
        self.paths[name] = path
        self.weights[name] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return path

    def placeholder(self, name: str, dataset: str, configuration: str, plans_name: str = "nnUNetPlans") -> pathlib.Path:
        """A checkpoint with the real keys and shapes and one-element storages (a few kB)."""
        p, dj = fixture_data(dataset, plans_name)
        net = oracle.build_real(p, configuration, dj)
        table = oracle.shapes(net)
        weights = {k: torch.full((1,), 0.5).expand(s) if s else torch.tensor(0.5) for k, s in table.items()}
        path = self.folder / name
        torch.save(nnunet_checkpoint(net, p, dj, configuration, weights=weights), path)
        self.paths[name] = path
        return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    s = Store(tmp_path_factory.mktemp("transfer"))
    s.real("906.pth", D906, "3d_fullres")
    s.real("906M.pth", D906, "3d_fullres", "nnUNetResEncUNetMPlans")
    s.placeholder("901.pth", D901, "3d_fullres")
    s.placeholder("902L.pth", D902, "3d_fullres", "nnUNetResEncUNetLPlans")
    s.placeholder("904.pth", D904, "3d_fullres")
    return s


@pytest.fixture(scope="module")
def wider_906(tmp_path_factory) -> pathlib.Path:
    """906 with a wider last stage: same keys, other widths."""
    folder = tmp_path_factory.mktemp("wider")
    plans = load(fixture(D906))
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"][-1] = 320
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    shutil.copy(fixture(D906).parent / "dataset.json", folder / "dataset.json")
    return folder / "nnUNetPlans.json"


def target_network(plans_path: pathlib.Path, configuration: str, cache: dict = {}) -> torch.nn.Module:  # noqa: B006
    key = (str(plans_path), configuration)
    if key not in cache:
        dj = plans_path.parent / "dataset.json"
        cache[key] = oracle.build_real(load(plans_path), configuration, load(dj) if dj.is_file() else None)
    return cache[key]


def run_transfer(store, source, target, out, **kw):
    from plancheck.transfer import transfer

    return transfer(store.paths[source], target, out, **kw)


# --------------------------------------------------------------------------- nnU-Net loads every transfer

PAIRS = [
    # (source checkpoint, target plans, target configuration, what differs)
    ("906.pth", (D906, "nnUNetPlans"), "3d_fullres", "identical"),
    ("906.pth", (D902, "nnUNetPlans"), "3d_fullres", "kernel sizes, strides, depth +2"),
    ("906.pth", (D903, "nnUNetPlans"), "3d_fullres", "channels 1->2, depth +3, kernels"),
    ("906.pth", (D904, "nnUNetPlans"), "3d_fullres", "channels 1->4, depth +2"),
    ("906.pth", (D906, "nnUNetResEncUNetMPlans"), "3d_fullres", "network class"),
    ("901.pth", (D907, "nnUNetPlans"), "3d_fullres", "heads"),
    ("901.pth", (D902, "nnUNetPlans"), "3d_fullres", "kernel sizes, strides"),
    ("902L.pth", (D902, "nnUNetResEncUNetMPlans"), "3d_fullres", "depth -1 (ResEnc L 7 stages -> M 6)"),
    ("904.pth", (D901, "nnUNetPlans"), "3d_fullres", "channels 4->1"),
]


#: every pair with adapt; exact and encoder on three kinds of pair
CASES = [(*p, "adapt") for p in PAIRS] + [
    (*p, strategy) for p in PAIRS for strategy in ("exact", "encoder")
    if p[3] in ("identical", "kernel sizes, strides, depth +2", "channels 1->2, depth +3, kernels")
]


@pytest.mark.parametrize("source,target,configuration,what,strategy", CASES, ids=[f"{c[3]}-{c[4]}" for c in CASES])
def test_nnunet_loads_every_transfer(store, tmp_path, source, target, configuration, what, strategy):
    target_plans = fixture(*target)
    out = tmp_path / "transfer.pth"
    result = run_transfer(store, source, target_plans, out, strategy=strategy)
    assert result.written and result.verified and out.is_file()
    assert result.plan.parameters_carried > 0
    outcome = oracle.load_outcome(target_network(target_plans, configuration), out)
    assert outcome.loaded, outcome
    saved = torch.load(out, weights_only=True)
    net_keys = set(target_network(target_plans, configuration).state_dict())
    assert set(saved["network_weights"]) == net_keys  # every key, the head included
    provenance = saved["plancheck_transfer"]
    assert provenance["source"]["sha256"] == result.source_sha256
    import hashlib

    assert hashlib.sha256(store.paths[source].read_bytes()).hexdigest() == result.source_sha256
    assert provenance["strategy"] == strategy


def test_widths_differ_initialised_and_loaded(store, tmp_path, wider_906):
    out = tmp_path / "t.pth"
    result = run_transfer(store, "906.pth", wider_906, out)
    assert oracle.load_outcome(target_network(wider_906, "3d_fullres"), out).loaded
    reasons = {r.key: r.label for r in result.plan.tensors}
    assert reasons["encoder.stages.3.0.convs.0.conv.weight"].startswith("initialised:widths differ")
    assert reasons["encoder.stages.0.0.convs.0.conv.weight"] == "copied"


def test_2d_weights_for_a_3d_network_are_refused(store, tmp_path, run_cli):
    out = tmp_path / "t.pth"
    code, stdout, _ = run_cli("transfer", store.paths["906.pth"], fixture(D906), "--target-configuration", "2d",
                              "-o", out)
    assert code == 1
    assert "nothing can be carried over" in stdout and "3D weights for a 2D network" in stdout
    assert not out.exists()


# --------------------------------------------------------------------------- values, rule by rule


def _independent(rule: str, axis: int, src: torch.Tensor, n: int = 0) -> torch.Tensor:
    """Each rule written out by index, independently of plancheck.remedies.adapt."""
    s = src.double()
    if rule in ("kernel-average", "stride-average"):
        parts = [s.select(axis, i) for i in range(s.shape[axis])]
        return (sum(parts) / len(parts)).unsqueeze(axis)
    if rule == "kernel-centre":
        shape = list(s.shape)
        shape[axis] = 3
        out = torch.zeros(shape, dtype=s.dtype)
        out.select(axis, 1).copy_(s.select(axis, 0))
        return out
    if rule == "stride-repeat":
        return torch.stack([s.select(axis, 0), s.select(axis, 0)], dim=axis)
    if rule == "channels-repeat":
        return torch.stack([s.select(axis, 0) / n] * n, dim=axis)
    raise AssertionError(rule)


@pytest.mark.parametrize("target", [(D903, "nnUNetPlans"), (D902, "nnUNetPlans"), (D904, "nnUNetPlans")])
def test_copied_bit_identical_adapted_by_the_rule(store, tmp_path, target):
    out = tmp_path / "t.pth"
    result = run_transfer(store, "906.pth", fixture(*target), out)
    saved = torch.load(out, weights_only=True)["network_weights"]
    source = store.weights["906.pth"]
    kinds = {"copied": 0, "adapted": 0}
    for row in result.plan.tensors:
        got = saved[row.key]
        for alias in row.keys:  # aliases are one tensor in the file too
            assert torch.equal(saved[alias], got)
        if str(row.action) == "copied":
            assert torch.equal(got, source[row.source_key]), row.key
            kinds["copied"] += 1
        elif str(row.action) == "adapted":
            expected = source[row.source_key]
            for step in sorted(row.steps, key=lambda s: s.rule.startswith("channel")):
                expected = _independent(step.rule, step.axis, expected, step.target)
            assert torch.allclose(got.double(), expected, rtol=1e-6, atol=1e-7), (row.key, row.label)
            kinds["adapted"] += 1
    assert kinds["copied"] and kinds["adapted"]


def test_initialised_tensors_follow_the_seed(store, tmp_path):
    a, b, c = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    result = run_transfer(store, "906.pth", fixture(D903), a, seed=7)
    run_transfer(store, "906.pth", fixture(D903), b, seed=7)
    run_transfer(store, "906.pth", fixture(D903), c, seed=8)
    wa, wb, wc = (torch.load(p, weights_only=True)["network_weights"] for p in (a, b, c))
    initialised = [r for r in result.plan.tensors if not r.carried]
    assert any(str(r.action) == "head" for r in initialised)
    differs = 0
    for row in initialised:
        assert torch.equal(wa[row.key], wb[row.key]), row.key
        differs += not torch.equal(wa[row.key], wc[row.key])
    assert differs > 0


@pytest.mark.parametrize("plans_name", ["nnUNetPlans", "nnUNetResEncUNetMPlans"])
def test_initialised_tensors_are_nnunets_initialisation(store, tmp_path, plans_name):
    """What nnU-Net's construction + network.initialize give, told apart from torch's default init: He-normal
    conv weights (std sqrt(2 / (1 + 0.01^2)) / sqrt(fan_in)), zero conv biases, norms at 1 and 0, and for
    residual encoders the last norm of every block at 0 (init_last_bn_before_add_to_0)."""
    out = tmp_path / "t.pth"
    source = "906.pth" if plans_name == "nnUNetPlans" else "906M.pth"
    result = run_transfer(store, source, fixture(D904, plans_name), out, strategy="encoder")
    weights = torch.load(out, weights_only=True)["network_weights"]
    plans, dj = fixture_data(D904, plans_name)
    with torch.device("meta"):
        net = oracle.build_real(plans, "3d_fullres", dj)
    modules = dict(net.named_modules())
    checked = set()
    for row in result.plan.tensors:
        if row.carried:
            continue
        module_name, _, what = row.key.rpartition(".")
        module = modules[module_name]
        value = weights[row.key].double()
        if isinstance(module, torch.nn.modules.conv._ConvNd) and what == "weight" and value.numel() > 100_000:
            fan_in = value[0].numel() if not isinstance(module, torch.nn.modules.conv._ConvTransposeNd) \
                else value.shape[1] * value[0, 0].numel()
            expected = (2 / (1 + 0.01 ** 2)) ** 0.5 / fan_in ** 0.5
            assert abs(value.std().item() / expected - 1) < 0.05, row.key
            checked.add("he")
        elif isinstance(module, torch.nn.modules.conv._ConvNd) and what == "bias":
            assert torch.count_nonzero(value) == 0, row.key
            checked.add("bias")
        elif isinstance(module, torch.nn.modules.instancenorm._InstanceNorm):
            last_in_block = ".conv2.norm." in row.key
            fill = 0.0 if (what == "bias" or last_in_block) else 1.0
            assert torch.all(value == fill), row.key
            checked.add("norm-zero" if last_in_block else "norm")
    assert {"he", "bias", "norm"} <= checked
    if plans_name != "nnUNetPlans":
        assert "norm-zero" in checked


# --------------------------------------------------------------------------- function, not only shapes


def test_kernel_inflated_1_to_3_computes_the_same():
    from plancheck.remedies.adapt import apply_steps
    from plancheck.remedies.transfer_plan import Step

    torch.manual_seed(0)
    w = torch.randn(4, 3, 1, 3, 3)
    b = torch.randn(4)
    x = torch.randn(2, 3, 5, 6, 7)
    inflated = apply_steps([Step("kernel-centre", 2, 1, 3)], w, torch.empty(4, 3, 3, 3, 3))
    src = torch.nn.functional.conv3d(x, w, b, padding=(0, 1, 1))  # nnU-Net pads (k - 1) // 2
    tgt = torch.nn.functional.conv3d(x, inflated, b, padding=(1, 1, 1))
    assert torch.allclose(src, tgt, atol=1e-5)


def test_kernel_averaged_3_to_1_same_block_output_on_constant_input():
    """conv -> instance norm (every nnU-Net stage): averaging the kernel keeps the block's output on inputs
    constant along that axis (the convolution alone is the source's scaled by 1/3 plus the same bias, which
    the norm removes); away from the zero-padded border slices."""
    from plancheck.remedies.adapt import apply_steps
    from plancheck.remedies.transfer_plan import Step

    torch.manual_seed(0)
    w, b = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    plane = torch.randn(2, 3, 1, 9, 9, dtype=torch.float64)
    x = plane.expand(2, 3, 7, 9, 9)  # constant along axis 0
    averaged = apply_steps([Step("kernel-average", 2, 3, 1)], w, torch.empty(4, 3, 1, 3, 3, dtype=torch.float64))
    norm = torch.nn.InstanceNorm3d(4, eps=0.0, affine=False)
    src = norm(torch.nn.functional.conv3d(x, w, b, padding=(1, 1, 1))[:, :, 1:-1])
    tgt = norm(torch.nn.functional.conv3d(x, averaged, b, padding=(0, 1, 1))[:, :, 1:-1])
    assert torch.allclose(src, tgt, atol=1e-9)
    raw_src = torch.nn.functional.conv3d(x, w, None, padding=(1, 1, 1))[:, :, 1:-1]
    raw_tgt = torch.nn.functional.conv3d(x, averaged, None, padding=(0, 1, 1))[:, :, 1:-1]
    assert torch.allclose(raw_src / 3, raw_tgt, atol=1e-9)


def test_stem_repeated_1_to_n_same_output_on_identical_channels(store, tmp_path):
    out = tmp_path / "t.pth"
    result = run_transfer(store, "906.pth", fixture(D904), out)  # 1 -> 4 channels
    key = "encoder.stages.0.0.convs.0.conv.weight"
    row = next(r for r in result.plan.tensors if key in r.keys)
    assert row.label == "adapted:channels-repeat(1->4, /4)"
    w_src = store.weights["906.pth"][key]
    w_tgt = torch.load(out, weights_only=True)["network_weights"][key]
    torch.manual_seed(0)
    image = torch.randn(1, 1, 6, 6, 6)
    a = torch.nn.functional.conv3d(image, w_src, padding=1)
    b = torch.nn.functional.conv3d(image.expand(1, 4, 6, 6, 6), w_tgt, padding=1)
    assert torch.allclose(a, b, atol=1e-5)


def test_transposed_conv_stride_rules_compute_what_they_claim():
    from plancheck.remedies.adapt import apply_steps
    from plancheck.remedies.transfer_plan import Step

    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 3, 3)
    w1 = torch.randn(4, 2, 1, 2, 2)  # stride 1 on axis 0
    up = apply_steps([Step("stride-repeat", 2, 1, 2)], w1, torch.empty(4, 2, 2, 2, 2))
    y1 = torch.nn.functional.conv_transpose3d(x, w1, stride=(1, 2, 2))
    y2 = torch.nn.functional.conv_transpose3d(x, up, stride=(2, 2, 2))
    assert torch.allclose(y1.repeat_interleave(2, dim=2), y2, atol=1e-6)  # nearest-neighbour upsampled
    w2 = torch.randn(4, 2, 2, 2, 2)
    down = apply_steps([Step("stride-average", 2, 2, 1)], w2, torch.empty(4, 2, 1, 2, 2))
    y = torch.nn.functional.conv_transpose3d(x, w2, stride=(2, 2, 2))
    y_avg = (y[:, :, 0::2] + y[:, :, 1::2]) / 2  # the two taps' outputs, averaged
    assert torch.allclose(torch.nn.functional.conv_transpose3d(x, down, stride=(1, 2, 2)), y_avg, atol=1e-6)


def _meta_layout(plans: dict, configuration: str, dj: dict):
    from plancheck.network.build import shapes_of_module
    from plancheck.transfer import layout_of

    with torch.device("meta"):
        net = oracle.build_real(plans, configuration, dj)
    return layout_of(net, shapes_of_module(net))


def _shallower(plans: dict, configuration: str, n: int) -> dict:
    plans = copy.deepcopy(plans)
    kw = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
    kw["n_stages"] = n
    for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage"):
        if key in kw:
            kw[key] = kw[key][:n]
    kw["n_conv_per_stage_decoder"] = kw["n_conv_per_stage_decoder"][: n - 1]
    return plans


def test_decoder_aligned_by_resolution_level_depth_6_to_5():
    from plancheck.remedies.transfer_plan import plan_transfer

    plans, dj = fixture_data(D901)
    source = _meta_layout(plans, "3d_fullres", dj)
    target = _meta_layout(_shallower(plans, "3d_fullres", 5), "3d_fullres", dj)
    assert (source.n_stages, target.n_stages) == (6, 5)
    assert set(target.levels_from_bottom) == {"decoder.stages", "decoder.transpconvs", "decoder.seg_layers"}
    plan = plan_transfer(source, target, "adapt")
    features = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"]
    seen = 0
    for row in plan.tensors:
        if not row.key.startswith(("decoder.stages.", "decoder.transpconvs.")):
            continue
        j = int(row.key.split(".")[2])
        assert row.source_key is not None
        assert row.source_key.split(".")[2] == str(j + 1)  # j + (S - T)
        # the level it serves: decoder stage j of a T-stage network outputs features of encoder level T - 2 - j
        level = 5 - 2 - j
        if row.key.endswith("convs.0.conv.weight") and "stages" in row.key:
            assert row.target_shape[0] == features[level] == row.source_shape[0]
        assert str(row.action) == "copied", row.key
        seen += 1
    assert seen
    # by name (exact), the same keys would pour the deepest decoder stage into the shallowest
    exact = plan_transfer(source, target, "exact")
    by_name = {r.key: r for r in exact.tensors}
    assert by_name["decoder.stages.0.convs.0.conv.weight"].source_key in (None, "decoder.stages.0.convs.0.conv.weight")
    assert str(by_name["decoder.stages.0.convs.0.conv.weight"].action) == "initialised"


def test_decoder_alignment_carries_the_level_values(store, tmp_path):
    """A real depth-5 checkpoint into the depth-4 906 network: decoder stage j gets source stage j + 1."""
    plans5 = _shallower(load(fixture(D906)), "3d_fullres", 4)  # 906 itself, as a base
    kw = plans5["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw["n_stages"] = 5
    kw["features_per_stage"] = kw["features_per_stage"] + [320]
    kw["kernel_sizes"] = kw["kernel_sizes"] + [[3, 3, 3]]
    kw["strides"] = kw["strides"] + [[2, 2, 2]]
    kw["n_conv_per_stage"] = kw["n_conv_per_stage"] + [2]
    kw["n_conv_per_stage_decoder"] = kw["n_conv_per_stage_decoder"] + [2]
    src = store.real("906-deep.pth", D906, "3d_fullres", plans=plans5)
    out = tmp_path / "t.pth"
    from plancheck.transfer import transfer

    result = transfer(src, fixture(D906), out)
    saved = torch.load(out, weights_only=True)["network_weights"]
    weights = store.weights["906-deep.pth"]
    for j in range(3):
        key = f"decoder.stages.{j}.convs.0.conv.weight"
        assert torch.equal(saved[key], weights[f"decoder.stages.{j + 1}.convs.0.conv.weight"]), key
    assert oracle.load_outcome(target_network(fixture(D906), "3d_fullres"), out).loaded
    assert result.plan.share > 0.5


# --------------------------------------------------------------------------- channel map, encoder declaration


def test_channel_map(store, tmp_path):
    out = tmp_path / "t.pth"
    result = run_transfer(store, "906.pth", fixture(D903), out, channel_map="0,new", seed=3)
    key = "encoder.stages.0.0.convs.0.conv.weight"
    row = next(r for r in result.plan.tensors if key in r.keys)
    assert "channel-map(0,new)" in row.label
    saved = torch.load(out, weights_only=True)["network_weights"][key]
    expected = store.weights["906.pth"][key].double().mean(dim=2, keepdim=True)  # kernel 3 -> 1 on axis 0
    assert torch.allclose(saved[:, 0:1].double(), expected, atol=1e-7)
    again = run_transfer(store, "906.pth", fixture(D903), tmp_path / "u.pth", channel_map="0,new", seed=3)
    assert again.plan.parameters_carried == result.plan.parameters_carried
    assert torch.equal(saved, torch.load(tmp_path / "u.pth", weights_only=True)["network_weights"][key])
    new = saved[:, 1].double()  # He-initialised by nnU-Net's initialize: fan_in = 2 channels x 1 x 3 x 3
    assert abs(new.std().item() / ((2 / (1 + 0.01 ** 2)) ** 0.5 / 18 ** 0.5) - 1) < 0.25


def test_channel_map_mismatch_is_a_usage_error(store, tmp_path, run_cli):
    code, _, err = run_cli("transfer", store.paths["906.pth"], fixture(D903), "-o", tmp_path / "t.pth",
                           "--channel-map", "0")
    assert code == 2 and "--channel-map has 1 entries" in one_line(err)
    assert not (tmp_path / "t.pth").exists()


def test_many_channels_to_other_channels_need_a_map(store, tmp_path):
    result = run_transfer(store, "904.pth", fixture(D903), tmp_path / "t.pth")  # 4 -> 2
    row = next(r for r in result.plan.tensors if "encoder.stages.0.0.convs.0.conv.weight" in r.keys)
    assert "pass --channel-map" in row.label
    mapped = run_transfer(store, "904.pth", fixture(D903), tmp_path / "u.pth", channel_map="mean,3")
    row = next(r for r in mapped.plan.tensors if "encoder.stages.0.0.convs.0.conv.weight" in r.keys)
    assert str(row.action) == "adapted"


def test_encoder_strategy_follows_the_declarations(store, tmp_path):
    from plancheck.network.build import build_meta_network

    result = run_transfer(store, "906.pth", fixture(D906, "nnUNetResEncUNetMPlans"), tmp_path / "t.pth",
                          strategy="encoder", dry_run=True)
    plans, dj = fixture_data(D906, "nnUNetResEncUNetMPlans")
    with torch.device("meta"):
        net = oracle.build_real(plans, "3d_fullres", dj)
    for row in result.plan.tensors:
        in_encoder = any(k.startswith((net.key_to_encoder + ".", net.key_to_stem + ".")) for k in row.keys)
        if str(row.action) in ("copied", "adapted"):
            assert in_encoder, row.key
        if not in_encoder and str(row.action) != "head":
            assert row.reason == "decoder starts fresh (--strategy encoder)"
    parts = {str(p.part): p for p in result.plan.parts}
    assert parts["decoder"].parameters_carried == 0
    assert parts["stem"].parameters_total > 0  # encoder.stem of ResEnc: declared outside key_to_encoder
    assert build_meta_network  # imported: the same builder plancheck uses


# --------------------------------------------------------------------------- CLI, API, check --transfer


def test_cli_report_ends_with_the_nnunet_command(store, tmp_path, run_cli):
    out = tmp_path / "t.pth"
    code, stdout, err = run_cli("transfer", store.paths["906.pth"], fixture(D902), "-o", out)
    assert code == 0, err
    assert stdout.rstrip().splitlines()[-1].strip() == (
        f"nnUNetv2_train 902 3d_fullres FOLD -p nnUNetPlans -pretrained_weights {out}")
    for part in ("stem", "encoder", "decoder", "head"):
        assert f"\n  {part} " in stdout
    assert "adapted:kernel-average(axis 0: 3->1)" in stdout


def test_cli_formats_and_dry_run(store, tmp_path, run_cli):
    out = tmp_path / "t.pth"
    code, stdout, _ = run_cli("transfer", store.paths["906.pth"], fixture(D902), "-o", out, "--dry-run",
                              "--format", "json")
    assert code == 0 and not out.exists()
    data = json.loads(stdout)
    assert data["dry_run"] is True and data["written"] is False
    assert {p["part"] for p in data["transfer"]["parts"]} == {"stem", "encoder", "decoder", "head"}
    assert all(t["action"] in ("copied", "adapted", "initialised", "head") for t in data["tensors"])
    code, stdout, _ = run_cli("transfer", store.paths["906.pth"], fixture(D902), "--dry-run", "--format", "markdown")
    assert code == 0 and "| part |" in stdout and "```sh\nnnUNetv2_train 902" in stdout


def test_existing_output_needs_force(store, tmp_path, run_cli):
    out = tmp_path / "t.pth"
    out.write_bytes(b"mine")
    code, _, err = run_cli("transfer", store.paths["906.pth"], fixture(D906), "-o", out)
    assert code == 2 and "--force" in one_line(err)
    assert out.read_bytes() == b"mine"
    code, _, _ = run_cli("transfer", store.paths["906.pth"], fixture(D906), "-o", out, "--force")
    assert code == 0 and out.read_bytes() != b"mine"


def test_safetensors_and_prefixed_state_dict_sources(store, tmp_path, run_cli):
    """Weights outside nnU-Net's container: read through --source-plans; the output is nnU-Net's container."""
    from safetensors.torch import save_file

    weights = store.weights["906.pth"]
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items() if ".all_modules." not in k
               and not k.startswith("decoder.encoder.")}, str(st))
    ddp = tmp_path / "ddp.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in weights.items()}}, ddp)
    for i, src in enumerate((st, ddp)):
        out = tmp_path / f"t{i}.pth"
        code, stdout, err = run_cli("transfer", src, fixture(D906), "-o", out, "--source-plans", fixture(D906),
                                    "--strategy", "exact")
        assert code == 0, err
        assert "TRANSFER (exact): 100.0%" in stdout
        saved = torch.load(out, weights_only=True)["network_weights"]
        assert all(torch.equal(saved[k], v) for k, v in weights.items() if ".seg_layers." not in k)
        assert oracle.load_outcome(target_network(fixture(D906), "3d_fullres"), out).loaded


def test_plans_source_needs_weights(tmp_path, run_cli):
    code, out, err = run_cli("transfer", fixture(D906), fixture(D906), "-o", tmp_path / "t.pth")
    assert code == 3 and out == "" and "transfer needs weights" in one_line(err)
    assert not (tmp_path / "t.pth").exists()


def test_python_api_returns_a_frozen_record(store, tmp_path):
    import dataclasses

    import plancheck

    result = plancheck.transfer(store.paths["906.pth"], fixture(D906), tmp_path / "t.pth", strategy="exact")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.written = False  # type: ignore[misc]
    assert result.plan.share == 1.0 and result.exit_code == 0
    assert "TRANSFER (exact): 100.0%" in str(result)


def test_check_transfer_gives_the_shares_without_writing(store, tmp_path, run_cli):
    before = set(tmp_path.iterdir())
    code, stdout, _ = run_cli("check", store.paths["906.pth"], fixture(D902), "--transfer", "adapt",
                              "--format", "json")
    assert code == 1  # the verdict stays the check's
    data = json.loads(stdout)
    written = run_transfer(store, "906.pth", fixture(D902), tmp_path / "t.pth")
    assert data["transfer"]["parameters_carried"] == written.plan.parameters_carried
    assert [p["share"] for p in data["transfer"]["parts"]] == [p.share for p in written.plan.parts]
    assert set(tmp_path.iterdir()) - before == {tmp_path / "t.pth"}
    code, stdout, _ = run_cli("check", store.paths["906.pth"], fixture(D902), "--transfer", "encoder")
    assert "TRANSFER (encoder):" in stdout


def test_failed_read_back_is_exit_5_and_writes_nothing(store, tmp_path, run_cli, monkeypatch):
    import plancheck.transfer  # noqa: F401
    import sys

    module = sys.modules["plancheck.transfer"]
    real = module.verify

    def broken(path, target, *, shown=None):
        with open(path, "r+b") as fh:  # damage what was written, as a failing disk would
            fh.truncate(100)
        return real(path, target, shown=shown)

    monkeypatch.setattr(module, "verify", broken)
    out = tmp_path / "t.pth"
    code, _, err = run_cli("transfer", store.paths["906.pth"], fixture(D906), "-o", out)
    assert code == 5 and "read-back check" in one_line(err)  # not 4: that is an internal error (issue 17, item 8)
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- hostile and broken checkpoints


@pytest.mark.parametrize("payload", ["system", "exec"])
def test_malicious_checkpoint(tmp_path, run_cli, payload):
    marker = tmp_path / "pwned"
    evil = _System(f"touch {marker}") if payload == "system" else _Exec(f"open({str(marker)!r}, 'w').write('x')")
    path = tmp_path / "checkpoint_final.pth"
    plans, _ = fixture_data(D906)
    torch.save({"network_weights": {"conv.weight": torch.zeros(2)}, "init_args": {"plans": plans, "x": evil}}, path)
    out = tmp_path / "t.pth"
    code, stdout, err = run_cli("transfer", path, fixture(D906), "-o", out)
    assert code == 3 and stdout == ""
    assert "refuses to load global" in one_line(err)
    assert not marker.exists() and not out.exists()


def test_storage_claiming_more_bytes_than_its_entry(store, tmp_path, run_cli):
    import zipfile

    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(store.paths["906.pth"]) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data/0"):
                data = data[:16]
            zout.writestr(info, data)
    out = tmp_path / "t.pth"
    code, stdout, err = run_cli("transfer", bad, fixture(D906), "-o", out)
    assert code == 3 and stdout == ""
    line = one_line(err)
    assert str(bad) in line and "its zip entry holds 16" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


def test_truncated_checkpoint(store, tmp_path, run_cli):
    data = store.paths["906.pth"].read_bytes()
    bad = tmp_path / "cut.pth"
    bad.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "t.pth"
    code, _, err = run_cli("transfer", bad, fixture(D906), "-o", out)
    assert code == 3 and "damaged zip archive" in one_line(err)
    assert not out.exists()


# --------------------------------------------------------------------------- --strategy encoder: master's rules


@pytest.mark.parametrize("source, target, repeated, refuses", [
    ((D906, "nnUNetPlans"), (D906, "nnUNetPlans"), None, False),  # same network: master loads it all
    ((D906, "nnUNetPlans"), (D904, "nnUNetPlans"), 4, True),  # 1 -> 4 channels; depth +2: master's strict load fails
    ((D906, "nnUNetResEncUNetMPlans"), (D904, "nnUNetResEncUNetMPlans"), 4, True),
    ((D904, "nnUNetPlans"), (D906, "nnUNetPlans"), None, True),  # 4 -> 1 channels: no rule; source stages left over
])
def test_encoder_strategy_plans_masters_stem_rule(source, target, repeated, refuses):
    """--strategy encoder = what master's pretrained trainers load: the stem's input projection 1 -> N repeated and
    divided (never N -> M), nothing in the decoder, and a note wherever master's strict load would refuse."""
    from plancheck.remedies.transfer_plan import plan_transfer

    src = _meta_layout(fixture_data(*source)[0], "3d_fullres", fixture_data(*source)[1])
    tgt = _meta_layout(fixture_data(*target)[0], "3d_fullres", fixture_data(*target)[1])
    plan = plan_transfer(src, tgt, "encoder")
    adapted = [r for r in plan.tensors if str(r.action) == "adapted"]
    in_proj = {f"{k}.weight" for k in tgt.in_proj}
    if repeated:
        row, = adapted
        assert in_proj & set(row.keys) and row.label == f"adapted:channels-repeat(1->{repeated}, /{repeated})"
        assert any(f"repeated over {repeated} input channels and divided by {repeated}" in n for n in plan.notes)
    else:
        assert not adapted
    assert not any(r.carried for r in plan.tensors if str(r.part) in ("decoder", "head"))
    refusal = [n for n in plan.notes if n.startswith("nnU-Net master's PretrainedTrainer would refuse")]
    assert bool(refusal) is refuses
    if refuses:
        left = sum(1 for r in plan.tensors if str(r.part) in ("stem", "encoder") and not r.carried)
        assert f"{left} target stem/encoder tensor(s) do not fit" in refusal[0]
        if source[0] == D904:  # six source stages into four: stages 4 and 5 have no place
            assert "have no place in the target, e.g. encoder.stages.4." in refusal[0]


def test_encoder_strategy_repeats_the_stem_values(store, tmp_path):
    """From an nnU-Net checkpoint too: the target's stem input projection is the source's, repeated and divided
    (906 -> 904: 1 -> 4 channels, same first kernel); with another first kernel (903) it is not carried."""
    key = "encoder.stages.0.0.convs.0.conv.weight"
    source = store.weights["906.pth"][key]
    out = tmp_path / "t.pth"
    result = run_transfer(store, "906.pth", fixture(D904), out, strategy="encoder")
    weights = torch.load(out, weights_only=True)["network_weights"]
    assert torch.allclose(weights[key], torch.cat([source] * 4, dim=1) / 4)
    assert torch.equal(weights[key], weights["encoder.stages.0.0.convs.0.all_modules.0.weight"])
    assert oracle.load_outcome(target_network(fixture(D904), "3d_fullres"), out) == oracle.Outcome(True)
    assert any("repeated over 4 input channels and divided by 4" in n for n in result.notes)

    result = run_transfer(store, "906.pth", fixture(D903), tmp_path / "u.pth", strategy="encoder")  # kernel 1x3x3
    row = {r.key: r for r in result.plan.tensors}[key]
    assert str(row.action) == "initialised" and "shape differs" in row.reason
    refusal, = [n for n in result.notes if "PretrainedTrainer would refuse" in n]
    assert "strict load_state_dict" in refusal


# --------------------------------------------------------------------------- the transfer file as a source


def test_transfer_output_is_a_source_like_any_checkpoint(store, tmp_path, run_cli):
    """check and verify read what transfer wrote, through its provenance record (issue 17, item 2)."""
    out = tmp_path / "t.pth"
    code, _, err = run_cli("transfer", store.paths["906.pth"], fixture(D902), "-o", out)
    assert code == 0, err
    code, stdout, err = run_cli("check", out, fixture(D902), "--format", "json")
    assert code == 0, err  # before: exit 3, "without init_args ... pass --source-plans"
    d = json.loads(stdout)
    assert d["source"]["kind"] == "transfer"
    assert d["source"]["details"]["plans_from"] == "plancheck_transfer"
    assert d["source"]["configuration"] == "3d_fullres"
    assert d["summary"]["parameters_loadable"] == d["summary"]["parameters_total"] > 0
    code, stdout, err = run_cli("check", out, fixture(D902))
    assert code == 0 and "plancheck transfer file" in stdout, err
    # and against the original source's plans it does not load: it is the target's network now
    code, _, err = run_cli("check", out, fixture(D906))
    assert code == 1, err


def test_verify_reads_a_transfer_file(store, tmp_path, run_cli):
    out = tmp_path / "t.pth"
    assert run_cli("transfer", store.paths["906.pth"], fixture(D906), "-o", out)[0] == 0
    code, stdout, err = run_cli("verify", out, fixture(D906), "--device", "cpu", "--iterations", "1",
                                "--format", "json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["check"]["source"]["kind"] == "transfer"
    assert d["weights"]["loaded"] is True  # nnU-Net's load_pretrained_weights, every tensor compared after


def test_transfer_file_whose_plans_are_gone_without_a_copy(store, tmp_path, run_cli):
    """An older transfer file names its target plans only; once they are gone it is one clear line, exit 3."""
    import torch

    out = tmp_path / "t.pth"
    assert run_cli("transfer", store.paths["906.pth"], fixture(D906), "-o", out)[0] == 0
    payload = torch.load(out, weights_only=True)
    for key in ("plans_data", "dataset_json_data", "plans_path"):
        payload["plancheck_transfer"]["target"].pop(key)
    payload["plancheck_transfer"]["target"]["plans"] = str(tmp_path / "gone.json")
    old = tmp_path / "old.pth"
    torch.save(payload, old)
    code, _, err = run_cli("check", old, fixture(D906))
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert "gone.json" in err and "--source-plans" in err


# --------------------------------------------------------------------------- one rule for the printed commands


@pytest.mark.parametrize("trainer", [None, "nnUNetTrainer_1epoch"])
def test_fix_and_transfer_print_the_trainer_the_check_assumed(store, tmp_path, run_cli, trainer):
    """--fix printed no -tr, transfer the source's; now both name the trainer the check assumed (issue 17, item 5)."""
    extra = ("--target-trainer", trainer) if trainer else ()
    target = tmp_path / "Dataset902_CTAnisotropic"
    shutil.copytree(fixture(D902).parent, target)
    code, out, err = run_cli("check", store.paths["906.pth"], target / "nnUNetPlans.json", "--fix", "--dry-run",
                             "--format", "json", *extra)
    assert code == 0, err
    fix = json.loads(out)["fix"]
    train = [c for c in fix["commands"] if c.startswith("nnUNetv2_train ")]
    code, out, err = run_cli("transfer", store.paths["906.pth"], target / "nnUNetPlans.json", "--dry-run",
                             "--format", "json", *extra)
    assert code == 0, err
    transferred = json.loads(out)
    for command in (train[0], transferred["command"]):
        if trainer:
            assert f" -tr {trainer} " in command, command
        else:
            assert " -tr " not in command, command  # nnUNetTrainer, nnU-Net's default
    for notes in (fix["notes"], transferred["notes"]):
        assert any(n.startswith(f"the command trains with {trainer or 'nnUNetTrainer'}") for n in notes), notes


def test_commands_say_that_this_machine_needs_device_cpu(store, tmp_path, run_cli):
    import torch

    if torch.cuda.is_available():  # the note is for machines without CUDA; on a GPU machine there is none
        code, out, _ = run_cli("transfer", store.paths["906.pth"], fixture(D902), "--dry-run", "--format", "json")
        assert not any("-device cpu" in n for n in json.loads(out)["notes"])
        return
    code, out, _ = run_cli("transfer", store.paths["906.pth"], fixture(D902), "--dry-run", "--format", "json")
    data = json.loads(out)
    assert any("add -device cpu" in n for n in data["notes"])
    assert "-device" not in data["command"]  # a note, not a silent flag
