"""Every exit-code-2 and exit-code-3 case: one line on stderr that names the file and the problem."""

from __future__ import annotations

import json
import pathlib

import pytest

from conftest import fixture, load


def _write(tmp_path: pathlib.Path, name: str, data) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def good() -> pathlib.Path:
    return fixture("Dataset901_CTIsotropic")


def _mutated(tmp_path: pathlib.Path, good: pathlib.Path, mutate) -> pathlib.Path:
    plans = load(good)
    mutate(plans)
    return _write(tmp_path, "plans.json", plans)


def test_missing_file(run_cli, good, tmp_path):
    code, out, err = run_cli("check", tmp_path / "nope.json", good)
    assert code == 3 and out == ""
    line = _one_line(err)
    assert "nope.json" in line and "not found" in line


def test_invalid_json(run_cli, good, tmp_path):
    bad = _write(tmp_path, "plans.json", '{"configurations": {')
    code, _, err = run_cli("check", good, bad)
    assert code == 3
    line = _one_line(err)
    assert str(bad) in line and "invalid JSON at line 1" in line


def test_not_a_plans_file(run_cli, good, tmp_path):
    bad = _write(tmp_path, "plans.json", [1, 2, 3])
    code, _, err = run_cli("check", good, bad)
    assert code == 3
    assert "top level is a JSON array" in _one_line(err)


def test_no_configurations_key(run_cli, good, tmp_path):
    bad = _write(tmp_path, "plans.json", {"dataset_name": "x"})
    code, _, err = run_cli("check", bad, good)
    assert code == 3
    assert "no 'configurations' key" in _one_line(err)


def test_missing_configuration(run_cli, good):
    code, _, err = run_cli("check", good, good, "-c", "3d_fancy")
    assert code == 3
    line = _one_line(err)
    assert "no configuration '3d_fancy'" in line and "3d_fullres" in line


def test_missing_target_configuration(run_cli, good):
    code, _, err = run_cli("check", good, good, "--target-configuration", "nope")
    assert code == 3
    assert "no configuration 'nope'" in _one_line(err)


def test_refused_network_class(run_cli, good, tmp_path):
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"

    bad = _mutated(tmp_path, good, mutate)
    code, _, err = run_cli("check", good, bad)
    assert code == 3
    line = _one_line(err)
    assert "refusing to import network_class_name 'os.system'" in line and str(bad) in line


def test_refused_requires_import(run_cli, good, tmp_path):
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "subprocess.Popen"

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate))
    assert code == 3
    assert "refusing to import arch_kwargs.nonlin 'subprocess.Popen'" in _one_line(err)


def test_allowed_root_that_escapes_is_refused(run_cli, good, tmp_path):
    # torch.nn.modules.module imports these names; walking attributes must not reach them.
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "nnunetv2.paths.os.system"

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate))
    assert code == 3
    assert "is not a class" in _one_line(err) or "outside the allowed" in _one_line(err)


def test_unknown_class(run_cli, good, tmp_path):
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = (
            "dynamic_network_architectures.architectures.unet.NoSuchUNet"
        )

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate))
    assert code == 3
    assert "'dynamic_network_architectures.architectures.unet.NoSuchUNet' not found" in _one_line(err)


def test_transformer_architecture_import_failure_is_clear(run_cli, good, tmp_path):
    # Primus needs timm/torchvision; whatever happens on import, it is one line and exit 3 or a build.
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = (
            "dynamic_network_architectures.architectures.primus.Primus"
        )

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate))
    assert code == 3
    line = _one_line(err)
    assert "Primus" in line or "primus" in line


def test_network_that_cannot_be_built(run_cli, good, tmp_path):
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["n_stages"] = 99

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate))
    assert code == 3
    line = _one_line(err)
    assert "cannot build PlainConvUNet" in line


