"""The command line of --fix and matrix: exit codes, what is written, what is printed."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from conftest import FIXTURES, fixture, fixture_plans, load

SOURCE = fixture("Dataset901_CTIsotropic")


@pytest.fixture
def target_dir(tmp_path) -> pathlib.Path:
    """A writable copy of the Dataset902 folder (plans, dataset.json), as a user's preprocessed folder."""
    return pathlib.Path(shutil.copytree(FIXTURES / "Dataset902_CTAnisotropic", tmp_path / "Dataset902_CTAnisotropic"))


def _listing(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_fix_writes_new_plans_that_load(run_cli, target_dir):
    before = _listing(target_dir)
    code, out, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix")
    assert code == 0, err
    written = target_dir / "nnUNetPlans_from_Dataset901_CTIsotropic.json"
    assert set(_listing(target_dir)) - set(before) == {written.name}
    assert all(_listing(target_dir)[k] == v for k, v in before.items())  # nothing else touched
    assert "Checked again: COMPATIBLE" in out
    assert "nnUNetv2_train 902 3d_fullres FOLD -p nnUNetPlans_from_Dataset901_CTIsotropic" in out
    assert load(written)["plans_name"] == "nnUNetPlans_from_Dataset901_CTIsotropic"
    code, _, _ = run_cli("check", SOURCE, written)
    assert code == 0


def test_fix_refuses_to_overwrite_without_force(run_cli, target_dir):
    assert run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix")[0] == 0
    written = target_dir / "nnUNetPlans_from_Dataset901_CTIsotropic.json"
    written.write_text("{}")  # the user's edits
    code, out, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix")
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    assert written.read_text() == "{}"
    code, out, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix", "--force")
    assert code == 0 and load(written)["plans_name"] == "nnUNetPlans_from_Dataset901_CTIsotropic"


def test_dry_run_prints_a_diff_and_writes_nothing(run_cli, target_dir):
    before = _listing(target_dir)
    code, out, _ = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix", "--dry-run")
    assert code == 0
    assert out.startswith("--- ") and "\n+++ " in out and "-    \"plans_name\": \"nnUNetPlans\"," in out
    assert "(dry run: nothing written)" in out
    assert _listing(target_dir) == before


def test_fix_is_idempotent_through_the_cli(run_cli, target_dir):
    assert run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix")[0] == 0
    written = target_dir / "nnUNetPlans_from_Dataset901_CTIsotropic.json"
    content = written.read_bytes()
    code, out, _ = run_cli("check", SOURCE, written, "--fix")
    assert code == 0 and "Nothing to fix" in out
    assert written.read_bytes() == content
    assert sorted(p.name for p in target_dir.iterdir()).count(written.name) == 1


def test_unfixable_is_explained_and_writes_nothing(run_cli, tmp_path):
    target = pathlib.Path(shutil.copytree(FIXTURES / "Dataset903_ProstateMRI", tmp_path / "t"))
    before = _listing(target)
    code, out, err = run_cli("check", SOURCE, target / "nnUNetPlans.json", "--fix")
    assert code == 1
    assert "Cannot fix with plans" in out and "input channel" in out and "Nothing was written." in out
    assert _listing(target) == before


def test_fix_options_need_fix(run_cli, target_dir):
    code, _, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--dry-run")
    assert code == 2 and "--dry-run only make sense with --fix" in err


def test_fix_json_output(run_cli, target_dir):
    code, out, _ = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix", "--format", "json")
    d = json.loads(out)
    assert code == 0
    assert d["before"]["compatible"] is False and d["after"]["compatible"] is True
    assert pathlib.Path(d["written"]).exists()


def _all_targets() -> list[pathlib.Path]:
    return [p for p in fixture_plans() if p != SOURCE]


def test_matrix_text_and_json(run_cli):
    targets = _all_targets()
    code, out, err = run_cli("matrix", SOURCE, *targets, "-c", "3d_fullres", "-c", "2d", "--format", "json")
    assert code == 1  # some fixture targets are incompatible
    d = json.loads(out)
    rows = d["rows"]
    assert len(rows) == 2 * len(targets)
    by = {(pathlib.Path(r["target"]).parent.name, pathlib.Path(r["target"]).stem, r["configuration"]): r for r in rows}
    ok = by[("Dataset907_CTIsotropicOther", "nnUNetPlans", "3d_fullres")]
    assert ok["compatible"] is True and ok["parameter_share"] == 1.0 and ok["fixable"] is None
    aniso = by[("Dataset902_CTAnisotropic", "nnUNetPlans", "3d_fullres")]
    assert aniso["compatible"] is False and aniso["fixable"] is True and 0 < aniso["parameter_share"] < 1
    assert "kernel_sizes" in aniso["main_cause"]
    mri = by[("Dataset903_ProstateMRI", "nnUNetPlans", "2d")]
    assert mri["fixable"] is False and "input channel" in mri["fix_note"]
    assert err == ""  # stderr is not a terminal here: no progress
    code, text, _ = run_cli("matrix", SOURCE, *targets, "-c", "3d_fullres")
    assert code == 1
    assert text.splitlines()[0].endswith(f"source: {SOURCE}")
    assert "--fix can fix" in text and "99.2%" in text


def test_matrix_fix_writes_every_fixable_target(run_cli, tmp_path):
    copies = []
    for name in ("Dataset902_CTAnisotropic", "Dataset905_CardiacCine", "Dataset907_CTIsotropicOther"):
        copies.append(pathlib.Path(shutil.copytree(FIXTURES / name, tmp_path / name)) / "nnUNetPlans.json")
    code, out, _ = run_cli("matrix", SOURCE, *copies, "--fix", "--format", "json")
    d = json.loads(out)
    assert code == 0, out
    assert d["compatible"] is True
    for row in d["rows"]:
        if row["compatible"]:
            assert row["fixed_path"] is None
        else:
            assert row["fixable"] and row["fixed_compatible"] is True
            assert pathlib.Path(row["fixed_path"]).exists()


def test_matrix_exit_0_when_all_compatible(run_cli):
    code, _, _ = run_cli("matrix", SOURCE, fixture("Dataset907_CTIsotropicOther"),
                         fixture("Dataset908_CTIsotropicCropped"))
    assert code == 0


def test_matrix_row_error_is_exit_3(run_cli, tmp_path):
    code, out, _ = run_cli("matrix", SOURCE, fixture("Dataset907_CTIsotropicOther"), tmp_path / "missing.json")
    assert code == 3
    assert "not found" in out


def _stderr_on_a_terminal(*args: str) -> str:
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "plancheck", *args], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.returncode in (0, 1)
    return b"".join(chunks).decode()


