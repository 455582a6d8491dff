"""tools/test_versions.py picks the newest patch of every supported line, from the floor in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import test_versions as tool  # noqa: E402

sys.path.pop(0)

LISTING = ("nnunetv2 (2.8.1)\nAvailable versions: 2.8.1, 2.8.0, 2.7.0, 2.6.4, 2.6.3, 2.6.2, 2.6.0, 2.5.2, 2.5.1, "
           "2.4.2, 2.4.1, 2.4, 2.9.0rc1, 2.1\n")


def test_newest_patch_per_line_from_the_floor(monkeypatch):
    def fake_run(cmd, **kw):
        assert cmd[-3:] == ["index", "versions", "nnunetv2"]
        return subprocess.CompletedProcess(cmd, 0, LISTING, "")

    monkeypatch.setattr(tool.subprocess, "run", fake_run)
    assert tool._floor() == (2, 6)
    assert tool.newest_patches(sys.executable) == {"2.6": "2.6.4", "2.7": "2.7.0", "2.8": "2.8.1"}


def test_the_readme_states_the_floor():
    major, minor = tool._floor()
    text = (ROOT / "README.md").read_text()
    assert f"`nnunetv2>={major}.{minor}`" in text
    assert f"nnunetv2 {major}.{minor - 1} is not supported" in text


def test_why_nnunet_2_5_is_not_supported(tmp_path):
    """2.5's loader is ``torch.load(fname)``: with torch >= 2.6 it cannot read what nnUNetTrainer saves."""
    import pickle

    import pytest
    import torch

    from nnunet_oracle import nnunet_checkpoint

    path = tmp_path / "checkpoint_final.pth"
    torch.save(nnunet_checkpoint(torch.nn.Conv3d(1, 2, 3), {"configurations": {}}, {}, "3d_fullres"), path)
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    assert (major, minor) >= (2, 6), "the README's reason assumes torch >= 2.6 (weights_only=True by default)"
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(path)  # what nnunetv2 2.5.2's load_pretrained_weights does
    assert "network_weights" in torch.load(path, weights_only=False)  # what 2.6 and later do
