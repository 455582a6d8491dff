"""The project's own environment runs nnU-Net's own programs (issue 17, item 1).

nnU-Net's trainer lookup imports every trainer module; the Primus one imports timm, and timm
imports ``torchvision.ops``. A torchvision built for another torch (PyPI's CUDA torchvision
beside a CPU torch) raises ``operator torchvision::nms does not exist`` there, so every
``nnUNetv2_train -tr X`` fails before training. These run in a fresh interpreter of the
environment the tests run in (``.venv`` under ``make test``), as ``nnUNetv2_train`` would.
"""
from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_nnunet_trainer_lookup_finds_a_stock_trainer():
    proc = _run(
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
        "cls = find('nnUNetTrainer_1epoch')\n"
        "print(cls.__module__ + '.' + cls.__name__)\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("nnUNetTrainer_Xepochs.nnUNetTrainer_1epoch")


def test_torchvision_ops_load_beside_torch():
    proc = _run("import torch, torchvision.ops\nprint(torch.ops.torchvision.nms)\n")
    assert proc.returncode == 0, proc.stderr[-2000:]

