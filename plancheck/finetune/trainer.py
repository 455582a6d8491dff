"""nnU-Net trainers that fine-tune with a freezing schedule (:mod:`plancheck.finetune.schedule`).

Run by stock ``nnUNetv2_train``, which finds them through ``nnUNet_extTrainer`` (the folder
``plancheck trainers --path`` prints). They read the plans' ``plancheck_finetune`` entry, which
``plancheck transfer --schedule`` writes: the keys carried over and the keys to freeze.

Freezing: a frozen parameter is left out of the optimizer, and its gradient is dropped as soon
as autograd has accumulated it (``register_post_accumulate_grad_hook``), so it takes no
gradient or optimizer memory and does not enter nnU-Net's gradient-norm clipping.
``requires_grad`` stays True: every parameter is still in the autograd graph, so
DistributedDataParallel (which nnU-Net builds without ``find_unused_parameters``) reduces the
same parameters in every phase, and ``torch.compile`` sees the same graph.

Each phase change is written to nnU-Net's training log ("plancheck fine-tuning: phase ...").
Under DistributedDataParallel the frozen tensors stay unchanged too (they are in no optimizer
group), but DDP writes the reduced gradient back into every parameter after the backward pass,
so there the frozen ones hold a gradient (memory) and enter the clipping norm.
On resume (``--c``), the optimizer of the phase the checkpoint was saved in is built before
nnU-Net loads its state, then the phase of the next epoch is entered as in an unbroken run.

This module imports torch and nnU-Net; ``import plancheck`` never imports it.
"""

from __future__ import annotations

import typing as t

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from plancheck.finetune.schedule import PLANS_KEY, FinetunePlan, Phase, Schedule

__all__ = [
    "PhaseLR",
    "nnUNetTrainerFinetune",
    "nnUNetTrainerFinetuneAdamW",
    "nnUNetTrainerFinetune_100epochs",
    "nnUNetTrainerFinetune_250epochs",
]


