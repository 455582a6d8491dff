"""A torchvision that cannot load beside torch: one line that says which builds, and what to install (exit 3)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, fixture

A = fixture("Dataset901_CTIsotropic")
B = fixture("Dataset902_CTAnisotropic")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plancheck", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)


def _broken_torchvision(tmp_path) -> dict:
    """An environment whose torchvision is PyPI's CUDA build beside a CPU torch, as it fails on import."""
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "version.py").write_text("__version__ = '0.28.0+cu130'\ngit_version = 'x'\n")
    (pkg / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_primus_trainer_without_a_loadable_torchvision(tmp_path):
    r = _cli("check", str(A), str(B), "-tr", "nnUNet_Primus_M_Trainer", env=_broken_torchvision(tmp_path))
    assert r.returncode == 3, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert "Traceback" not in line
    assert "nnUNet_Primus_M_Trainer" in line
    assert "torchvision 0.28.0+cu130 (CUDA 13.0 build)" in line
    import torch

    assert f"torch {torch.__version__}" in line
    if torch.version.cuda is None:
        assert "(CPU-only build)" in line
        assert "pip install torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu" in line
    else:
        assert f"(CUDA {torch.version.cuda} build)" in line
        assert "pip install torchvision==" in line


def test_primus_class_in_plans_without_a_loadable_torchvision(tmp_path):
    """A plans file naming a Primus class: the class path resolves through the same diagnosis."""
    import json

    plans = json.loads(A.read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = (
        "dynamic_network_architectures.architectures.primus.Primus")
    path = tmp_path / "plans" / "nnUNetPlans.json"
    path.parent.mkdir()
    path.write_text(json.dumps(plans))
    r = _cli("check", str(path), str(B), env=_broken_torchvision(tmp_path))
    assert r.returncode == 3, r.stderr
    line, = r.stderr.strip().splitlines()
    assert "cannot import dynamic_network_architectures.architectures.primus" in line
    assert "torchvision 0.28.0+cu130 (CUDA 13.0 build) cannot load beside torch" in line


def test_other_import_errors_keep_their_own_message():
    from plancheck.network.torchenv import diagnose

    assert diagnose(ImportError("No module named 'einops'")) is None