def test_matrix_progress_only_on_a_terminal_and_not_with_quiet():
    targets = [str(p) for p in _all_targets()[:5]]
    shown = _stderr_on_a_terminal("matrix", str(SOURCE), *targets)
    assert "[0/5]" in shown and "[5/5]" in shown
    assert _stderr_on_a_terminal("matrix", str(SOURCE), *targets, "--quiet") == ""
    assert _stderr_on_a_terminal("matrix", str(SOURCE), *targets[:3]) == ""  # a few rows: no progress


def test_matrix_targets_may_be_folders_and_dataset_ids(run_cli, tmp_path, monkeypatch):
    preprocessed = tmp_path / "nnUNet_preprocessed"
    for name in ("Dataset902_CTAnisotropic", "Dataset907_CTIsotropicOther"):
        shutil.copytree(FIXTURES / name, preprocessed / name)
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed))
    code, out, err = run_cli("matrix", SOURCE, preprocessed / "Dataset902_CTAnisotropic", "907", "--format", "json")
    assert code == 1, err
    rows = {pathlib.Path(r["target"]).parent.name: r for r in json.loads(out)["rows"]}
    assert rows["Dataset902_CTAnisotropic"]["compatible"] is False
    assert rows["Dataset907_CTIsotropicOther"]["compatible"] is True


# --- a --fix that cannot write ----------------------------------------------------------------------------------------


