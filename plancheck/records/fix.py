"""What ``--fix`` returns: the new plans, what changed, where they go, and what to run next."""

from __future__ import annotations

import difflib
import json
import typing as t
from dataclasses import dataclass

from plancheck.errors import ExitCode
from plancheck.options import FixStrategy as Strategy
from plancheck.records.base import Rendered

if t.TYPE_CHECKING:
    from plancheck.finetune.schedule import FinetunePlan
    from plancheck.network.planner import PatchDecision
    from plancheck.records.diff import PlanChange
    from plancheck.records.report import Report

__all__ = ['FixOutcome', 'FixResult', 'Refusal', 'plans_json']

Json = t.Any


def plans_json(plans: dict[str, Json]) -> str:
    """A plans file's text as nnU-Net writes it (``save_json(..., sort_keys=False)``: indent 4, file order)."""
    return json.dumps(plans, indent=4, sort_keys=False)


@dataclass(frozen=True)
class FixResult(Rendered):
    """What ``--fix`` changes, where it writes, what it cost, and what to run next."""

    strategy: Strategy
    source: str
    target: str
    source_configuration: str
    configuration: str  #: the configuration to train with the new plans
    plans_name: str
    path: str | None  #: where the new plans go (``None``: unknown, the target was a dict and no ``out``)
    old_plans: dict[str, Json]
    new_plans: dict[str, Json]
    changes: tuple[PlanChange, ...]
    data_identifier_kept: bool
    data_identifier_note: str
    patch: PatchDecision | None
    warnings: tuple[str, ...]
    commands: tuple[str, ...]
    compatible: bool  #: the new plans pass the check (nnU-Net's loader rule on meta networks)
    already_compatible: bool = False  #: nothing to fix: the target already loads the weights
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the new plans differ from the target's (no change: nothing is written)."""
        return self.new_plans != self.old_plans

    def new_text(self) -> str:
        return plans_json(self.new_plans)

    def unified_diff(self) -> str:
        """The change as a unified diff of the two plans files (both as nnU-Net writes them)."""
        old = plans_json(self.old_plans).splitlines(keepends=True)
        new = plans_json(self.new_plans).splitlines(keepends=True)
        lines = list(
            difflib.unified_diff(old, new, fromfile=self.target, tofile=self.path or f"{self.plans_name}.json")
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    def to_dict(self) -> dict[str, Json]:
        return {
            "strategy": self.strategy.value,
            "source": self.source,
            "target": self.target,
            "source_configuration": self.source_configuration,
            "configuration": self.configuration,
            "plans_name": self.plans_name,
            "path": self.path,
            "changed": self.changed,
            "already_compatible": self.already_compatible,
            "compatible": self.compatible,
            "changes": [c.to_dict() for c in self.changes],
            "data_identifier": {"kept": self.data_identifier_kept, "note": self.data_identifier_note},
            "patch": None if self.patch is None else self.patch.to_dict(),
            "warnings": list(self.warnings),
            "commands": list(self.commands),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Refusal:
    """Why plans alone cannot make the weights load, and what to do instead (:class:`~plancheck.errors.Unfixable`)."""

    message: str
    reasons: tuple[str, ...]
    options: tuple[str, ...]
    explanation: str

    def to_dict(self) -> dict[str, Json]:
        return {"message": self.message, "reasons": list(self.reasons), "options": list(self.options)}


@dataclass(frozen=True)
class FixOutcome(Rendered):
    """``check --fix`` from end to end: the check before, the fix planned, the file written, the check after.

    Exactly one of: ``refusal`` (nothing planned), ``dry_run`` (planned, nothing written), or
    ``written`` and ``after`` (the file, read back and checked before it took its name, and checked again).
    """

    before: Report
    fix: FixResult | None = None
    written: str | None = None
    after: Report | None = None
    refusal: Refusal | None = None
    dry_run: bool = False
    finetune: FinetunePlan | None = None  #: --schedule: what the fine-tuning plans carry (None: dry run, no schedule)
    finetune_plans: str | None = None  #: --schedule: the fine-tuning plans written (read back and checked)
    finetune_trainer: str | None = None  #: --schedule: the trainer the command names

    @property
    def exit_code(self) -> int:
        if self.fix is None:
            return int(ExitCode.INCOMPATIBLE)
        if self.after is None:
            return int(ExitCode.OK if self.fix.compatible else ExitCode.INCOMPATIBLE)
        return int(ExitCode.OK if self.after.compatible else ExitCode.INCOMPATIBLE)

    def to_dict(self) -> dict[str, Json]:
        out: dict[str, Json] = {
            "before": self.before.to_dict(),
            "fix": None if self.fix is None else self.fix.to_dict(),
            "written": self.written,
            "after": None if self.after is None else self.after.to_dict(),
        }
        if self.finetune_trainer is not None:
            out["schedule"] = {
                "trainer": self.finetune_trainer, "plans": self.finetune_plans,
                **({} if self.finetune is None else {
                    "freeze": self.finetune.freeze, "carried_lr_ratio": self.finetune.carried_lr_ratio,
                    "carried_keys": len(self.finetune.carried), "frozen_keys": list(self.finetune.frozen)})}
        if self.refusal is not None:
            out["unfixable"] = self.refusal.to_dict()
        elif self.dry_run and self.fix is not None:
            out["diff"] = self.fix.unified_diff()
        return out
