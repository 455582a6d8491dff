"""The fixtures are nnU-Net planner output: regenerating them gives the committed files, byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT


@pytest.mark.slow
def test_fixtures_regenerate_identically():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    from importlib.metadata import version

    for package, wanted in manifest["versions"].items():
        # constraints.txt pins these; a different version would plan different networks
        assert version(package) == wanted, f"{package} {version(package)} installed, fixtures made with {wanted}"
    r = subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