def test_fix_into_a_missing_folder_is_an_input_error(run_cli, target_dir, tmp_path):
    before = _listing(target_dir)
    code, out, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix", "-o", tmp_path / "no" / "such")
    assert code == 3, (out, err)
    assert len(err.strip().splitlines()) == 1 and "cannot write the fixed plans" in err
    assert _listing(target_dir) == before and not (tmp_path / "no").exists()


def test_fix_into_a_read_only_folder_is_an_input_error(run_cli, target_dir, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    before = _listing(target_dir)
    code, out, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "--fix")
    assert code == 3, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Permission denied" in err
    assert _listing(target_dir) == before


# --- several configurations of one target: one plans file ------------------------------------------------------------


@pytest.mark.slow
def test_matrix_fix_of_several_configurations_writes_one_file_that_loads_each(run_cli, tmp_path):
    """Each fixed configuration of the written file loads the source's weights in nnU-Net's own loader."""
    import nnunet_oracle as oracle

    targets = [pathlib.Path(shutil.copytree(FIXTURES / name, tmp_path / name)) / "nnUNetPlans.json"
               for name in ("Dataset902_CTAnisotropic", "Dataset906_SmallImages")]
    configurations = ("3d_fullres", "2d")
    args = ["matrix", SOURCE, *targets, *(a for c in configurations for a in ("-c", c)), "--fix"]
    code, out, err = run_cli(*args, "--format", "json")
    assert code == 0, (out, err)
    rows = json.loads(out)["rows"]
    assert len(rows) == 4 and all(r["compatible"] is False and r["fixed_compatible"] is True for r in rows)
    source_plans, source_dataset_json = load(SOURCE), load(SOURCE.parent / "dataset.json")
    for target in targets:
        paths = {r["fixed_path"] for r in rows if pathlib.Path(r["target"]).parent == target.parent}
        assert len(paths) == 1, paths  # one file per target, holding every configuration's fix
        written = load(paths.pop())
        target_dataset_json = load(target.parent / "dataset.json")
        for configuration in configurations:
            weights = tmp_path / f"source-{configuration}.pth"
            if not weights.exists():
                oracle.save_placeholder_weights(
                    oracle.build_real(source_plans, configuration, source_dataset_json), weights)
            network = oracle.build_real(written, configuration, target_dataset_json)
            assert oracle.load_outcome(network, weights).loaded, (target, configuration)
    # again, without --force: the file exists, every row says so, and none is counted as fixed
    code, text, _ = run_cli(*args)
    assert code == 1
    assert text.startswith("0 of 4 rows load after --fix")
    assert text.count("not written") == 4


def test_matrix_counts_only_what_the_written_file_loads(run_cli, tmp_path, monkeypatch):
    """A fix that the written file does not bear out is not counted: the rows are checked in the file itself."""
    import plancheck.remedies.fix as fix

    target = pathlib.Path(shutil.copytree(FIXTURES / "Dataset902_CTAnisotropic", tmp_path / "t")) / "nnUNetPlans.json"
    real_write = fix.write_fix

    def write_then_spoil(result, *, force=False, check=None):
        path = real_write(result, force=force, check=check)  # the read-back passes: the spoiling comes after
        plans = load(path)
        plans["configurations"]["2d"] = load(target)["configurations"]["2d"]  # the 2d fix is lost on disk
        pathlib.Path(path).write_text(json.dumps(plans))
        return path

    monkeypatch.setattr(fix, "write_fix", write_then_spoil)
    code, out, _ = run_cli("matrix", SOURCE, target, "-c", "3d_fullres", "-c", "2d", "--fix", "--format", "json")
    rows = {r["configuration"]: r for r in json.loads(out)["rows"]}
    assert code == 1
    assert rows["3d_fullres"]["fixed_compatible"] is True and rows["2d"]["fixed_compatible"] is False


