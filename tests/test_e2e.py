"""The real workflow, through nnU-Net's own programs (issue 17): raw data -> planner -> a short
pretraining -> ``plancheck check --fix`` and ``plancheck transfer`` -> the commands they print,
run as printed (with ``-device cpu``, which plancheck's note says this machine needs).

Two tiny synthetic datasets with different spacings, so nnU-Net plans different networks.
The epoch is short: a trainer of five iterations (stock ``nnUNetTrainer_1epoch`` runs 250
iterations, four minutes a run on two cores), found by nnU-Net itself (2.8+: through
``nnUNet_extTrainer``; 2.6/2.7: in its own trainer folder, of a private copy of nnunetv2), and
named to plancheck with ``--allow-import``, as a user with their own trainer does.
Run by ``make test-e2e`` (and ``.ci/run``).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

BIN = os.path.dirname(sys.executable)
TRAINER = "nnUNetTrainer_e2eShort"
TRAINER_SOURCE = f"""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {TRAINER}(nnUNetTrainer):
    \"\"\"One epoch of five training and two validation iterations.\"\"\"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 5
        self.num_val_iterations_per_epoch = 2
"""
#: A fine-tuning trainer of plancheck's, shortened: 3 epochs (frozen 0, warm-up 1, poly 2) of 3 iterations, a
#: checkpoint every epoch; E2E_STOP_AFTER_EPOCH=N ends the process after epoch N, as an interrupted run ends.
FINETUNE = "nnUNetTrainerFinetune_e2e"
FINETUNE_SOURCE = f"""
import os

import torch
from plancheck.finetune.trainer import nnUNetTrainerFinetune


class {FINETUNE}(nnUNetTrainerFinetune):
    EPOCHS = 3
    FROZEN_EPOCHS = 1
    WARMUP_EPOCHS = 1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1

    def on_epoch_end(self):
        super().on_epoch_end()
        stop = os.environ.get("E2E_STOP_AFTER_EPOCH")
        if stop is not None and self.current_epoch == int(stop) + 1:
            # checkpoint_latest.pth is written: the run stops as a killed one does (its data loaders first, so
            # that no worker process outlives it)
            for loader in (self.dataloader_train, self.dataloader_val):
                if hasattr(loader, "_finish"):
                    loader._finish()
            os._exit(3)