def test_malformed_architecture(run_cli, good, tmp_path):
    def mutate(p):
        p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"] = [1]

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate))
    assert code == 3
    assert "arch_kwargs must be an object" in _one_line(err)


def test_circular_inheritance(run_cli, good, tmp_path):
    def mutate(p):
        p["configurations"]["a"] = {"inherits_from": "b"}
        p["configurations"]["b"] = {"inherits_from": "a"}

    code, _, err = run_cli("check", good, _mutated(tmp_path, good, mutate), "--target-configuration", "a")
    assert code == 3
    assert "circular 'inherits_from'" in _one_line(err)


def test_bad_dataset_json(run_cli, good, tmp_path):
    dj = _write(tmp_path, "ds.json", {"labels": {"background": 0}})
    code, _, err = run_cli("check", good, good, "--target-dataset-json", dj)
    assert code == 3
    line = _one_line(err)
    assert str(dj) in line and "channel_names" in line


def test_traceback_flag_shows_traceback(good, tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "plancheck", "check", str(tmp_path / "nope.json"), str(good), "--traceback"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "PlansError" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("check",),
        ("check", "a.json"),
        ("check", "a.json", "b.json", "--format", "yaml"),
        ("check", "a.json", "b.json", "--no-such-option"),
        ("frobnicate",),
    ],
    ids=["no-args", "one-arg", "bad-format", "unknown-option", "unknown-command"],
)
def test_usage_errors_exit_2(run_cli, args):
    code, out, err = run_cli(*args)
    assert code == 2
    assert "Error" in err


def test_nothing_written_on_error(run_cli, good, tmp_path):
    before = sorted(tmp_path.iterdir())
    run_cli("check", tmp_path / "nope.json", good)
    assert sorted(tmp_path.iterdir()) == before


def _copy_target(tmp_path: pathlib.Path) -> pathlib.Path:
    import shutil

    folder = pathlib.Path(shutil.copytree(fixture("Dataset902_CTAnisotropic").parent, tmp_path / "Dataset902"))
    return folder / "nnUNetPlans.json"


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("check", 3),
        ("diff", 3),
        ("matrix", 3),
        ("check --fix", 3),
        ("check --fix exists", 2),
        ("check bad-option", 2),
    ],
)
def test_traceback_adds_the_traceback_and_keeps_the_exit_code(run_cli, good, tmp_path, command, code):
    """--traceback prints the traceback to stderr, and changes nothing else: the same exit code, the same line."""
    missing = tmp_path / "nope.json"
    if command == "check":
        args = ["check", missing, good]
    elif command == "diff":
        args = ["diff", good, missing]
    elif command == "matrix":
        args = ["matrix", missing, good]
    elif command == "check --fix":
        args = ["check", good, missing, "--fix"]
    elif command == "check --fix exists":
        target = _copy_target(tmp_path)
        assert run_cli("check", good, target, "--fix")[0] == 0
        args = ["check", good, target, "--fix"]
    else:
        args = ["check", good, good, "--force"]  # --force without --fix: a usage error of plancheck's own
    plain_code, plain_out, plain_err = run_cli(*args)
    assert plain_code == code, plain_err
    line = _one_line(plain_err)
    got, out, err = run_cli(*args, "--traceback")
    assert got == code, err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1] == line
    assert out == plain_out


@pytest.mark.parametrize("command", ["check", "diff", "matrix"])
def test_traceback_keeps_internal_error_exit_4(run_cli, good, monkeypatch, command):
    import importlib

    check_module = importlib.import_module("plancheck.check")
    plansdiff = importlib.import_module("plancheck.compare.plansdiff")

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(check_module, "prepare_source", boom)
    monkeypatch.setattr(plansdiff, "diff", boom)
    code, _, err = run_cli(command, good, good)
    assert code == 4 and "internal error: RuntimeError: boom" in _one_line(err)
    code, _, err = run_cli(command, good, good, "--traceback")
    assert code == 4, err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
