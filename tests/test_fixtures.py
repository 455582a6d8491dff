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


def test_paths_do_not_depend_on_the_current_folder(monkeypatch, tmp_path):
    """Fixture paths come from the test files' location; a relative PLANCHECK_REAL_PLANS from the repository root."""
    import conftest

    for where in (ROOT / "tests", tmp_path):
        monkeypatch.chdir(where)
        monkeypatch.setenv("PLANCHECK_REAL_PLANS", "../shared/real-plans")
        assert conftest.real_plans_folder() == (ROOT.parent / "shared" / "real-plans").resolve()
        monkeypatch.delenv("PLANCHECK_REAL_PLANS")
        assert conftest.real_plans_folder() == (ROOT.parent / "shared" / "real-plans").resolve()
        monkeypatch.setenv("PLANCHECK_REAL_PLANS", str(tmp_path))
        assert conftest.real_plans_folder() == tmp_path
        assert conftest.fixture("Dataset901_CTIsotropic").is_file()


def test_tests_run_from_inside_the_tests_folder():
    """`cd tests && pytest` collects and runs like `pytest` from the root (a few files here)."""
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-n", "0", "-m", "not real",
         "test_plans.py", "test_diff.py::test_exit_codes", "test_bad_input.py::test_missing_file"],
        cwd=ROOT / "tests", capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "error" not in r.stdout.splitlines()[-1]
