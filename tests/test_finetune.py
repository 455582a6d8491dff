"""Fine-tuning trainers (issue 19): the schedule against nnU-Net's own schedulers, nnU-Net's lookup, the optimizer's
groups, frozen tensors that stay bit-identical (also under DistributedDataParallel), and resume in the right phase.

The real ``nnUNetv2_train`` run through the phases is in ``test_e2e.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import fixture, load
from plancheck.finetune import TRAINERS, trainers_folder
from plancheck.finetune.schedule import PLANS_KEY, FinetunePlan, Phase, Schedule

SMALL = fixture("Dataset906_SmallImages")


def _nnunet_lrs(schedule: Schedule) -> list[float]:
    """The learning rate of every epoch by nnU-Net's own schedulers (nnUNetTrainer_warmup's and the poly offset)."""
    from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule.initial_lr)
    lrs = []
    frozen = Lin_incr_LRScheduler(opt, schedule.initial_lr, schedule.frozen_epochs)
    for epoch in range(schedule.frozen_epochs):
        frozen.step(epoch)
        lrs.append(opt.param_groups[0]["lr"])
    start = schedule.frozen_epochs
    warm = Lin_incr_LRScheduler(opt, schedule.initial_lr, schedule.warmup_epochs)
    for epoch in range(start, start + schedule.warmup_epochs):
        warm.step(epoch - start)
        lrs.append(opt.param_groups[0]["lr"])
    start += schedule.warmup_epochs
    poly = PolyLRScheduler_offset(opt, schedule.initial_lr, schedule.num_epochs, start)
    for epoch in range(start, schedule.num_epochs):
        poly.step(epoch)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("epochs, frozen, warmup", [(1000, 50, 50), (10, 2, 3), (4, 1, 1)])
def test_learning_rates_are_nnunets_warmup_and_poly(epochs, frozen, warmup):
    schedule = Schedule(epochs, frozen, warmup, 0.01)
    assert [schedule.lr_at(e) for e in range(epochs)] == pytest.approx(_nnunet_lrs(schedule), rel=1e-12)
    assert [schedule.phase_at(e) for e in (0, frozen - 1, frozen, frozen + warmup - 1, frozen + warmup)] == [
        Phase.FROZEN, Phase.FROZEN, Phase.WARMUP, Phase.WARMUP, Phase.TRAIN]


def test_a_schedule_without_decay_epochs_is_refused():
    with pytest.raises(ValueError, match="no epoch"):
        Schedule(10, 5, 5, 0.01)


def test_plan_entry_round_trips_and_refuses_bad_entries():
    plan = FinetunePlan("encoder", ("a.weight", "b.weight"), ("a.weight",), 0.5, "t.pth")
    assert FinetunePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    for bad in (None, {"version": 2}, {**plan.to_dict(), "freeze": "all"}, {**plan.to_dict(), "frozen": ["c"]},
                {**plan.to_dict(), "carried_lr_ratio": 0}):
        with pytest.raises(ValueError):
            FinetunePlan.from_dict(bad)


#: nnU-Net's own trainer lookup, as its nnUNetv2_train calls it (run_training.get_trainer_from_args): 2.8+ searches its
#: folder and nnUNet_extTrainer (find_objects); 2.6/2.7 search nnunetv2/training/nnUNetTrainer only.
_NNUNET_LOOKUP = (
    "import json, os, sys\n"
    "import nnunetv2\n"
    "names = json.loads(sys.argv[1])\n"
    "try:\n"
    "    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
    "except ImportError:\n"
    "    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class\n"
    "    def find(name):\n"
    "        return recursive_find_python_class(os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'),\n"
    "                                           name, 'nnunetv2.training.nnUNetTrainer')\n"
    "found = {}\n"
    "for n in names:\n"
    "    try:\n"
    "        c = find(n)\n"
    "    except RuntimeError:\n"  # 2.8's lookup raises where 2.6's returns None
    "        c = None\n"
    "    found[n] = None if c is None else [c.__module__, c.EPOCHS, c.FROZEN_EPOCHS, c.WARMUP_EPOCHS]\n"
    "print(json.dumps({'nnunetv2': nnunetv2.__path__[0], 'found': found}))\n"
)
def _release_reads_ext_trainer() -> bool:
    import importlib.util

    package = list(importlib.util.find_spec("nnunetv2").submodule_search_locations)[0]
    return os.path.isfile(os.path.join(package, "utilities", "find_objects.py"))


_EXPECTED = {n: ["plancheck.finetune.trainer", *TRAINERS[n][:3]] for n in TRAINERS}


def _lookup(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", _NNUNET_LOOKUP, json.dumps(sorted(TRAINERS))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _plancheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plancheck", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def private_nnunet(tmp_path):
    """A copy of the installed nnunetv2 package, first on PYTHONPATH: --install writes into it, not into the venv."""
    import shutil
    import importlib.util

    origin = list(importlib.util.find_spec("nnunetv2").submodule_search_locations)[0]
    site = tmp_path / "site"
    shutil.copytree(origin, site / "nnunetv2", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return site / "nnunetv2", env


def test_nnunets_own_lookup_finds_every_trainer_the_way_its_release_allows(private_nnunet):
    """The release's own lookup in a fresh process: through nnUNet_extTrainer where it reads it (2.8+), and through
    `plancheck trainers --install` on every release (the only way on 2.6/2.7, which ignore nnUNet_extTrainer)."""
    package, env = private_nnunet
    ext_trainer = (package / "utilities" / "find_objects.py").is_file()
    before = _lookup(env)
    assert before["nnunetv2"] == str(package)
    assert before["found"] == {n: None for n in TRAINERS}  # nnU-Net alone does not find them
    with_ext = _lookup({**env, "nnUNet_extTrainer": trainers_folder()})
    assert with_ext["found"] == (_EXPECTED if ext_trainer else {n: None for n in TRAINERS})

    proc = _plancheck(env, "trainers", "--install")
    shim = package / "training" / "nnUNetTrainer" / "plancheck_finetune_trainers.py"
    assert proc.returncode == 0 and str(shim) in proc.stdout and shim.is_file(), proc.stderr
    assert _lookup(env)["found"] == _EXPECTED
    again = _plancheck(env, "trainers", "--install")
    assert again.returncode == 0 and again.stdout.startswith("Already installed:")
    listed = json.loads(_plancheck(env, "trainers", "--format", "json").stdout)
    assert listed["installed"] is True and listed["ext_trainer"] is ext_trainer

    removed = _plancheck(env, "trainers", "--uninstall")
    assert removed.returncode == 0 and not shim.exists()
    assert _lookup(env)["found"] == {n: None for n in TRAINERS}


def test_install_never_replaces_a_file_it_did_not_write(private_nnunet):
    package, env = private_nnunet
    shim = package / "training" / "nnUNetTrainer" / "plancheck_finetune_trainers.py"
    shim.write_text("# the user's own module\n")
    for args in (("trainers", "--install"), ("trainers", "--uninstall")):
        proc = _plancheck(env, *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and str(shim) in proc.stderr, proc.stderr
        assert shim.read_text() == "# the user's own module\n"
    proc = _plancheck(env, "trainers", "--install", "--force")
    assert proc.returncode == 0 and shim.read_text().startswith("# written by `plancheck trainers --install`")
    assert _plancheck(env, "trainers", "--force").returncode == 2  # --force means nothing without --install


def test_trainers_path_command(run_cli):
    code, out, err = run_cli("trainers", "--path")
    assert code == 0 and out.strip() == trainers_folder() and os.path.isdir(out.strip())
    code, out, err = run_cli("trainers")
    assert code == 0 and all(name in out for name in TRAINERS)


# --------------------------------------------------------------------------- a real trainer, in process


def _trainer(tmp_path, freeze: str = "encoder", ratio: float = 1.0, trainer: str = "nnUNetTrainerFinetune"):
    from plancheck.run.training import RunSetup, initialize, make_trainer
    from nnunet_oracle import build_real

    plans, dj = load(SMALL), load(SMALL.parent / "dataset.json")
    state = build_real(plans, "2d", dj).state_dict()
    encoder = [k for k in state if k.startswith("encoder.")]
    carried = encoder if freeze == "encoder" else list(state)
    frozen = encoder if freeze == "encoder" else [k for k in state if not k.startswith("decoder.seg_layers")]
    carried = sorted(set(carried) | set(frozen))
    plans[PLANS_KEY] = FinetunePlan(freeze, tuple(carried), tuple(frozen), ratio).to_dict()
    setup = RunSetup(f"plancheck.finetune.trainer.{trainer}", json.dumps(plans), "2d", json.dumps(dj), (32, 32), 2)
    tr = make_trainer(setup, torch.device("cpu"))
    tr.log_file = str(tmp_path / "training_log.txt")
    initialize(tr)
    return tr, frozen


def _roles(tr, frozen_keys):
    state = tr.network.state_dict(keep_vars=True)
    frozen = {id(state[k]) for k in frozen_keys if isinstance(state[k], torch.nn.Parameter)}
    return [p for p in tr.network.parameters() if id(p) in frozen], \
        [p for p in tr.network.parameters() if id(p) not in frozen]


def _steps(tr, n=2):
    from plancheck.run.training import scalerless_train_step, synthetic_batch

    data, target = synthetic_batch(tr)
    for _ in range(n):
        # nnU-Net's train_step, step for step (zero_grad, forward, loss, backward, clip over every parameter, step)
        scalerless_train_step(tr, data, target, amp_device=None)


def test_optimizer_groups_leave_out_exactly_the_frozen_parameters(tmp_path):
    tr, frozen_keys = _trainer(tmp_path, ratio=0.1)
    frozen, rest = _roles(tr, frozen_keys)
    assert frozen and rest
    in_optimizer = [p for g in tr.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in in_optimizer} == {id(p) for p in rest}  # every other parameter, each once
    assert len(in_optimizer) == len(rest)
    assert [g["name"] for g in tr.optimizer.param_groups] == ["new"]  # encoder carried and frozen: nothing else carried
    # requires_grad stays on: every parameter is in the autograd graph (DDP reduces the same set in every phase)
    assert all(p.requires_grad for p in tr.network.parameters())
    log = open(tr.log_file).read()
    assert "plancheck fine-tuning: phase 'frozen' (epochs 0-49 of 1000" in log
    # after the frozen phase: the frozen parameters join the 'carried' group, at the plan's ratio
    tr.current_epoch = 50
    tr.optimizer, tr.lr_scheduler = tr._enter(Phase.WARMUP, previous=tr.optimizer)
    groups = {g["name"]: g for g in tr.optimizer.param_groups}
    assert {id(p) for p in groups["carried"]["params"]} == {id(p) for p in frozen}
    tr.lr_scheduler.step(50)
    assert groups["carried"]["lr"] == pytest.approx(0.1 * groups["new"]["lr"])
    assert groups["new"]["lr"] == pytest.approx(tr.schedule.lr_at(50))


def test_frozen_tensors_stay_bit_identical_and_take_no_gradient(tmp_path):
    tr, frozen_keys = _trainer(tmp_path)
    frozen, rest = _roles(tr, frozen_keys)
    before = [p.detach().clone() for p in frozen], [p.detach().clone() for p in rest]
    _steps(tr)
    assert all(torch.equal(a, p) for a, p in zip(before[0], frozen))
    assert all(p.grad is None for p in frozen)  # no gradient memory, and not in the clipping norm
    assert sum(not torch.equal(a, p) for a, p in zip(before[1], rest)) > 0.9 * len(rest)
    # the warm-up phase: everything trains, the momentum of the trained part carries over
    momentum = {id(p): s["momentum_buffer"].clone() for p, s in tr.optimizer.state.items()}
    tr.current_epoch = tr.schedule.first_epoch(Phase.WARMUP)
    tr.optimizer, tr.lr_scheduler = tr._enter(Phase.WARMUP, previous=tr.optimizer)
    assert len(momentum) > 0.9 * len(rest)
    assert all(torch.equal(tr.optimizer.state[p]["momentum_buffer"], momentum[id(p)])
               for p in rest if id(p) in momentum)
    tr.lr_scheduler.step(tr.current_epoch)
    _steps(tr, 1)
    assert sum(not torch.equal(a, p) for a, p in zip(before[0], frozen)) > 0.9 * len(frozen)


def test_frozen_phase_under_distributed_data_parallel(tmp_path):
    """DDP (gloo, one process) as nnU-Net wraps the network: no unused-parameter error, frozen tensors unchanged."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    # the process group first, as nnUNetv2_train does: the trainer reads is_ddp when it is built (and then gives the
    # lowest deep-supervision output a tiny weight instead of 0, so that every parameter takes part in the loss)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        tr, frozen_keys = _trainer(tmp_path)
        assert tr.is_ddp
        frozen, rest = _roles(tr, frozen_keys)
        before = [p.detach().clone() for p in frozen], [p.detach().clone() for p in rest]
        tr.network = DDP(tr.network)  # nnU-Net: DDP(self.network, device_ids=[...]), no find_unused_parameters
        _steps(tr, 2)
    finally:
        dist.destroy_process_group()
    assert all(torch.equal(a, p) for a, p in zip(before[0], frozen))
    assert sum(not torch.equal(a, p) for a, p in zip(before[1], rest)) > 0.9 * len(rest)


