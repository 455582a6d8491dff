"""The fixtures are nnU-Net planner output: regenerating them gives the committed plans, byte for byte.

The manifest records the nnunetv2 / dynamic_network_architectures versions the files were
made with; the comparison leaves that record out, so the test passes under every nnU-Net
release whose planners produce the same plans (``make test-versions``), and fails under one
that plans differently.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT


@pytest.mark.slow
def test_fixtures_regenerate_identically():
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
def test_regeneration_compares_plans_not_the_versions_record(tmp_path):
    """A manifest that differs only in its versions record is up to date; one plans byte more is not."""
    sys.path.insert(0, str(ROOT / "fixtures"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, version in ((a, "2.8.1"), (b, "2.7.0")):
        (folder / "D").mkdir(parents=True)
        manifest = json.loads((FIXTURES / "manifest.json").read_text())
        manifest["versions"]["nnunetv2"] = version
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "D" / "plans.json").write_text('{"configurations": {}}')
    assert generate.compare_trees(a, b) == []
    (b / "D" / "plans.json").write_text('{"configurations": {} }')
    assert generate.compare_trees(a, b) == ["differs: D/plans.json"]
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"]["extra.json"] = {"kind": "planner"}
    (b / "manifest.json").write_text(json.dumps(manifest))
    assert "differs: manifest.json (apart from its versions record)" in generate.compare_trees(a, b)
