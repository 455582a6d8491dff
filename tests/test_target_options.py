"""Every command that takes a TARGET takes the same target options (issue 17, item 3)."""
from __future__ import annotations

import json
import shutil

import click

from conftest import FIXTURES, fixture
from plancheck.cli import cli

TARGET_OPTIONS = {"--target-configuration", "--target-dataset-json", "--target-plans", "--target-trainer"}


def _options(command: click.Command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def test_the_same_target_options_on_every_target_command():
    commands = {name: cmd for name, cmd in cli.commands.items()
                if any(isinstance(p, click.Argument) and p.name in ("target", "targets") for p in cmd.params)}
    assert set(commands) == {"check", "transfer", "verify", "matrix", "plan-pretraining", "ablation"}
    for name, command in commands.items():
        assert TARGET_OPTIONS <= _options(command), name


def test_verify_takes_the_fixed_plans_by_identifier(run_cli, tmp_path, monkeypatch):
    """check --fix writes <plans>_from_<source>.json; verify finds it as `verify SOURCE ID --target-plans NAME`."""
    pre = tmp_path / "preprocessed"
    shutil.copytree(FIXTURES / "Dataset906_SmallImages", pre / "Dataset906_SmallImages")
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    source = fixture("Dataset906_SmallImages")
    fixed = pre / "Dataset906_SmallImages" / "nnUNetPlans_fixed.json"
    shutil.copy(pre / "Dataset906_SmallImages" / "nnUNetPlans.json", fixed)
    code, out, err = run_cli("verify", source, "906", "--target-plans", "nnUNetPlans_fixed", "-c", "3d_fullres",
                             "--device", "meta", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["check"]["target"]["plans"] == str(fixed)
    code, _, err = run_cli("verify", source, "906", "--target-plans", "noSuchPlans", "-c", "3d_fullres",
                           "--device", "meta")
    assert code == 3 and "noSuchPlans.json" in err


def test_matrix_takes_a_target_configuration(run_cli):
    code, out, err = run_cli("matrix", fixture("Dataset906_SmallImages"), fixture("Dataset906_SmallImages"),
                             "-c", "3d_fullres", "--target-configuration", "2d", "--format", "json")
    rows = json.loads(out)["rows"]
    assert [r["configuration"] for r in rows] == ["2d"] and rows[0]["compatible"] is False, (out, err)
    code, _, err = run_cli("matrix", fixture("Dataset906_SmallImages"), fixture("Dataset906_SmallImages"),
                           "-c", "3d_fullres", "-c", "2d", "--target-configuration", "2d")
    assert code == 2 and "pairs one source configuration" in err
