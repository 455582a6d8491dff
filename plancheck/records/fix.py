"""What ``--fix`` returns: the new plans, what changed, where they go, and what to run next."""

from __future__ import annotations

import difflib
import json
import typing as t
from dataclasses import dataclass

from plancheck.options import FixStrategy as Strategy
from plancheck.records.base import Rendered

if t.TYPE_CHECKING:
    from plancheck.network.planner import PatchDecision
    from plancheck.records.diff import PlanChange

__all__ = ['FixResult', 'plans_json']

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
