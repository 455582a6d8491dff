"""plancheck ablation (issue 21): the five arms prepared, each checked against nnU-Net itself (its loader takes
every arm's weights into the network nnU-Net builds from that arm's plans), one results folder per arm, the manifest
``compare`` reads, and the input and output rules. The arms trained by nnUNetv2_train: test_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import fixture, load

ALL = ["baseline", "unified", "unified_pretrained", "transfer", "transfer_schedule"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real nnU-Net checkpoint of Dataset906's 3d_fullres network (4 stages), every tensor off its init."""
    from nnunet_oracle import moved_checkpoint

    folder = tmp_path_factory.mktemp("ablation_ckpt")
    moved_checkpoint(fixture("Dataset906_SmallImages"), folder / "906.pth")
    return folder / "906.pth"


def _target(tmp_path, name: str = "Dataset902_CTAnisotropic"):
    shutil.copytree(fixture(name).parent, tmp_path / name)
    out = tmp_path / "ablation"
    out.mkdir()
    return tmp_path / name / "nnUNetPlans.json", out


def _network(plans_file, dj_file):
    from nnunet_oracle import build_real

    return build_real(load(plans_file), "3d_fullres", load(dj_file))


def test_every_arm_is_prepared_and_loads_in_nnunet(checkpoint, tmp_path, run_cli):
    from nnunet_oracle import load_outcome

    target, out = _target(tmp_path)
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--folds", "0", "--folds", "1",
                                "--format", "json")
    assert code == 0, err
    result = json.loads(stdout)
    arms = {a["name"]: a for a in result["arms"]}
    assert list(arms) == ALL and all(a["made"] for a in arms.values())
    assert len({a["results_folder"] for a in arms.values()}) == 5  # nnU-Net gives each arm its own folder
    assert {a["epochs"] for a in arms.values()} == {1000}  # the same trainer length
    assert all(sorted(a["train"]) == ["0", "1"] for a in arms.values())
    dj = target.parent / "dataset.json"
    own = load(target)
    for name, arm in arms.items():
        plans = load(arm["plans_file"])
        assert plans["plans_name"] == arm["plans"]
        for fold, command in arm["train"].items():
            assert f" 3d_fullres {fold} -p {arm['plans']}" in command
        if arm["pretrained_weights"]:  # nnU-Net's loader takes the arm's weights into the arm's network
            assert load_outcome(_network(arm["plans_file"], dj), arm["pretrained_weights"]).loaded, name
    # copies keep everything but the name, so no data is preprocessed twice
    fixed = load(arms["unified"]["plans_file"])
    copy = load(arms["unified_pretrained"]["plans_file"])
    assert {k: v for k, v in copy.items() if k != "plans_name"} == {k: v for k, v in fixed.items() if k != "plans_name"}
    transfer = load(arms["transfer"]["plans_file"])
    assert {k: v for k, v in transfer.items() if k != "plans_name"} == {k: v for k, v in own.items()
                                                                         if k != "plans_name"}
    assert "plancheck_finetune" in load(arms["transfer_schedule"]["plans_file"])
    assert arms["transfer_schedule"]["trainer"] == "nnUNetTrainerFinetune"
    assert arms["unified"]["prepare"] == [f"nnUNetv2_preprocess -d 902 -plans_name {arms['unified']['plans']} "
                                          "-c 3d_fullres"]
    assert arms["unified_pretrained"]["pretrained_weights"] == str(checkpoint)
    # the weights of the unified arm do not load into the baseline's network: the arms differ in the network
    assert not load_outcome(_network(target, dj), str(checkpoint)).loaded
    manifest = load(out / "ablation.json")
    assert manifest["plancheck_ablation"] == 1 and manifest["baseline"] == "baseline" and manifest["folds"] == ["0",
                                                                                                               "1"]
    assert set(result["written"]) == {arms["unified"]["plans_file"], arms["unified_pretrained"]["plans_file"],
                                      arms["transfer"]["plans_file"], arms["transfer_schedule"]["plans_file"],
                                      str(out / "transfer.pth"), str(out / "ablation.json"), str(out / "ablation.sh")}
    # the script: valid bash, every arm's commands, an unknown arm refused before anything runs
    script = out / "ablation.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert all(c in text for a in arms.values() for c in a["train"].values())
    bad = subprocess.run(["bash", str(script), "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown arm: nope" in bad.stderr
    # compare reads the manifest: nothing trained yet, every arm's folds missing (exit 1), said per arm
    results = tmp_path / "results"
    results.mkdir()
    code, stdout, err = run_cli("compare", "--manifest", out / "ablation.json", "--results", results,
                                "--format", "json")
    assert code == 1, err
    compared = json.loads(stdout)
    assert [a["name"] for a in compared["arms"]] == ALL and all(a["missing"] == ["0", "1"] for a in compared["arms"])


def test_a_pair_that_already_loads_has_no_unified_arm(checkpoint, tmp_path, run_cli):
    target, out = _target(tmp_path, "Dataset906_SmallImages")
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--folds", "0", "--format", "json")
    assert code == 1
    arms = {a["name"]: a for a in json.loads(stdout)["arms"]}
    assert not arms["unified"]["made"] and "unified is the baseline" in arms["unified"]["reason"]
    assert arms["unified_pretrained"]["made"] and arms["unified_pretrained"]["plans"] == "nnUNetPlans_pretrained"


def test_trainer_length_picks_the_schedule_trainer(checkpoint, tmp_path, run_cli):
    target, out = _target(tmp_path)
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--arm-trainer", "nnUNetTrainer_250epochs",
                                "--arms", "transfer_schedule", "--dry-run", "--format", "json")
    assert code == 0, err
    arms = {a["name"]: a for a in json.loads(stdout)["arms"]}
    assert list(arms) == ["baseline", "transfer_schedule"]  # the baseline always
    assert arms["transfer_schedule"]["trainer"] == "nnUNetTrainerFinetune_250epochs"
    assert arms["transfer_schedule"]["epochs"] == arms["baseline"]["epochs"] == 250
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--arm-trainer", "nnUNetTrainer_7epochs",
                                "--arms", "transfer_schedule", "--dry-run", "--format", "json")
    assert code == 1
    arm = json.loads(stdout)["arms"][1]
    assert not arm["made"] and "same length" in arm["reason"]
    assert os.listdir(out) == []  # dry runs


