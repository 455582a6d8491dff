"""nnssl pretraining checkpoints as SOURCE: two verdicts, each checked against an independent implementation.

* nnU-Net's standard ``-pretrained_weights`` loader (the whole network): nnunetv2's own
  ``load_pretrained_weights`` on a real CPU target network decides (tests/nnunet_oracle.py).
* nnU-Net master's PretrainedTrainer (encoder and stem only): :func:`master_pretrained_load`
  below re-implements its documented behaviour on real tensors (stem input projection
  repeated over the new input channels and divided by their number, learned positional
  embedding interpolated trilinearly to the new token grid, ``cls_token`` dropped, strict
  ``load_state_dict`` of the encoder and of the stem), and plancheck's shape-only replay
  must reach the same outcome.

Checkpoints are made at test time, into tmp_path, by fixtures/make_nnssl.py from the fixture
plans (nnU-Net planner output).
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
import shutil
import sys

import pytest
import torch

import nnunet_oracle as oracle
from conftest import FIXTURES, ROOT, fixture, load
from pickle_payloads import System
from plancheck import check
from plancheck.inputs.nnssl import pretrained_trainer_verdict, read_plan
from plancheck.records.report import Status

sys.path.insert(0, str(ROOT / "fixtures"))
import make_nnssl  # noqa: E402

sys.path.pop(0)

D901, D903, D906 = "Dataset901_CTIsotropic", "Dataset903_ProstateMRI", "Dataset906_SmallImages"


# --------------------------------------------------------------------------- master's rules, re-implemented


def _strip(key: str, prefix: str) -> str:
    rest = key[len(prefix):]
    return rest[1:] if rest.startswith(".") else rest


def _interpolate_pos_embed(pos: torch.Tensor, pt_patch, new_patch, patch_embed, drop_first: bool,
                           model_has_cls: bool, model_pos: torch.Tensor) -> torch.Tensor:
    """A token grid resized trilinearly (align_corners=False), the class token's row kept or taken from the model."""
    import torch.nn.functional as F

    first = pos[:, :1] if drop_first else (model_pos[:, :1] if model_has_cls else None)
    grid = pos[:, 1:] if drop_first else pos
    src = [d // p for d, p in zip(pt_patch, patch_embed)]
    dst = [d // p for d, p in zip(new_patch, patch_embed)]
    b, n, c = grid.shape
    volume = grid.transpose(1, 2).reshape(b, c, *src)
    volume = F.interpolate(volume, size=dst, mode="trilinear", align_corners=False)
    grid = volume.reshape(b, c, math.prod(dst)).transpose(1, 2)
    return torch.cat([first, grid], dim=1) if model_has_cls and first is not None else grid


def master_pretrained_load(network: torch.nn.Module, checkpoint: dict, new_in: int, new_patch) -> str | None:
    """Load encoder and stem as master's PretrainedTrainer documents it; None when it loads, else the failing part."""
    plan = checkpoint["nnssl_adaptation_plan"]
    weights = checkpoint["network_weights"]
    pt_in = plan["pretrain_num_input_channels"]
    pt_patch = list(plan["pretrain_plan"]["configurations"].values())[0]["patch_size"]
    enc, stem = plan["key_to_encoder"], plan["key_to_stem"]
    encoder = {_strip(k, enc): v.clone() for k, v in weights.items() if k.startswith(enc)}
    stem_w = {_strip(k, stem): v.clone() for k, v in weights.items() if k.startswith(stem)}
    if new_in > pt_in:  # the input projection, repeated over the new channels and divided by their number
        first = _strip(plan["keys_to_in_proj"][0], stem) + ".weight"
        repeated = stem_w[first].repeat(1, new_in, *([1] * (stem_w[first].dim() - 2))) / new_in
        for key in plan["keys_to_in_proj"]:
            stem_w[_strip(key, stem) + ".weight"] = repeated
    lpe = getattr(network, "key_to_lpe", None)
    if lpe is not None and list(pt_patch) != list(new_patch):
        target_enc = network.get_submodule(network.key_to_encoder).state_dict()
        where, model = (encoder, target_enc) if lpe.startswith(network.key_to_encoder) else (
            stem_w, network.get_submodule(network.key_to_stem).state_dict())
        where["pos_embed"] = _interpolate_pos_embed(
            where["pos_embed"], pt_patch, new_patch, stem_w["proj.weight"].shape[2:],
            drop_first="cls_token" in where, model_has_cls="cls_token" in model, model_pos=model["pos_embed"])
    encoder = {k: v for k, v in encoder.items() if "cls_token" not in k}
    try:
        network.get_submodule(network.key_to_encoder).load_state_dict(encoder)
    except RuntimeError:
        return "encoder"
    try:
        network.get_submodule(network.key_to_stem).load_state_dict(stem_w)
    except RuntimeError:
        return "stem"
    return None


def failing_part(verdict) -> str | None:
    return None if verdict.loads else verdict.failure.split(" ", 1)[0]


# --------------------------------------------------------------------------- helpers


def with_channels(tmp_path: pathlib.Path, dataset: str, n: int, plans: str = "nnUNetPlans") -> pathlib.Path:
    """The fixture's plans beside a dataset.json with ``n`` channels (a fine-tuning dataset with more modalities)."""
    folder = tmp_path / f"{dataset}_{n}ch"
    folder.mkdir()
    shutil.copy(fixture(dataset, plans), folder / f"{plans}.json")
    dj = load(FIXTURES / dataset / "dataset.json")
    dj["channel_names"] = {str(i): f"ch{i}" for i in range(n)}
    (folder / "dataset.json").write_text(json.dumps(dj))
    return folder / f"{plans}.json"


def real_target(plans_path: pathlib.Path, deep_supervision: bool = True) -> torch.nn.Module:
    dj_path = plans_path.parent / "dataset.json"
    net = oracle.build_real(load(plans_path), "3d_fullres", load(dj_path) if dj_path.is_file() else None)
    if not deep_supervision:
        net.decoder.deep_supervision = False
    return net


def make(tmp_path: pathlib.Path, dataset: str, plans: str = "nnUNetPlans", name: str = "nnssl.pth", **kw):
    path = tmp_path / name
    saved = make_nnssl.make_checkpoint(fixture(dataset, plans), "3d_fullres", path, **kw)
    return path, saved


def assert_strict_agrees(report, ckpt_path, target_net, saved) -> None:
    outcome = oracle.load_outcome(target_net, ckpt_path)
    ff = report.first_failure
    assert oracle.Outcome(report.compatible, ff and ff.key, ff and ff.reason) == outcome
    direct = oracle.direct_sets({k: tuple(v.shape) for k, v in saved["network_weights"].items()},
                                oracle.shapes(target_net))
    for status in ("mismatch", "missing", "unused"):
        keys = {k for row in report.tensors if row.status is Status(status) for k in row.keys}
        assert keys == direct[status], status


# --------------------------------------------------------------------------- tests

PAIRS = [
    # (source dataset, source plans, target plans file in fixtures, target channels or None)
    (D906, "nnUNetPlans", (D906, "nnUNetPlans"), None),  # same network: both load
    (D906, "nnUNetResEncUNetMPlans", (D906, "nnUNetResEncUNetMPlans"), None),
    (D906, "nnUNetResEncUNetMPlans", (D906, "nnUNetResEncUNetMPlans"), 2),  # 2 channels: stem repeated (ResEnc)
    (D906, "nnUNetPlans", (D906, "nnUNetPlans"), 2),  # plain U-Net: its stem lies inside the encoder
    (D906, "nnUNetResEncUNetMPlans", (D906, "nnUNetPlans"), None),  # another class
    (D901, "nnUNetResEncUNetMPlans", (D901, "nnUNetResEncUNetMPlans"), None),
    (D901, "nnUNetResEncUNetMPlans", ("Dataset902_CTAnisotropic", "nnUNetResEncUNetMPlans"), None),  # kernels
]


@pytest.mark.slow
@pytest.mark.parametrize("src, src_plans, target, channels", PAIRS,
                         ids=[f"{p[0][7:10]}{p[1][10:17] or 'Plain'}->{p[2][0][7:10]}{p[2][1][10:17]}-{p[3]}"
                              for p in PAIRS])
def test_both_verdicts_agree_with_nnunet(tmp_path, src, src_plans, target, channels):
    ckpt, saved = make(tmp_path, src, src_plans)
    target_path = fixture(*target) if channels is None else with_channels(tmp_path, target[0], channels, target[1])
    report = check(ckpt, target_path)
    assert report.source.kind == "nnssl"

    target_net = real_target(target_path)
    assert_strict_agrees(report, ckpt, target_net, saved)

    master_net = real_target(target_path, deep_supervision=False)  # PretrainedTrainer builds without it
    expected = master_pretrained_load(master_net, saved, report.target.input_channels,
                                      load(target_path)["configurations"]["3d_fullres"]["patch_size"])
    verdict = report.pretrained_trainer
    assert failing_part(verdict) == expected, verdict.failure
    if channels and src_plans == "nnUNetResEncUNetMPlans":
        assert not report.compatible and verdict.loads  # the case master's trainer exists for
        assert any("repeated over 2 input channels, divided by 2" in a for a in verdict.adaptations)


def test_report_says_what_the_checkpoint_is(tmp_path, run_cli):
    ckpt, saved = make(tmp_path, D906, "nnUNetResEncUNetMPlans")
    code, out, err = run_cli("check", ckpt, fixture(D906, "nnUNetResEncUNetMPlans"), "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    facts = d["source"]["details"]["nnssl"]
    plan = saved["nnssl_adaptation_plan"]
    assert d["source"]["kind"] == "nnssl"
    assert facts["pretrain_patch_size"] == plan["pretrain_plan"]["configurations"]["onemmiso"]["patch_size"]
    assert facts["pretrain_spacing"] == plan["pretrain_plan"]["configurations"]["onemmiso"]["spacing"]
    assert facts["citations"] == saved["citations"]
    assert d["pretrained_trainer"]["loads"] is True
    assert d["source"]["input_channels"] == 1
    code, out, _ = run_cli("check", ckpt, fixture(D906, "nnUNetResEncUNetMPlans"))
    assert "nnU-Net master's PretrainedTrainer (encoder and stem only): loads" in out
    assert "Please cite" in out and "OpenMind" in out


def test_like_nnssl_reads_the_fixture_structure(tmp_path):
    """What like_nnssl.py takes from the file (with torch.load(weights_only=True)) is all there."""
    ckpt, _ = make(tmp_path, D906)
    loaded = torch.load(ckpt, weights_only=True, map_location="cpu")
    plan = loaded["nnssl_adaptation_plan"]
    config = list(plan["pretrain_plan"]["configurations"].values())[0]
    assert {"spacing", "patch_size"} <= set(config)
    for key in ("key_to_encoder", "key_to_stem", "keys_to_in_proj", "key_to_lpe", "pretrain_num_input_channels",
                "recommended_downstream_patchsize"):
        assert key in plan
    assert {"arch_class_name", "arch_kwargs", "arch_kwargs_requiring_import"} == set(plan["architecture_plans"])
    assert isinstance(loaded["citations"], list)


# --------------------------------------------------------------------------- positional embeddings, cls_token


class TinyViT(torch.nn.Module):
    """The parts master's rules touch in a transformer: a patch-embedding stem, an encoder with pos_embed."""

    def __init__(self, in_ch: int, patch: list[int], cls: bool, embed: int = 8, patch_embed=(4, 4, 4)):
        super().__init__()
        self.key_to_encoder, self.key_to_stem, self.key_to_lpe = "eva", "down_projection", "eva.pos_embed"
        self.keys_to_in_proj = ("down_projection.proj",)
        self.down_projection = torch.nn.Module()
        self.down_projection.proj = torch.nn.Conv3d(in_ch, embed, patch_embed, patch_embed)
        self.eva = torch.nn.Module()
        tokens = math.prod(d // p for d, p in zip(patch, patch_embed))
        self.eva.pos_embed = torch.nn.Parameter(torch.randn(1, tokens + int(cls), embed))
        if cls:
            self.eva.cls_token = torch.nn.Parameter(torch.randn(1, 1, embed))
        self.eva.blocks = torch.nn.Linear(embed, embed)


def _vit_checkpoint(net: TinyViT, in_ch: int, patch: list[int]) -> dict:
    return {
        "network_weights": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "nnssl_adaptation_plan": {
            "architecture_plans": {"arch_class_name": "TinyViT", "arch_kwargs": {},
                                   "arch_kwargs_requiring_import": []},
            "pretrain_plan": {"configurations": {"pt": {"spacing": [1, 1, 1], "patch_size": patch}}},
            "pretrain_num_input_channels": in_ch,
            "recommended_downstream_patchsize": patch,
            "key_to_encoder": "eva", "key_to_stem": "down_projection",
            "keys_to_in_proj": ["down_projection.proj"], "key_to_lpe": "eva.pos_embed",
        },
        "citations": [],
    }


@pytest.mark.parametrize("pt_cls, new_cls", [(True, False), (False, False), (True, True), (False, True)])
@pytest.mark.parametrize("new_patch, new_in", [([16, 16, 16], 1), ([16, 24, 32], 1), ([16, 16, 16], 3),
                                               ([8, 32, 16], 2)])
def test_positional_embedding_and_cls_token_rules(pt_cls, new_cls, new_patch, new_in):
    pt_patch = [16, 16, 16]
    source = TinyViT(1, pt_patch, pt_cls)
    saved = _vit_checkpoint(source, 1, pt_patch)
    target = TinyViT(new_in, new_patch, new_cls)
    expected = master_pretrained_load(target, saved, new_in, new_patch)
    plan = read_plan({"nnssl_adaptation_plan": saved["nnssl_adaptation_plan"], "citations": []}, "t.pth")
    verdict = pretrained_trainer_verdict(
        plan, {k: tuple(v.shape) for k, v in saved["network_weights"].items()},
        {k: tuple(v.shape) for k, v in TinyViT(new_in, new_patch, new_cls).state_dict().items()},
        target_key_to_encoder="eva", target_key_to_stem="down_projection", target_key_to_lpe="eva.pos_embed",
        target_input_channels=new_in, target_patch_size=new_patch)
    assert failing_part(verdict) == expected, verdict.failure
    if pt_cls:
        assert "cls_token dropped" in verdict.adaptations
    if new_patch != pt_patch:
        assert any("interpolated (trilinear)" in a for a in verdict.adaptations)
    if expected is None and new_patch != pt_patch:
        # the interpolated embedding is the target's shape, and the repeated stem is the mean-preserving copy
        assert target.eva.pos_embed.shape[1] == math.prod(d // 4 for d in new_patch) + int(new_cls)


# --------------------------------------------------------------------------- hostile files


def _save(tmp_path: pathlib.Path, obj: dict, name: str = "evil.pth") -> pathlib.Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _base(tmp_path) -> dict:
    _, saved = make(tmp_path, D906, name="base.pth")
    return saved


def _one_line_exit_3(run_cli, path, *needles):
    code, out, err = run_cli("check", path, fixture(D906))
    assert code == 3, err
    assert out == ""
    line, = err.strip().splitlines()
    assert str(path) in line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in line


def test_unexpected_global_in_the_adaptation_plan(tmp_path, run_cli):
    saved = _base(tmp_path)
    saved["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]["x"] = System("touch /tmp/plancheck_pwned")
    path = _save(tmp_path, saved)
    _one_line_exit_3(run_cli, path, "refuses to load global")
    assert not pathlib.Path("/tmp/plancheck_pwned").exists()


def test_huge_citations(tmp_path, run_cli):
    saved = _base(tmp_path)
    saved["citations"] = [{"type": "x", "name": "y", "apa_citations": ["z" * 2_000_000]}]
    _one_line_exit_3(run_cli, _save(tmp_path, saved), "citations: larger than")


def test_deep_nesting(tmp_path, run_cli):
    saved = _base(tmp_path)
    deep: list = []
    for _ in range(100):
        deep = [deep]
    saved["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]["deep"] = deep
    _one_line_exit_3(run_cli, _save(tmp_path, saved), "nnssl_adaptation_plan nested deeper than")


@pytest.mark.parametrize("mutate, needle", [
    (lambda p: p.pop("architecture_plans"), "no 'architecture_plans'"),
    (lambda p: p.update(pretrain_num_input_channels="1"), "'pretrain_num_input_channels' is a str"),
    (lambda p: p["pretrain_plan"]["configurations"]["onemmiso"].update(patch_size=[0, 8]), "not a list of positive"),
    (lambda p: p["architecture_plans"].update(arch_class_name="os.system"), "refusing"),
    (lambda p: p["architecture_plans"].update(arch_class_name="PrimusM"), "plancheck checks nnssl U-Nets"),
])
def test_malformed_adaptation_plans(tmp_path, run_cli, mutate, needle):
    saved = _base(tmp_path)
    mutate(saved["nnssl_adaptation_plan"])
    _one_line_exit_3(run_cli, _save(tmp_path, saved), needle)


def test_an_nnunet_checkpoint_is_not_taken_for_nnssl(tmp_path):
    """Only the adaptation plan makes a checkpoint nnssl; extras are not read from bare state_dicts."""
    plans = load(fixture(D906))
    net = oracle.build_real(plans, "3d_fullres", load(FIXTURES / D906 / "dataset.json"))
    path = tmp_path / "ckpt.pth"
    torch.save(oracle.nnunet_checkpoint(net, plans, load(FIXTURES / D906 / "dataset.json"), "3d_fullres"), path)
    report = check(path, fixture(D906))
    assert report.source.kind == "checkpoint" and report.pretrained_trainer is None
    assert "pretrained_trainer" not in report.to_dict()
    copy.deepcopy(report)


# --------------------------------------------------------------------------- transfer --strategy encoder


def random_source(tmp_path: pathlib.Path, dataset: str, plans: str):
    """An nnssl checkpoint whose weights are real random values (aliased keys share one tensor, as nnssl saves)."""
    torch.manual_seed(11)
    net = make_nnssl.build_network(load(fixture(dataset, plans)), "3d_fullres", 1, 1, device="cpu")
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    weights = {k: v.detach() for k, v in net.state_dict().items()}
    return make(tmp_path, dataset, plans, network=net, weights=weights)


def _owned(network: torch.nn.Module, *modules: str) -> set[int]:
    """Identities of the tensors under the named submodules (every alias key of them is then recognised)."""
    return {v.data_ptr() for m in modules for v in network.get_submodule(m).state_dict().values()}


ENCODER_CASES = [
    # (plans, target input channels or None: the fixture's own, master's PretrainedTrainer loads?)
    ("nnUNetResEncUNetMPlans", None, True),  # (a) same architecture, 1 input channel
    ("nnUNetResEncUNetMPlans", 2, True),  # (b) the stem's input projection 1 -> 2, repeated and halved
    ("nnUNetResEncUNetMPlans", 3, True),
    ("nnUNetPlans", None, True),
    ("nnUNetPlans", 2, False),  # a plain U-Net's stem lies inside its encoder: master's strict load refuses
]


@pytest.mark.slow
@pytest.mark.parametrize("plans, channels, master_loads", ENCODER_CASES,
                         ids=[f"{c[0][10:17] or 'Plain'}-{c[1] or 1}ch" for c in ENCODER_CASES])
def test_transfer_encoder_writes_what_master_loads(tmp_path, plans, channels, master_loads):
    """The file loads with nnU-Net 2.8.1's own load_pretrained_weights into the target plans' network; its stem and
    encoder are what master's PretrainedTrainer (re-implemented above) puts there; its decoder is nnU-Net's init."""
    from plancheck.transfer import transfer

    ckpt, saved = random_source(tmp_path, D906, plans)
    target_path = fixture(D906, plans) if channels is None else with_channels(tmp_path, D906, channels, plans)
    n_in = channels or 1
    out = tmp_path / "encoder.pth"
    result = transfer(ckpt, target_path, out, strategy="encoder")
    assert result.written and result.verified

    stock = real_target(target_path)
    assert oracle.load_outcome(stock, out) == oracle.Outcome(True)
    got = stock.state_dict()
    assert all(torch.equal(got[k], v) for k, v in torch.load(out, weights_only=True)["network_weights"].items()
               if ".seg_layers." not in k)

    master = real_target(target_path, deep_supervision=False)
    patch = load(target_path)["configurations"]["3d_fullres"]["patch_size"]
    failure = master_pretrained_load(master, saved, n_in, patch)
    assert (failure is None) is master_loads
    expected = master.state_dict()
    source = saved["network_weights"]
    mine = _owned(stock, stock.key_to_encoder, stock.key_to_stem)
    in_proj = {got[f"{k}.weight"].data_ptr() for k in stock.keys_to_in_proj}
    compared = decoder = 0
    for key, value in got.items():
        if value.data_ptr() in mine:
            if master_loads:
                assert torch.equal(value, expected[key]), key  # exactly master's values
            elif value.data_ptr() in in_proj:  # plancheck repeats it where master's strict load stops; the note says so
                assert torch.allclose(value, source[key].repeat(1, n_in, 1, 1, 1) / n_in), key
            else:
                assert torch.equal(value, source[key]), key
            compared += 1
        elif ".seg_layers." not in key:
            assert not torch.equal(value, source[key]), key  # nnU-Net's initialisation, not the source's values
            if key.endswith(".bias") and ".norm." not in key:
                assert torch.count_nonzero(value) == 0, key  # network.initialize zeroes conv biases
            decoder += 1
    assert compared > 10 and decoder > 5
    if n_in > 1:
        first = f"{stock.keys_to_in_proj[0]}.weight"
        assert not torch.equal(got[first][:, :1], source[first])  # really repeated and divided
        assert any(f"repeated over {n_in} input channels and divided by {n_in}" in n for n in result.notes)
    if master_loads:
        assert any("PretrainedTrainer would load" in n for n in result.notes), result.notes
    else:
        note, = [n for n in result.notes if "PretrainedTrainer would refuse" in n]
        assert "encoder" in note and "strict" in note, note


def test_transfer_report_gives_masters_verdict(tmp_path, run_cli):
    """Where master's PretrainedTrainer refuses (a plain U-Net's in-encoder stem, 2 channels), the transfer report says
    so, with master's reason (the same as check's pretrained_trainer verdict), and what plancheck writes instead."""
    ckpt, _ = make(tmp_path, D906)
    target = with_channels(tmp_path, D906, 2)
    failure = check(ckpt, target).pretrained_trainer.failure
    assert failure and failure.startswith("encoder")
    code, out, err = run_cli("transfer", ckpt, target, "--strategy", "encoder", "--dry-run", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    refusal, = [n for n in d["notes"] if "PretrainedTrainer would refuse" in n]
    assert failure in refusal and "plancheck writes" in refusal
    plan_notes = d["transfer"]["notes"]  # the plan's notes, then the printed command's (plancheck.remedies.commands)
    assert d["notes"][:len(plan_notes)] == plan_notes
    extra = d["notes"][len(plan_notes):]
    assert all(n.startswith(("the command trains with", "this machine has no CUDA")) for n in extra)
    assert any("repeated over 2 input channels and divided by 2" in n for n in d["notes"])
    code, out, _ = run_cli("transfer", ckpt, target, "--strategy", "encoder", "--dry-run")
    assert code == 0 and "PretrainedTrainer would refuse this pair" in out
    code, out, _ = run_cli("check", ckpt, target, "--transfer", "encoder", "--format", "json")
    assert any(failure in n for n in json.loads(out)["transfer"]["notes"])