def test_resume_builds_the_phase_the_checkpoint_was_saved_in(tmp_path):
    """A checkpoint saved after the last frozen epoch holds the frozen phase's optimizer; nnU-Net's load accepts it,
    and the next epoch enters the warm-up with everything in the optimizer."""
    tr, frozen_keys = _trainer(tmp_path)
    _steps(tr, 1)
    last_frozen = tr.schedule.last_epoch(Phase.FROZEN)
    checkpoint = {"network_weights": tr.network.state_dict(), "optimizer_state": tr.optimizer.state_dict(),
                  "grad_scaler_state": None, "logging": tr.logger.get_checkpoint(), "_best_ema": None,
                  "current_epoch": last_frozen + 1, "init_args": tr.my_init_kwargs,
                  "trainer_name": type(tr).__name__, "inference_allowed_mirroring_axes": None}
    path = tmp_path / "checkpoint_latest.pth"
    torch.save(checkpoint, path)
    fresh, _ = _trainer(tmp_path)
    fresh.load_checkpoint(str(path))  # as nnUNetv2_train --c calls it
    assert fresh.finetune_phase is Phase.FROZEN and fresh.current_epoch == last_frozen + 1
    assert len(fresh.optimizer.state) == len(tr.optimizer.state)
    fresh.on_train_epoch_start()
    assert fresh.finetune_phase is Phase.WARMUP
    assert len([p for g in fresh.optimizer.param_groups for p in g["params"]]) == len(list(fresh.network.parameters()))
    assert "phase 'warmup' (epochs 50-99" in open(fresh.log_file).read()


