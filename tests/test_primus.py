"""Primus trainers (timm-based transformers) against nnU-Net's own builders and loader.

They need a torchvision that loads beside torch: ``make test`` runs them in .venv, whose
torch and torchvision are a matching pair (constraints.txt); ``make test-primus`` runs them
alone. tests/test_torchenv.py checks the one-line error for a mismatched pair.

The Primus trainers build from ``configuration_manager.patch_size``: the learned positional
embedding has one row per 8x8x8 patch token. Plans are fixture plans (nnU-Net planner
output) with a small patch size set on the configuration, so that the real CPU networks
stay small; plancheck builds them on the meta device through the trainer.
"""

from __future__ import annotations

import copy
import importlib

import pytest

import nnunet_oracle as oracle
from conftest import fixture, load
from plancheck import check
from plancheck.records.report import Status

pytestmark = [pytest.mark.primus, pytest.mark.slow]

TRAINERS = (
    "nnUNet_Primus_S_Trainer",
    "nnUNet_Primus_B_Trainer",
    "nnUNet_Primus_M_Trainer",
    "nnUNet_Primus_L_Trainer",
    "nnUNet_PrimusV2S_Trainer",
    "nnUNet_PrimusV2B_Trainer",
    "nnUNet_PrimusV2M_Trainer",
    "nnUNet_PrimusV2L_Trainer",
)
D901 = "Dataset901_CTIsotropic"


def plans_with_patch(patch: list[int], dataset: str = D901) -> dict:
    plans = copy.deepcopy(load(fixture(dataset)))
    plans["configurations"]["3d_fullres"]["patch_size"] = patch
    return plans


def trainer_class(name: str) -> type:
    module = importlib.import_module("nnunetv2.training.nnUNetTrainer.primus.primus_trainers")
    return getattr(module, name)


def real_network(name: str, plans: dict, n_in: int = 1):
    """The network the trainer builds, on the CPU, called as the installed nnU-Net calls it."""
    import contextlib
    import io
    import warnings

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PlansManager(copy.deepcopy(plans))
        cm = pm.get_configuration("3d_fullres")
        return oracle.build_as_nnunet(trainer_class(name), pm, cm, n_in, 3)


def with_channels(plans: dict, n: int) -> dict:
    plans = copy.deepcopy(plans)
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["ZScoreNormalization"] * n
    plans["configurations"]["3d_fullres"]["use_mask_for_norm"] = [False] * n
    return plans


def assert_agrees(report, outcome: oracle.Outcome, source_net, target_net) -> None:
    ff = report.first_failure
    assert oracle.Outcome(report.compatible, ff and ff.key, ff and ff.reason) == outcome
    direct = oracle.direct_sets(oracle.shapes(source_net), oracle.shapes(target_net))
    for status in ("mismatch", "missing", "unused"):
        keys = {k for row in report.tensors if row.status is Status(status) for k in row.keys}
        assert keys == direct[status], status


@pytest.mark.parametrize("trainer", TRAINERS)
def test_primus_agrees_with_nnunet(trainer, tmp_path):
    """Same patch size: loads; another patch size: the positional embedding does not (per nnU-Net's loader)."""
    small, other = [32, 32, 32], [32, 48, 32]
    a, b = plans_with_patch(small), plans_with_patch(other)
    source_net = real_network(trainer, a)
    weights = tmp_path / "w.pth"
    oracle.save_placeholder_weights(source_net, weights)
    for target_plans in (a, b):
        target_net = real_network(trainer, target_plans)
        outcome = oracle.load_outcome(target_net, weights)
        report = check(a, target_plans, "3d_fullres", trainer=trainer, explain=False)
        assert report.source.details["network_built_by"].endswith(f"{trainer}.build_network_architecture")
        assert_agrees(report, outcome, source_net, target_net)
        del target_net
    assert check(a, a, "3d_fullres", trainer=trainer).compatible


def test_primus_input_channels_agree(tmp_path):
    trainer = "nnUNet_Primus_S_Trainer"
    a = plans_with_patch([32, 32, 32])
    two = with_channels(a, 2)
    source_net, target_net = real_network(trainer, a, 1), real_network(trainer, two, 2)
    weights = tmp_path / "w.pth"
    oracle.save_placeholder_weights(source_net, weights)
    report = check(a, two, "3d_fullres", trainer=trainer)
    assert_agrees(report, oracle.load_outcome(target_net, weights), source_net, target_net)
    assert not report.compatible
    assert any("normalization_schemes" in rc.cause.parameter for rc in report.root_causes)


@pytest.mark.parametrize("trainer", ["nnUNet_Primus_M_Trainer", "nnUNet_PrimusV2S_Trainer"])
def test_attribution_names_the_patch_size(trainer):
    """Only the patch size differs: the learned positional embedding is blamed on patch_size, by intervention."""
    a, b = plans_with_patch([32, 32, 32]), plans_with_patch([64, 32, 32])
    report = check(a, b, "3d_fullres", trainer=trainer)
    assert not report.compatible
    bad = [r for r in report.tensors if r.status is Status.MISMATCH]
    assert bad and all("pos_embed" in r.key for r in bad)
    assert [rc.cause.parameter for rc in report.root_causes] == ["configurations.3d_fullres.patch_size"]
    assert report.root_causes[0].cause.source == [32, 32, 32]
    assert report.root_causes[0].cause.target == [64, 32, 32]
    for row in bad:
        assert [c.parameter for c in row.causes] == ["configurations.3d_fullres.patch_size"]


def test_plain_unet_patch_size_is_not_a_cause():
    """Without a trainer that reads it, the patch size changes no tensor: no intervention, no cause."""
    a, b = plans_with_patch([32, 32, 32]), plans_with_patch([64, 32, 32])
    assert check(a, b, "3d_fullres").compatible