def test_matrix_fix_reads_the_file_back_before_it_takes_its_name(run_cli, tmp_path, monkeypatch):
    """matrix --fix checks the written plans as --fix does: a file that does not load is never given its name."""
    from plancheck.records.fix import FixResult

    target = pathlib.Path(shutil.copytree(FIXTURES / "Dataset902_CTAnisotropic", tmp_path / "t")) / "nnUNetPlans.json"
    before = _listing(target.parent)
    real_text = FixResult.new_text

    def spoiled(self):
        plans = json.loads(real_text(self))
        plans["configurations"]["2d"] = load(target)["configurations"]["2d"]  # what is written is not what was planned
        return json.dumps(plans)

    monkeypatch.setattr(FixResult, "new_text", spoiled)
    code, out, _ = run_cli("matrix", SOURCE, target, "-c", "3d_fullres", "-c", "2d", "--fix", "--format", "json")
    rows = {r["configuration"]: r for r in json.loads(out)["rows"]}
    assert code == 3
    assert all("read-back" in rows[c]["error"] and rows[c]["fixed_path"] is None for c in ("3d_fullres", "2d"))
    assert _listing(target.parent) == before


def test_check_takes_one_configuration_and_points_to_matrix(run_cli, target_dir):
    before = _listing(target_dir)
    code, out, err = run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "-c", "3d_fullres", "-c", "2d", "--fix")
    assert code == 2 and out == ""
    assert "plancheck matrix" in err and "-c 3d_fullres -c 2d" in err
    assert _listing(target_dir) == before
    assert run_cli("check", SOURCE, target_dir / "nnUNetPlans.json", "-c", "2d", "-c", "2d")[0] == 1  # same one twice


# --- combinations one side lacks: not applicable ----------------------------------------------------------------------


def test_matrix_rows_a_target_lacks_are_not_applicable(run_cli):
    ok, lacking = fixture("Dataset907_CTIsotropicOther"), fixture("Dataset906_SmallImages")
    code, out, err = run_cli("matrix", SOURCE, ok, lacking, "-c", "3d_lowres", "--format", "json")
    assert code == 0, (out, err)  # the one applicable row loads
    d = json.loads(out)
    rows = {pathlib.Path(r["target"]).parent.name: r for r in d["rows"]}
    na = rows["Dataset906_SmallImages"]
    assert na["applicable"] is False and na["error"] is None and na["compatible"] is None
    assert "no configuration '3d_lowres'" in na["not_applicable"]
    assert rows["Dataset907_CTIsotropicOther"]["applicable"] is True and d["compatible"] is True
    code, text, _ = run_cli("matrix", SOURCE, ok, lacking, "-c", "3d_lowres")
    assert code == 0
    assert text.startswith("1 of 1 rows load (1 not applicable)")
    assert "not applicable" in text.splitlines()[-1] or any(
        line.startswith("not applicable") for line in text.splitlines())
    # an incompatible applicable row still fails the run; the not-applicable one does not count either way
    assert run_cli("matrix", SOURCE, fixture("Dataset902_CTAnisotropic"), lacking, "-c", "3d_lowres")[0] == 1


def test_matrix_configuration_the_source_lacks_is_not_applicable(run_cli):
    source = fixture("Dataset906_SmallImages")  # 2d and 3d_fullres only
    code, out, err = run_cli("matrix", source, fixture("Dataset901_CTIsotropic"), "-c", "3d_lowres", "-c", "2d",
                             "--format", "json")
    rows = {r["configuration"]: r for r in json.loads(out)["rows"]}
    assert rows["3d_lowres"]["applicable"] is False and "source" in rows["3d_lowres"]["not_applicable"]
    assert rows["2d"]["applicable"] is True and code == 1  # 2d is checked (and incompatible)
    code, _, err = run_cli("matrix", source, fixture("Dataset901_CTIsotropic"), "-c", "3d_lowres")
    assert code == 3 and "not applicable" in err  # nothing left to check


def test_matrix_fix_that_cannot_write_is_exit_3(run_cli, target_dir, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    before = _listing(target_dir)
    code, out, _ = run_cli("matrix", SOURCE, target_dir / "nnUNetPlans.json", "--fix", "--format", "json")
    assert code == 3
    row = json.loads(out)["rows"][0]
    assert "Permission denied" in row["error"] and row["fixed_compatible"] is None
    assert _listing(target_dir) == before