"""
TIMES: dict[str, float] = {}


def _write_dataset(raw, number: int, name: str, spacing: tuple[float, float, float], shape: tuple[int, int, int]):
    import SimpleITK as sitk

    folder = raw / f"Dataset{number:03d}_{name}"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    rng = np.random.default_rng(number)
    cases = 6  # nnU-Net splits into 5 folds
    for i in range(cases):
        label = np.zeros(shape, dtype=np.uint8)
        z, y, x = (s // 2 + int(rng.integers(-2, 3)) for s in shape)
        label[max(z - 3, 0):z + 3, y - 5:y + 5, x - 5:x + 5] = 1
        image = rng.normal(0, 1, shape).astype(np.float32) + 3 * label
        for array, path in ((image, folder / "imagesTr" / f"case{i}_0000.nii.gz"),
                            (label, folder / "labelsTr" / f"case{i}.nii.gz")):
            img = sitk.GetImageFromArray(array)
            img.SetSpacing(tuple(reversed(spacing)))
            sitk.WriteImage(img, str(path))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1},
        "numTraining": cases, "file_ending": ".nii.gz"}))


def _run(env, *args, timeout=900, step=None):
    program = args[0] if os.path.isabs(args[0]) else os.path.join(BIN, args[0])
    start = time.time()
    proc = subprocess.run([program, *args[1:]], env=env, capture_output=True, text=True, timeout=timeout)
    if step:
        TIMES[step] = time.time() - start
        print(f"e2e: {step}: {TIMES[step]:.0f} s", flush=True)
    return proc


def _ok(proc):
    assert proc.returncode == 0, (proc.args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _as_printed(command: str) -> list[str]:
    """A printed nnUNetv2_train command, run as printed plus ``-device cpu`` (plancheck's note on this machine)."""
    args = shlex.split(command)
    return [*args, "-device", "cpu"]


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_n_proc_DA": "1", "OMP_NUM_THREADS": "2"}
    for var in ("raw", "preprocessed", "results", "trainers"):
        (root / var).mkdir()
    (root / "trainers" / "e2e_trainers.py").write_text(TRAINER_SOURCE + FINETUNE_SOURCE)
    # a private copy of the installed nnunetv2, first on the path: `plancheck trainers --install` (printed on 2.6/2.7)
    # writes into it, not into the test's venv
    import importlib.util
    import shutil

    origin = list(importlib.util.find_spec("nnunetv2").submodule_search_locations)[0]
    package = root / "site" / "nnunetv2"
    shutil.copytree(origin, package, ignore=shutil.ignore_patterns("__pycache__"))
    if (package / "utilities" / "find_objects.py").is_file():
        env["nnUNet_extTrainer"] = str(root / "trainers")  # nnU-Net's own lookup (2.8+)
    else:  # 2.6/2.7 search their own trainer folder only: a user's trainer goes there, as nnU-Net's docs say
        shutil.copy(root / "trainers" / "e2e_trainers.py", package / "training" / "nnUNetTrainer")
        env.pop("nnUNet_extTrainer", None)
    out_env = {"ext_trainer": "nnUNet_extTrainer" in env}
    # the nnunetv2 copy first; the trainers importable for plancheck's --allow-import
    env["PYTHONPATH"] = os.pathsep.join([str(root / "site"), str(root / "trainers")])
    allow = ("--allow-import", "e2e_trainers")
    start = time.time()
    _write_dataset(root / "raw", 801, "Iso", (1.0, 1.0, 1.0), (24, 24, 24))
    _write_dataset(root / "raw", 802, "Aniso", (4.0, 1.0, 1.0), (8, 32, 32))
    _ok(_run(env, "nnUNetv2_plan_and_preprocess", "-d", "801", "802", "-c", "3d_fullres", "-np", "1",
             step="plan_and_preprocess"))
    _ok(_run(env, "nnUNetv2_train", "801", "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu",
             step="pretrain 801"))
    ckpt = (root / "results" / "Dataset801_Iso" / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"
            / "checkpoint_final.pth")
    assert ckpt.is_file()
    out = {"root": root, "env": env, "ckpt": ckpt, **out_env}
    out["check"] = _run(env, "plancheck", "check", str(ckpt), "802", *allow, "--format", "json", step="check")
    fix = _ok(_run(env, "plancheck", "check", str(ckpt), "802", *allow, "--fix", "--format", "json",
                   step="check --fix"))
    out["fix"] = json.loads(fix.stdout)
    for command in out["fix"]["fix"]["commands"]:
        args = shlex.split(command) if command.startswith("nnUNetv2_preprocess") else _as_printed(command)
        out.setdefault("fix_runs", []).append(_ok(_run(env, *args, step=f"fix: {args[0]}")))
    transfer = _ok(_run(env, "plancheck", "transfer", str(ckpt), "802", "-o", str(root / "t.pth"), *allow,
                        "--format", "json", step="transfer"))
    out["transfer"] = json.loads(transfer.stdout)
    # transfer prints FOLD where the fold is the user's choice: fold 0 here
    args = ["0" if a == "FOLD" else a for a in _as_printed(out["transfer"]["command"])]
    out["transfer_run"] = _ok(_run(env, *args, step="transfer: nnUNetv2_train"))
    out["again"] = _run(env, "plancheck", "check", str(root / "t.pth"), "802", *allow, step="check OUT.pth")
    # fine-tuning with a freezing schedule: transfer --schedule, the printed command (a shell line: it sets
    # nnUNet_extTrainer), stopped after the frozen epoch, then resumed with --c as a user resumes it
    sched = _ok(_run(env, "plancheck", "transfer", str(ckpt), "802", "-o", str(root / "ft.pth"), *allow,
                     "--schedule", "encoder", "--target-trainer", FINETUNE, "--format", "json",
                     step="transfer --schedule"))
    out["schedule"] = json.loads(sched.stdout)
    printed = out["schedule"]["command"].replace(" FOLD ", " 0 ") + " -device cpu"
    env = {**env, "PATH": BIN + os.pathsep + env.get("PATH", "")}  # the shell finds the venv's nnUNetv2_train
    out["finetune_stopped"] = _run({**env, "E2E_STOP_AFTER_EPOCH": "0", "nnUNet_n_proc_DA": "0"}, "/bin/bash", "-c",
                                   printed,
                                   step="fine-tune: frozen epoch, then stopped")
    resume = printed.replace(f" -pretrained_weights {shlex.quote(str(root / 'ft.pth'))}", " --c")
    assert resume != printed
    folder = root / "results" / "Dataset802_Aniso" / f"{FINETUNE}__nnUNetPlans_finetune__3d_fullres" / "fold_0"
    import torch

    latest = torch.load(folder / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    out["after_frozen"] = {"epoch": latest["current_epoch"], "weights": latest["network_weights"]}
    out["finetune_resumed"] = _ok(_run(env, "/bin/bash", "-c", resume, step="fine-tune: --c"))
    out["finetune_folder"] = folder
    # check --fix --schedule: the fixed plans with the entry, and its printed commands (the fine-tuning one stopped
    # after the frozen epoch)
    fixsched = _ok(_run(env, "plancheck", "check", str(ckpt), "802", *allow, "--fix", "--plans-name", "fixft",
                        "--schedule", "carried", "--target-trainer", FINETUNE, "--format", "json",
                        step="check --fix --schedule"))
    out["fix_schedule"] = json.loads(fixsched.stdout)
    *prepare, last = out["fix_schedule"]["fix"]["commands"]
    for command in prepare:
        _ok(_run(env, *shlex.split(command), step="fix --schedule: nnUNetv2_preprocess"))
    out["fix_schedule_run"] = _run({**env, "E2E_STOP_AFTER_EPOCH": "0", "nnUNet_n_proc_DA": "0"}, "/bin/bash", "-c",
                                   last.replace(" FOLD ", " 0 ") + " -device cpu",
                                   step="fix --schedule: fine-tune, frozen epoch")
    # plan-pretraining: 801 pretrained for 802's network, then its printed commands, as printed (-device cpu added)
    pp = _ok(_run(env, "plancheck", "plan-pretraining", "801", "802", "-tr", TRAINER, "--format", "json",
                  step="plan-pretraining"))
    out["pretraining"] = json.loads(pp.stdout)
    out["pretraining_runs"] = []
    for command in out["pretraining"]["groups"][0]["commands"]:
        line = command.replace(" FOLD ", " 0 ") + (" -device cpu" if command.startswith("nnUNetv2_train") else "")
        out["pretraining_runs"].append(_ok(_run(env, "/bin/bash", "-c", line,
                                                step=f"plan-pretraining: {command.split()[0]}")))
    # ablation: the five arms of 801's checkpoint on 802, fold 0, run by the script as written, then compare
    abl = root / "ablation"
    abl.mkdir()
    ablation = _ok(_run(env, "plancheck", "ablation", str(ckpt), "802", *allow, "-o", str(abl), "--folds", "0",
                        "--arm-trainer", TRAINER, "--schedule-trainer", FINETUNE, "--force", "--format", "json",
                        step="ablation"))
    out["ablation"] = json.loads(ablation.stdout)
    out["ablation_run"] = _run({**env, "EXTRA": "-device cpu"}, "/bin/bash", str(abl / "ablation.sh"),
                               step="ablation.sh (5 arms, fold 0)")
    out["compare"] = _run(env, "plancheck", "compare", "--manifest", str(abl / "ablation.json"), "--format", "json",
                          step="compare --manifest")
    out["compare_text"] = _run(env, "plancheck", "compare", "--manifest", str(abl / "ablation.json"))
    print(out["compare_text"].stdout, flush=True)
    out["fix_schedule_folder"] = (root / "results" / "Dataset802_Aniso" / f"{FINETUNE}__fixft_finetune__3d_fullres"
                                  / "fold_0")
    TIMES["total"] = time.time() - start
    print(f"e2e: total {TIMES['total']:.0f} s", flush=True)
    return out


def test_nnunet_and_plancheck_refuse_the_raw_pair(workflow):
    assert workflow["check"].returncode == 1, workflow["check"].stderr
    assert json.loads(workflow["check"].stdout)["nnunet_first_failure"] is not None


def test_fixed_plans_train_with_the_pretrained_weights(workflow):
    fix = workflow["fix"]
    assert fix["after"]["compatible"] is True
    train = workflow["fix_runs"][-1]
    assert "Loading pretrained weights from file" in train.stdout
    plans_name = fix["fix"]["plans_name"]
    assert (workflow["root"] / "results" / "Dataset802_Aniso" / f"{TRAINER}__{plans_name}__3d_fullres"
            / "fold_0" / "checkpoint_final.pth").is_file()


def test_transferred_weights_train_in_the_targets_own_plans(workflow):
    assert f"-tr {TRAINER}" in workflow["transfer"]["command"]
    assert "Loading pretrained weights from file" in workflow["transfer_run"].stdout
    assert (workflow["root"] / "results" / "Dataset802_Aniso" / f"{TRAINER}__nnUNetPlans__3d_fullres"
            / "fold_0" / "checkpoint_final.pth").is_file()


def test_the_transfer_file_is_a_source(workflow):
    assert workflow["again"].returncode == 0, workflow["again"].stderr


def test_fine_tuning_runs_the_phases_and_resumes_in_the_right_one(workflow):
    """Issue 19: frozen tensors are bit-identical to the transferred file after the frozen phase and differ after
    it; a run stopped after the frozen epoch resumes (--c) with the frozen phase's optimizer, then warms up."""
    import torch

    schedule = workflow["schedule"]["schedule"]
    assert schedule["freeze"] == "encoder" and schedule["trainer"] == FINETUNE and schedule["plans"]
    command = workflow["schedule"]["command"]
    assert f"-tr {FINETUNE}" in command
    if workflow["ext_trainer"]:
        assert command.startswith("nnUNet_extTrainer=")
    else:  # 2.6/2.7: the printed line installs the module their lookup finds
        assert command.startswith("plancheck trainers --install && ")
        assert (workflow["root"] / "site" / "nnunetv2" / "training" / "nnUNetTrainer"
                / "plancheck_finetune_trainers.py").is_file()
    assert workflow["finetune_stopped"].returncode == 3, workflow["finetune_stopped"].stderr[-3000:]
    transferred = torch.load(workflow["root"] / "ft.pth", map_location="cpu", weights_only=True)["network_weights"]
    frozen = schedule["frozen_keys"]
    after = workflow["after_frozen"]
    assert after["epoch"] == 1 and frozen
    assert all(torch.equal(after["weights"][k], transferred[k]) for k in frozen)
    trained = [k for k in transferred if k not in set(frozen) and transferred[k].is_floating_point()]
    assert sum(not torch.equal(after["weights"][k], transferred[k]) for k in trained) > len(trained) // 2
    final = torch.load(workflow["finetune_folder"] / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert sum(not torch.equal(final["network_weights"][k], transferred[k]) for k in frozen) > len(frozen) // 2
    logs = sorted(workflow["finetune_folder"].glob("training_log_*.txt"))
    assert len(logs) == 2, logs
    first, second = (p.read_text() for p in logs)
    assert "plancheck fine-tuning: phase 'frozen' (epochs 0-0 of 3" in first and "phase 'warmup'" not in first
    # resumed: the frozen phase's optimizer for nnU-Net's load, then the warm-up and the decay
    assert "phase 'frozen'" in second and "phase 'warmup' (epochs 1-1 of 3" in second
    assert "phase 'train' (epochs 2-2)" in second


def test_fix_schedule_commands_run_and_keep_what_nnunet_loaded_fixed(workflow):
    """check --fix --schedule carried: the printed commands run; after the frozen epoch every tensor nnU-Net's loader
    took from the checkpoint is bit-identical to the checkpoint's; the re-initialised heads are not frozen."""
    import torch

    schedule = workflow["fix_schedule"]["schedule"]
    assert schedule["freeze"] == "carried" and schedule["trainer"] == FINETUNE
    run = workflow["fix_schedule_run"]
    assert run.returncode == 3, run.stderr[-3000:]
    assert "Loading pretrained weights from file" in run.stdout
    source = torch.load(workflow["ckpt"], map_location="cpu", weights_only=False)["network_weights"]
    latest = torch.load(workflow["fix_schedule_folder"] / "checkpoint_latest.pth", map_location="cpu",
                        weights_only=False)
    assert latest["current_epoch"] == 1
    weights = latest["network_weights"]
    frozen = schedule["frozen_keys"]
    assert frozen and all(torch.equal(weights[k], source[k]) for k in frozen)
    heads = [k for k in weights if ".seg_layers." in k and weights[k].is_floating_point()]
    assert heads and not set(heads) & set(frozen)
    log = next(workflow["fix_schedule_folder"].glob("training_log_*.txt")).read_text()
    assert "plancheck fine-tuning: phase 'frozen'" in log


def test_plan_pretraining_commands_run_as_printed(workflow):
    """Issue 20: 801's plans given 802's network; its pretraining trains; 802 fine-tunes from it with its own plans."""
    plan = workflow["pretraining"]
    (group,) = plan["groups"]
    assert group["written"] and group["source_plans_unchanged"] is False
    # nnUNetv2_preprocess only where --fix says it is needed: the data_identifier is kept, and 801's data for it
    # already exists here (plan_and_preprocess), so the pretraining trains on it directly
    assert [c.split()[0] for c in group["commands"]] == ["nnUNetv2_train", "nnUNetv2_train"]
    *_, finetune = workflow["pretraining_runs"]
    assert "Loading pretrained weights from file" in finetune.stdout
    name = group["plans_name"]
    assert (workflow["root"] / "results" / "Dataset801_Iso" / f"{TRAINER}__{name}__3d_fullres" / "fold_all"
            / "checkpoint_final.pth").is_file()


def test_ablation_arms_train_and_compare_reads_nnunets_summaries(workflow):
    """Issue 21: every arm made, trained by its printed command (fold 0), and compared from nnU-Net's own
    validation summaries: every arm finished, the same validation cases, paired with the baseline."""
    arms = workflow["ablation"]["arms"]
    assert [a["name"] for a in arms] == ["baseline", "unified", "unified_pretrained", "transfer", "transfer_schedule"]
    assert all(a["made"] for a in arms), [a["reason"] for a in arms]
    run = workflow["ablation_run"]
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert run.stdout.count("Loading pretrained weights from file") == 3  # the three arms with weights
    compare = workflow["compare"]
    assert compare.returncode == 0, (compare.stdout[-2000:], compare.stderr[-2000:])
    result = json.loads(compare.stdout)
    assert [a["name"] for a in result["arms"]] == [a["name"] for a in arms]
    assert all(a["folds"] == ["0"] and not a["unfinished"] and a["cases"] >= 1 for a in result["arms"])
    assert all(p["refusal"] is None and p["baseline"] == "baseline" for p in result["paired"])
    assert len(result["paired"]) == 4
