"""A checkpoint written on a real GPU (an NVIDIA H200, torch 2.11, tools/save_gpu_checkpoint.py), read here.

Its pickle records every tensor on 'cuda:0', as torch writes it on a GPU. plancheck reads its
shapes without a GPU and without loading tensor data, and its verdict agrees with nnU-Net's
``load_pretrained_weights`` on real CPU networks (torch.load is given map_location="cpu" for that
comparison, since this machine has no GPU; nnU-Net itself does not pass one, which the report notes).
"""

from __future__ import annotations

import pathlib

import pytest
import torch

import nnunet_oracle as oracle
from conftest import fixture, load
from plancheck import check
from plancheck.inputs.checkpoint import read_checkpoint

GPU_CHECKPOINT = pathlib.Path(__file__).parent / "data" / "gpu_checkpoint_906_2d.pth"


def test_read_without_a_gpu():
    ckpt = read_checkpoint(GPU_CHECKPOINT)
    assert {rec.location for rec in ckpt.state_dict.values()} == {"cuda:0"}
    assert ckpt.trainer_name == "nnUNetTrainer" and ckpt.current_epoch == 1
    assert ckpt.init_args["configuration"] == "2d" and ckpt.init_args["device"] == "cuda:0"
    plans = fixture("Dataset906_SmallImages")
    real = oracle.build_real(load(plans), "2d", load(plans.parent / "dataset.json"))
    assert {k: rec.shape for k, rec in ckpt.state_dict.items()} == oracle.shapes(real)
    assert list(ckpt.state_dict) == list(real.state_dict())


@pytest.mark.parametrize("target", ["Dataset906_SmallImages", "Dataset901_CTIsotropic", "Dataset905_CardiacCine"])
def test_verdict_agrees_with_nnunet(target, monkeypatch):
    import nnunetv2.run.load_pretrained_weights as loader

    real_load = torch.load
    monkeypatch.setattr(loader.torch, "load", lambda f, **kw: real_load(f, **{**kw, "map_location": "cpu"}))
    plans = fixture(target)
    network = oracle.build_real(load(plans), "2d", load(plans.parent / "dataset.json"))
    expected = oracle.load_outcome(network, GPU_CHECKPOINT)
    report = check(GPU_CHECKPOINT, plans, explain=False)
    ff = report.first_failure
    assert oracle.Outcome(report.compatible, ff and ff.key, ff and ff.reason) == expected
    assert any("saved on cuda:0" in n for n in report.to_dict()["notes"])