# --------------------------------------------------------------------------- transfer --schedule


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 906 3d_fullres checkpoint of the network nnU-Net builds, and a copy of 906's plans folder as the target."""
    import shutil

    from nnunet_oracle import build_real, nnunet_checkpoint

    folder = tmp_path_factory.mktemp("schedule")
    plans, dj = load(SMALL), load(SMALL.parent / "dataset.json")
    net = build_real(plans, "3d_fullres", dj)
    torch.save(nnunet_checkpoint(net, plans, dj, "3d_fullres"), folder / "906.pth")
    target = folder / "Dataset906_SmallImages"
    shutil.copytree(SMALL.parent, target)
    return folder / "906.pth", target / "nnUNetPlans.json"


def test_transfer_schedule_writes_the_targets_own_plans_with_the_entry(pair, tmp_path, run_cli):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    ckpt, target = pair
    out = tmp_path / "ft.pth"
    code, stdout, err = run_cli("transfer", ckpt, target, "-o", out, "--schedule", "encoder", "--carried-lr-ratio",
                                "0.25", "--format", "json")
    assert code == 0, err
    result = json.loads(stdout)
    written = target.parent / "nnUNetPlans_finetune.json"
    assert result["schedule"]["plans"] == str(written) and result["schedule"]["trainer"] == "nnUNetTrainerFinetune"
    new, old = load(written), load(target)
    assert {k: v for k, v in new.items() if k not in (PLANS_KEY, "plans_name")} == \
        {k: v for k, v in old.items() if k != "plans_name"}
    assert new["plans_name"] == "nnUNetPlans_finetune"
    assert PlansManager(new).get_configuration("3d_fullres").data_identifier == \
        PlansManager(old).get_configuration("3d_fullres").data_identifier  # the preprocessed data is reused
    entry = FinetunePlan.from_dict(new[PLANS_KEY])
    assert entry.freeze == "encoder" and entry.carried_lr_ratio == 0.25 and entry.source == str(out)
    rows = {k: r for r in result["tensors"] for k in r["keys"]}
    # frozen: exactly the carried tensors of the stem and encoder (the architecture's key_to_stem/key_to_encoder)
    assert set(entry.frozen) == {k for k, r in rows.items() if r["action"] in ("copied", "adapted")
                                 and r["part"] in ("stem", "encoder")}
    assert set(entry.frozen) < set(entry.carried)  # the decoder was carried over too, and is not frozen
    # nnU-Net's decoder holds the encoder too: both alias keys of an encoder tensor are frozen
    assert all(k.startswith(("encoder.", "decoder.encoder.")) for k in entry.frozen)
    assert any(k.startswith("decoder.stages.") for k in entry.carried)
    command = result["command"]
    if _release_reads_ext_trainer():
        assert command.startswith(f"nnUNet_extTrainer={trainers_folder()}:\"${{nnUNet_extTrainer:-}}\" nnUNetv2_train ")
    else:  # 2.6/2.7: the line installs the module their lookup finds, then trains; a note says why
        assert command.startswith("plancheck trainers --install && nnUNetv2_train ")
        assert any("has no nnUNet_extTrainer" in n for n in result["notes"])
    assert "-p nnUNetPlans_finetune -tr nnUNetTrainerFinetune -pretrained_weights" in command
    # again: the plans exist, and neither they nor OUT are overwritten without --force
    out2 = tmp_path / "again.pth"
    code, stdout, err = run_cli("transfer", ckpt, target, "-o", out2, "--schedule", "encoder")
    assert code == 2 and "nnUNetPlans_finetune.json: exists" in err and not out2.exists()
    code, stdout, err = run_cli("transfer", ckpt, target, "-o", out2, "--schedule", "carried", "--force")
    assert code == 0, err
    assert FinetunePlan.from_dict(load(written)[PLANS_KEY]).freeze == "carried"