def test_existing_files_are_kept_and_nothing_is_written(checkpoint, tmp_path, run_cli):
    target, out = _target(tmp_path)
    (out / "ablation.sh").write_text("# mine\n")
    before = sorted(os.listdir(target.parent))
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--folds", "0")
    assert code == 2 and err.count("\n") == 1 and "ablation.sh" in err and "nothing was written" in err
    assert sorted(os.listdir(target.parent)) == before and os.listdir(out) == ["ablation.sh"]
    assert (out / "ablation.sh").read_text() == "# mine\n"
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--folds", "0", "--force")
    assert code == 0, err
    assert (out / "ablation.sh").read_text().startswith("#!/usr/bin/env bash")


def test_other_input_channels_refuse_the_unified_arms(checkpoint, tmp_path, run_cli):
    target, out = _target(tmp_path, "Dataset904_BrainMRI")
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--folds", "0", "--dry-run",
                                "--format", "json")
    assert code == 1
    arms = {a["name"]: a for a in json.loads(stdout)["arms"]}
    assert not arms["unified"]["made"] and "input channel" in arms["unified"]["reason"]
    assert not arms["unified_pretrained"]["made"]
    assert arms["transfer"]["made"]  # 1 -> 4 channels: adapt repeats the stem over the channels
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", tmp_path / "missing", "--dry-run")
    assert code == 2 and "not a folder" in err


def test_folds_target_configuration_and_the_output_folder(checkpoint, tmp_path, run_cli):
    target, out = _target(tmp_path)
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--folds", "all", "--dry-run")
    assert code == 2 and "training data" in err
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", out, "--target-configuration", "3d_fullres",
                                "--folds", "0", "--arms", "transfer", "--dry-run", "--format", "json")
    assert code == 0, err
    assert json.loads(stdout)["configuration"] == "3d_fullres"
    new = out / "new"  # created: its parent exists
    code, stdout, err = run_cli("ablation", checkpoint, target, "-o", new, "--folds", "0", "--arms", "transfer")
    assert code == 0, err
    assert (new / "ablation.json").is_file() and (new / "transfer.pth").is_file()
    names = {a["name"]: a["plans"] for a in load(new / "ablation.json")["arms"]}
    assert names["transfer"] == "nnUNetPlans_ablation_from_Dataset906_SmallImages_transfer"
