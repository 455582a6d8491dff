"""The fine-tuning schedule: its phases, the learning rate of each epoch, and the record the plans carry.

Three phases, each a function of the epoch alone (so a resumed run, ``nnUNetv2_train ... --c``,
is in the right phase with the right learning rate without any saved scheduler state):

1. ``frozen`` (epochs ``[0, frozen_epochs)``): the frozen tensors stay fixed; the rest trains,
   its learning rate rising linearly to ``initial_lr`` (nnU-Net's ``Lin_incr_LRScheduler``).
2. ``warmup`` (the next ``warmup_epochs``): everything trains, the learning rate rising
   linearly again (as ``nnUNetTrainer_warmup`` warms up the whole network).
3. ``train`` (the rest, to ``num_epochs``): nnU-Net's poly decay,
   ``initial_lr * (1 - step / steps) ** 0.9`` (``PolyLRScheduler_offset``).

The tensors that were carried over may train at the plan's ``carried_lr_ratio`` times the
learning rate of the others (1.0: the same). The record :class:`FinetunePlan` is what ``plancheck transfer
--schedule`` writes into the plans (top-level key :data:`PLANS_KEY`) and what the trainers read.

Nothing here imports torch.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass

__all__ = ["FREEZE_CHOICES", "PLANS_KEY", "FinetunePlan", "Phase", "Schedule"]

Json = t.Any

#: The plans' top-level key holding the :class:`FinetunePlan` (nnU-Net ignores unknown top-level keys).
PLANS_KEY = "plancheck_finetune"

#: What ``transfer --schedule`` can freeze: every tensor it carried over, or the carried tensors of the
#: stem and encoder (the architecture's own ``key_to_encoder`` / ``key_to_stem``).
FREEZE_CHOICES = ("carried", "encoder")

#: poly decay's exponent, as nnU-Net's PolyLRScheduler
POLY_EXPONENT = 0.9


class Phase(str, enum.Enum):
    FROZEN = "frozen"
    WARMUP = "warmup"
    TRAIN = "train"


@dataclass(frozen=True)
class Schedule:
    """Epoch counts and learning rates of one fine-tuning run (a trainer's class attributes)."""

    num_epochs: int
    frozen_epochs: int
    warmup_epochs: int
    initial_lr: float

    def __post_init__(self) -> None:
        if self.frozen_epochs < 0 or self.warmup_epochs < 0:
            raise ValueError("phase lengths must not be negative")
        if self.frozen_epochs + self.warmup_epochs >= self.num_epochs:
            raise ValueError(f"the frozen ({self.frozen_epochs}) and warm-up ({self.warmup_epochs}) epochs leave "
                             f"no epoch of {self.num_epochs} for the decay")

    def phase_at(self, epoch: int) -> Phase:
        if epoch < self.frozen_epochs:
            return Phase.FROZEN
        if epoch < self.frozen_epochs + self.warmup_epochs:
            return Phase.WARMUP
        return Phase.TRAIN

    def first_epoch(self, phase: Phase) -> int:
        return {Phase.FROZEN: 0, Phase.WARMUP: self.frozen_epochs,
                Phase.TRAIN: self.frozen_epochs + self.warmup_epochs}[phase]

    def last_epoch(self, phase: Phase) -> int:
        """The last epoch of ``phase`` (one before its first when the phase is empty)."""
        following = {Phase.FROZEN: Phase.WARMUP, Phase.WARMUP: Phase.TRAIN}
        return (self.first_epoch(following[phase]) if phase in following else self.num_epochs) - 1

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (of the tensors that were not carried over)."""
        phase = self.phase_at(epoch)
        start = self.first_epoch(phase)
        if phase is Phase.FROZEN:
            return self.initial_lr / self.frozen_epochs * (1 + epoch)
        if phase is Phase.WARMUP:
            return self.initial_lr / self.warmup_epochs * (1 + epoch - start)
        steps = self.num_epochs - start
        return self.initial_lr * (1 - (epoch - start) / steps) ** POLY_EXPONENT

    def describe(self) -> str:
        parts = []
        for phase in Phase:
            first, last = self.first_epoch(phase), self.last_epoch(phase)
            if last >= first:
                parts.append(f"{phase.value} {first}-{last}")
        return ", ".join(parts)


@dataclass(frozen=True)
class FinetunePlan:
    """What the plans carry to the fine-tuning trainer: which tensors were carried over, which stay frozen."""

    freeze: str  #: one of FREEZE_CHOICES
    carried: tuple[str, ...]  #: state_dict keys the transfer copied or adapted from the source
    frozen: tuple[str, ...]  #: the keys fixed during the frozen phase (a subset of carried)
    carried_lr_ratio: float = 1.0
    source: str = ""  #: the transfer file the keys describe

    def to_dict(self) -> dict[str, Json]:
        return {"version": 1, "freeze": self.freeze, "carried_lr_ratio": self.carried_lr_ratio,
                "source": self.source, "carried": list(self.carried), "frozen": list(self.frozen)}

    @classmethod
    def from_dict(cls, data: t.Any) -> FinetunePlan:
        """The record from the plans' entry; ValueError naming what is wrong."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError(f"plans['{PLANS_KEY}'] is not a version-1 fine-tuning entry")
        freeze, carried, frozen = data.get("freeze"), data.get("carried"), data.get("frozen")
        if freeze not in FREEZE_CHOICES:
            raise ValueError(f"plans['{PLANS_KEY}']['freeze'] is {freeze!r}, not one of {', '.join(FREEZE_CHOICES)}")
        for name, keys in (("carried", carried), ("frozen", frozen)):
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"plans['{PLANS_KEY}']['{name}'] is not a list of state_dict keys")
        assert isinstance(carried, list) and isinstance(frozen, list)
        if not set(frozen) <= set(carried):
            raise ValueError(f"plans['{PLANS_KEY}']: frozen keys that were not carried over")
        ratio = data.get("carried_lr_ratio", 1.0)
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not ratio > 0:
            raise ValueError(f"plans['{PLANS_KEY}']['carried_lr_ratio'] must be a positive number")
        return cls(freeze=freeze, carried=tuple(carried), frozen=tuple(frozen), carried_lr_ratio=float(ratio),
                   source=str(data.get("source", "")))