def test_transfer_schedule_refusals(pair, tmp_path, run_cli):
    ckpt, target = pair
    out = tmp_path / "x.pth"
    code, _, err = run_cli("transfer", ckpt, target, "-o", out, "--carried-lr-ratio", "0.5")
    assert code == 2 and "--carried-lr-ratio" in err and "--schedule" in err
    code, _, err = run_cli("transfer", ckpt, target, "-o", out, "--schedule", "encoder", "--target-trainer",
                           "nnUNetTrainer_250epochs")
    assert code == 2 and "fine-tuning trainer" in err and "--target-trainer nnUNetTrainer_250epochs" in err
    code, _, err = run_cli("transfer", ckpt, target, "-o", out, "--schedule", "encoder", "--carried-lr-ratio", "0")
    assert code == 2 and "--carried-lr-ratio" in err
    code, stdout, err = run_cli("transfer", ckpt, target, "--dry-run", "--schedule", "encoder",
                                "--schedule-plans", "dry_finetune")
    assert code == 0 and "not written" in stdout and not (target.parent / "dry_finetune.json").exists()
    assert not out.exists()


def test_verify_runs_each_phase_of_a_fine_tuning_trainer(pair, tmp_path):
    """verify understands the trainers: the frozen phase trains fewer parameters, needs less memory (no gradients,
    no optimizer state for the frozen ones), and the steps leave the frozen tensors bit-identical."""
    import plancheck
    from plancheck.errors import UsageError

    ckpt, target = pair
    out = tmp_path / "ft.pth"
    plancheck.transfer(ckpt, target, out, schedule="encoder", schedule_plans="verify_finetune", force=True)
    plans = target.parent / "verify_finetune.json"
    runs = {phase: plancheck.verify(out, plans, device="cpu", batch_size=2, patch_size=(32, 32, 32), iterations=2,
                                    target_trainer="nnUNetTrainerFinetune", phase=phase, force=True)
            for phase in ("frozen", "warmup")}
    frozen, warm = runs["frozen"], runs["warmup"]
    assert frozen.ok and warm.ok and frozen.phase == "frozen" and warm.phase == "warmup"
    total = frozen.prediction.parameters_total
    assert warm.prediction.parameters_trained == total and frozen.prediction.parameters_trained < total
    assert frozen.measurement.untrained_unchanged is True and warm.measurement.untrained_unchanged is None
    assert frozen.measurement.cpu_peak_delta < warm.measurement.cpu_peak_delta
    assert frozen.prediction.step_bytes < warm.prediction.step_bytes
    for run in runs.values():
        measured, predicted = run.measurement.cpu_peak_delta, run.prediction.step_bytes
        assert abs(predicted - measured) <= 0.05 * measured, (run.phase, predicted, measured)
    assert "Parameters trained: " in str(frozen) and "bit-identical after the steps: yes" in str(frozen)
    with pytest.raises(UsageError, match="`phase`"):
        plancheck.verify(out, target, device="meta", phase="frozen", target_trainer="nnUNetTrainer")


