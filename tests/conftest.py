from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "plans"
NON_PLANS = {"dataset.json", "dataset_fingerprint.json"}
#: ``make test-real``'s default: the 44 published plans files next to the repository.
DEFAULT_REAL_PLANS = ROOT.parent / "shared" / "real-plans"


def real_plans_folder() -> pathlib.Path:
    """``$PLANCHECK_REAL_PLANS`` (relative: to the repository root, as the Makefile gives it), else the default.

    Never relative to the current folder, so ``cd tests && pytest`` finds the same files.
    """
    value = os.environ.get("PLANCHECK_REAL_PLANS")
    if not value:
        return DEFAULT_REAL_PLANS.resolve()
    path = pathlib.Path(value)
    return path if path.is_absolute() else (ROOT / path).resolve()

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def fixture_plans() -> list[pathlib.Path]:
    """Every plans file the fixture generator wrote (nnU-Net planner output and its derived files)."""
    return sorted(p for p in FIXTURES.glob("*/*.json") if p.name not in NON_PLANS)


def fixture_id(path: pathlib.Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load(path: os.PathLike | str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def fixture(dataset: str, plans: str = "nnUNetPlans") -> pathlib.Path:
    path = FIXTURES / dataset / f"{plans}.json"
    assert path.is_file(), path
    return path


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from plancheck.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exc.value.code
        return (0 if code is None else int(code)), out, err

    return run


# --------------------------------------------------------------------------- browser tests (tests/test_browser.py)


def _chromium() -> str | None:
    import shutil

    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _browser_tests_off() -> bool:
    """Without a Chromium, plain `make test` leaves the browser tests out and says so once; `make test-browser`
    (PLANCHECK_BROWSER=required) runs them anyway, so that a missing Chromium fails there."""
    return _chromium() is None and os.environ.get("PLANCHECK_BROWSER") != "required"


def pytest_collection_modifyitems(config, items):
    if not _browser_tests_off():
        return
    left_out = [item for item in items if item.get_closest_marker("browser")]
    if left_out:
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
        config.hook.pytest_deselected(items=left_out)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _browser_tests_off() and not hasattr(config, "workerinput"):
        terminalreporter.write_line(
            "browser tests not run: no Chromium found (`make test-browser` needs one; .ci/run installs Debian's "
            "chromium)"
        )