class PhaseLR(torch.optim.lr_scheduler.LRScheduler):
    """Each group's learning rate at an epoch: the schedule's, times the group's ``lr_ratio``.

    A function of the epoch only (nnU-Net calls ``step(current_epoch)``), so nothing needs saving.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, current_step: int | None = None):
        self.schedule = schedule
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = self.schedule.lr_at(min(int(current_step), self.schedule.num_epochs - 1))
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_ratio", 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def _drop_grad(parameter: torch.Tensor) -> None:
    parameter.grad = None


class nnUNetTrainerFinetune(nnUNetTrainer):
    """SGD as nnU-Net's default; 1000 epochs: 50 with the carried tensors frozen, 50 of warm-up, then poly decay."""

    EPOCHS = 1000
    FROZEN_EPOCHS = 50
    WARMUP_EPOCHS = 50

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.EPOCHS
        entry = plans.get(PLANS_KEY)
        if entry is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the fine-tuning plans that plancheck transfer writes with a "
                f"schedule: the plans '{plans.get('plans_name')}' hold no '{PLANS_KEY}' entry")
        self.finetune_plan = FinetunePlan.from_dict(entry)
        self.schedule = Schedule(self.num_epochs, self.FROZEN_EPOCHS, self.WARMUP_EPOCHS, self.initial_lr)
        self.finetune_phase: Phase | None = None
        self._freeze_hooks: list[t.Any] = []

    # ------------------------------------------------------------------ the parameters of each phase

    def _base_network(self) -> torch.nn.Module:
        network = self.network
        if isinstance(network, DistributedDataParallel):
            network = network.module
        if isinstance(network, OptimizedModule):
            network = network._orig_mod
        return t.cast(torch.nn.Module, network)

    def _parameters_by_role(self) -> dict[str, list[torch.nn.Parameter]]:
        """The network's parameters as 'frozen', 'carried' (carried over, not frozen) and 'new', in network order.

        The plan's keys may name either of nnU-Net's alias keys for a tensor; the roles follow the tensor.
        """
        network = self._base_network()
        state = network.state_dict(keep_vars=True)
        by_key = {k: v for k, v in state.items() if isinstance(v, torch.nn.Parameter)}
        missing = [k for k in self.finetune_plan.carried if k not in state]
        if missing:
            raise RuntimeError(f"the plans' {PLANS_KEY} entry names {len(missing)} keys this network does not have "
                               f"(first: {missing[0]}): it was written for another network")
        frozen = {id(by_key[k]) for k in self.finetune_plan.frozen if k in by_key}
        carried = {id(by_key[k]) for k in self.finetune_plan.carried if k in by_key}
        roles: dict[str, list[torch.nn.Parameter]] = {"frozen": [], "carried": [], "new": []}
        for parameter in network.parameters():
            role = "frozen" if id(parameter) in frozen else "carried" if id(parameter) in carried else "new"
            roles[role].append(parameter)
        return roles

    def optimizer_groups(self, phase: Phase,
                         roles: dict[str, list[torch.nn.Parameter]] | None = None) -> list[dict[str, t.Any]]:
        """The optimizer's parameter groups in ``phase``: 'new' and 'carried' (with the plan's lr ratio).

        In the frozen phase the frozen parameters are in no group; afterwards they join 'carried'.
        """
        roles = self._parameters_by_role() if roles is None else roles
        carried = roles["carried"] if phase is Phase.FROZEN else roles["frozen"] + roles["carried"]
        groups = [{"params": roles["new"], "name": "new", "lr_ratio": 1.0},
                  {"params": carried, "name": "carried", "lr_ratio": self.finetune_plan.carried_lr_ratio}]
        return [g for g in groups if g["params"]]

    def make_optimizer(self, groups: list[dict[str, t.Any]]) -> torch.optim.Optimizer:
        return torch.optim.SGD(groups, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                               nesterov=True)

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PhaseLR]:
        phase = self.schedule.phase_at(self.current_epoch)
        return self._enter(phase, previous=None)

    def _enter(self, phase: Phase, previous: torch.optim.Optimizer | None) -> tuple[torch.optim.Optimizer, PhaseLR]:
        """The optimizer and scheduler of ``phase``; the state (momentum) of ``previous`` carries over."""
        for handle in self._freeze_hooks:
            handle.remove()
        self._freeze_hooks = []
        roles = self._parameters_by_role()
        if phase is Phase.FROZEN:
            self._freeze_hooks = [p.register_post_accumulate_grad_hook(_drop_grad) for p in roles["frozen"]]
            for p in roles["frozen"]:
                p.grad = None
        optimizer = self.make_optimizer(self.optimizer_groups(phase, roles))
        if previous is not None:
            for parameter, state in previous.state.items():
                optimizer.state[parameter] = state
        self.finetune_phase = phase
        total = sum(p.numel() for ps in roles.values() for p in ps)
        frozen = sum(p.numel() for p in roles["frozen"]) if phase is Phase.FROZEN else 0
        self.print_to_log_file(
            f"plancheck fine-tuning: phase '{phase.value}' (epochs {self.schedule.first_epoch(phase)}-"
            f"{self.schedule.last_epoch(phase)} of {self.schedule.num_epochs}; {self.schedule.describe()}): "
            f"{total - frozen:,} of {total:,} parameters train, {frozen:,} frozen "
            f"(freeze: {self.finetune_plan.freeze}; carried lr ratio {self.finetune_plan.carried_lr_ratio:g})")
        return optimizer, PhaseLR(optimizer, self.schedule)

    # ------------------------------------------------------------------ nnU-Net's hooks

    def on_train_epoch_start(self) -> None:
        phase = self.schedule.phase_at(self.current_epoch)
        if phase is not self.finetune_phase:
            if phase is Phase.TRAIN and self.finetune_phase is Phase.WARMUP:
                self.finetune_phase = phase  # same parameters, same optimizer: only the learning rate changes
                self.print_to_log_file(f"plancheck fine-tuning: phase 'train' (epochs "
                                       f"{self.schedule.first_epoch(phase)}-{self.schedule.last_epoch(phase)}): "
                                       "poly decay")
            else:
                previous = t.cast(torch.optim.Optimizer, getattr(self, "optimizer"))
                self.optimizer, self.lr_scheduler = self._enter(phase, previous=previous)
        super().on_train_epoch_start()

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's, after building the optimizer of the phase the checkpoint was saved in (its groups)."""
        if not self.was_initialized:
            self.initialize()
        if isinstance(filename_or_checkpoint, str):
            # the epoch only: tensors memory-mapped, not read (nnU-Net's own load below reads the file, as it does
            # for any trainer; its load_checkpoint takes a path in every supported release)
            peek = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False, mmap=True)
            epoch = peek["current_epoch"]
            del peek
        else:
            epoch = filename_or_checkpoint["current_epoch"]
        saved_in = self.schedule.phase_at(max(int(epoch) - 1, 0))
        self.optimizer, self.lr_scheduler = self._enter(saved_in, previous=None)
        super().load_checkpoint(filename_or_checkpoint)


class nnUNetTrainerFinetune_250epochs(nnUNetTrainerFinetune):
    EPOCHS = 250
    FROZEN_EPOCHS = 25
    WARMUP_EPOCHS = 25


class nnUNetTrainerFinetune_100epochs(nnUNetTrainerFinetune):
    EPOCHS = 100
    FROZEN_EPOCHS = 10
    WARMUP_EPOCHS = 10


class nnUNetTrainerFinetuneAdamW(nnUNetTrainerFinetune):
    """AdamW as nnU-Net's Primus trainers use it (lr 3e-4, weight decay 5e-2, betas 0.9/0.98)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-4
        self.weight_decay = 5e-2
        self.schedule = Schedule(self.num_epochs, self.FROZEN_EPOCHS, self.WARMUP_EPOCHS, self.initial_lr)

    def make_optimizer(self, groups: list[dict[str, t.Any]]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(groups, self.initial_lr, weight_decay=self.weight_decay, amsgrad=False,
                                 betas=(0.9, 0.98))