# --------------------------------------------------------------------------- check --fix --schedule


@pytest.fixture(scope="module")
def incompatible_pair(tmp_path_factory):
    """A 901 3d_fullres checkpoint (every tensor moved off its initial value) and a copy of 902's folder."""
    import shutil

    from nnunet_oracle import moved_checkpoint

    folder = tmp_path_factory.mktemp("fix_schedule")
    weights = moved_checkpoint(fixture("Dataset901_CTIsotropic"), folder / "901.pth")
    target = folder / "Dataset902_CTAnisotropic"
    shutil.copytree(fixture("Dataset902_CTAnisotropic").parent, target)
    return folder / "901.pth", target / "nnUNetPlans.json", weights


@pytest.mark.parametrize("freeze", ["carried", "encoder"])
def test_fix_schedule_names_what_nnunets_loader_loads(incompatible_pair, run_cli, freeze):
    """check --fix --schedule: the entry's carried keys are exactly those nnU-Net's load_pretrained_weights loads into
    the network nnU-Net builds from the fixed plans; 'encoder' freezes those under its key_to_encoder/key_to_stem."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    from nnunet_oracle import build_real

    ckpt, target, weights = incompatible_pair
    name = f"fixed_{freeze}"
    code, out, err = run_cli("check", ckpt, target, "--fix", "--plans-name", name, "--schedule", freeze,
                             "--carried-lr-ratio", "0.5", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["after"]["compatible"] is True
    written = target.parent / f"{name}_finetune.json"
    assert result["schedule"]["plans"] == str(written) and result["schedule"]["trainer"] == "nnUNetTrainerFinetune"
    fixed, new = load(target.parent / f"{name}.json"), load(written)
    assert {k: v for k, v in new.items() if k not in (PLANS_KEY, "plans_name")} == \
        {k: v for k, v in fixed.items() if k != "plans_name"}  # the fixed plans, data_identifier included
    entry = FinetunePlan.from_dict(new[PLANS_KEY])
    assert entry.freeze == freeze and entry.carried_lr_ratio == 0.5 and entry.source == str(ckpt)

    network = build_real(fixed, "3d_fullres", load(target.parent / "dataset.json"))
    with torch.no_grad():
        for p in network.parameters():
            p.zero_()
    load_pretrained_weights(network, str(ckpt), verbose=False)
    after = network.state_dict()
    loaded = {k for k, v in after.items() if k in weights and v.shape == weights[k].shape
              and v.is_floating_point() and torch.equal(v, weights[k])}
    assert set(entry.carried) == loaded and not any(".seg_layers." in k for k in entry.carried)
    if freeze == "carried":
        assert set(entry.frozen) == loaded
    else:
        modules = (network.key_to_encoder + ".", network.key_to_stem + ".")
        encoder_keys = {k for k, p in network.named_parameters(remove_duplicate=False) if k.startswith(modules)}
        assert encoder_keys and set(entry.frozen) >= encoder_keys and set(entry.frozen) < loaded
        assert all(k.startswith(("encoder.", "decoder.encoder.")) for k in entry.frozen)
    command = result["fix"]["commands"][-1]
    assert f"-p {name}_finetune -tr nnUNetTrainerFinetune -pretrained_weights {ckpt}" in command
    if _release_reads_ext_trainer():
        assert command.startswith(f"nnUNet_extTrainer={trainers_folder()}:")


def test_fix_schedule_refusals_write_nothing(incompatible_pair, pair, run_cli):
    ckpt, target, _ = incompatible_pair
    before = sorted(os.listdir(target.parent))
    code, out, err = run_cli("check", ckpt, target, "--schedule", "encoder")
    assert code == 2 and "only make sense with --fix" in err
    code, out, err = run_cli("check", ckpt, target, "--fix", "--schedule", "encoder", "--target-trainer",
                             "nnUNetTrainer")
    assert code == 2 and "needs a fine-tuning trainer" in err
    assert sorted(os.listdir(target.parent)) == before
    compatible_ckpt, compatible_target = pair
    listed = sorted(os.listdir(compatible_target.parent))
    code, out, err = run_cli("check", compatible_ckpt, compatible_target, "--fix", "--schedule", "encoder")
    assert code == 2 and "transfer --schedule" in err and sorted(os.listdir(compatible_target.parent)) == listed
