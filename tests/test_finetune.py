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


def test_nnunets_own_lookup_finds_every_trainer():
    """nnU-Net 2.8.1's recursive_find_trainer_class_by_name, through nnUNet_extTrainer, in a fresh process."""
    code = (
        "import json\n"
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
        f"names = {sorted(TRAINERS)!r}\n"
        "found = {n: find(n) for n in names}\n"
        "print(json.dumps({n: [c.__module__, c.EPOCHS, c.FROZEN_EPOCHS, c.WARMUP_EPOCHS] for n, c in found.items()}))\n"
    )
    env = {**os.environ, "nnUNet_extTrainer": trainers_folder()}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {n: ["plancheck.finetune.trainer", *TRAINERS[n][:3]] for n in TRAINERS}


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
