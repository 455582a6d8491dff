"""What ``plancheck plan-pretraining`` returns: the groups of targets one pretraining serves, and each target's
choices.

A :class:`Group` is a set of targets whose networks are identical (nnU-Net-built; every tensor but the
segmentation heads the same key and shape), plus the targets merged into it by ``--max-pretrainings``
(unified to its architecture as ``--fix`` does, :class:`Merge`). Its ``pretraining`` is the
``--fix`` of the pretraining dataset's plans towards that architecture. A :class:`TargetRow` is one
target's trade-off: its own plans with ``transfer``, unified to the pretraining dataset's own
network, or its group's targeted pretraining.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ExitCode
from plancheck.records.base import Rendered

if t.TYPE_CHECKING:
    from plancheck.records.fix import FixResult

__all__ = ["Architecture", "Group", "Merge", "PretrainingPlan", "TargetRow", "Unified"]

Json = t.Any


@dataclass(frozen=True, slots=True)
class Architecture:
    """A group's network, as its plans name it (the representative target's configuration)."""

    network_class: str
    input_channels: int
    n_stages: int | None
    features_per_stage: tuple[int, ...] | None
    kernel_sizes: tuple[tuple[int, ...], ...] | None
    strides: tuple[tuple[int, ...], ...] | None
    parameters: int  #: parameters of the network, segmentation heads excluded

    def describe(self) -> str:
        cls = self.network_class.rsplit(".", 1)[-1]
        stages = "?" if self.n_stages is None else str(self.n_stages)
        widths = "" if not self.features_per_stage else f", {self.features_per_stage[0]}-{self.features_per_stage[-1]}"
        return f"{cls}, {stages} stages{widths}, {self.input_channels} in, {self.parameters / 1e6:.1f} M"

    def to_dict(self) -> dict[str, Json]:
        return {
            "network_class": self.network_class,
            "input_channels": self.input_channels,
            "n_stages": self.n_stages,
            "features_per_stage": None if self.features_per_stage is None else list(self.features_per_stage),
            "kernel_sizes": None if self.kernel_sizes is None else [list(k) for k in self.kernel_sizes],
            "strides": None if self.strides is None else [list(s) for s in self.strides],
            "parameters": self.parameters,
        }


@dataclass(frozen=True)
class Unified:
    """One target unified to another network by ``--fix`` (plans planned, and written unless a dry run)."""

    fix: FixResult | None  #: None: plans cannot make it load (``refusal``)
    refusal: str | None
    parameters_own: int  #: the target's own network, heads excluded
    parameters_new: int  #: the network it is unified to

    @property
    def memory_ratio(self) -> float | None:
        p = None if self.fix is None else self.fix.patch
        if p is None or not p.memory_old or p.memory_new is None:
            return None
        return p.memory_new / p.memory_old

    def describe(self) -> str:
        if self.fix is None:
            return f"cannot: {self.refusal}"
        if self.fix.already_compatible:
            return "already loads: nothing to change"
        p = self.fix.patch
        parts = [f"{len(self.fix.changes)} plans changes"]
        if p is not None and p.old != p.new:
            parts.append(f"patch {'x'.join(map(str, p.old))} -> {'x'.join(map(str, p.new))}")
        ratio = self.memory_ratio
        if ratio is not None:
            parts.append(f"memory x{ratio:.2f}")
        parts.append(f"parameters {self.parameters_own / 1e6:.1f} M -> {self.parameters_new / 1e6:.1f} M")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Json]:
        p = None if self.fix is None else self.fix.patch
        return {
            "fixable": self.fix is not None,
            "refusal": self.refusal,
            "already_compatible": None if self.fix is None else self.fix.already_compatible,
            "plans": None if self.fix is None else self.fix.path,
            "plans_name": None if self.fix is None else self.fix.plans_name,
            "changes": None if self.fix is None else len(self.fix.changes),
            "patch_size": None if p is None else {"old": list(p.old), "new": list(p.new)},
            "memory": None if p is None else {"old": p.memory_old, "new": p.memory_new, "ratio": self.memory_ratio},
            "parameters": {"own": self.parameters_own, "new": self.parameters_new},
        }


@dataclass(frozen=True)
class Merge:
    """A target whose own network differs from its group's: unified to the group's architecture (``--fix``)."""

    target: str
    own_group: int  #: the group its own network formed before merging
    unified: Unified

    def to_dict(self) -> dict[str, Json]:
        return {"target": self.target, "own_group": self.own_group, **self.unified.to_dict()}


@dataclass(frozen=True)
class Group:
    """The targets one pretraining serves, in one configuration, and the pretraining plans that serve them."""

    number: int  #: 1-based within its configuration
    configuration: str
    targets: tuple[str, ...]  #: targets whose own networks are this architecture
    architecture: Architecture
    merged: tuple[Merge, ...] = ()
    pretraining: FixResult | None = None  #: the pretraining dataset's plans, fixed to this architecture
    refusal: str | None = None  #: why the pretraining dataset cannot be planned with it
    written: bool = False  #: the plans file was written (read back and checked)
    commands: tuple[str, ...] = ()

    @property
    def plans(self) -> str | None:
        return None if self.pretraining is None else self.pretraining.path

    @property
    def served(self) -> tuple[str, ...]:
        return self.targets + tuple(m.target for m in self.merged)

    def to_dict(self) -> dict[str, Json]:
        p = self.pretraining
        return {
            "number": self.number,
            "configuration": self.configuration,
            "targets": list(self.targets),
            "merged": [m.to_dict() for m in self.merged],
            "architecture": self.architecture.to_dict(),
            "plans": self.plans,
            "plans_name": None if p is None else p.plans_name,
            "source_plans_unchanged": None if p is None else p.already_compatible,
            "pretraining_changes": None if p is None else [
                {"path": c.path, "old": c.source, "new": c.target} for c in p.changes],
            "patch_size": None if p is None or p.patch is None else {"old": list(p.patch.old),
                                                                     "new": list(p.patch.new)},
            "refusal": self.refusal,
            "written": self.written,
            "commands": list(self.commands),
        }


@dataclass(frozen=True)
class TargetRow:
    """One target in one configuration: which group serves it, and what each route costs it."""

    target: str
    configuration: str
    group: int | None = None
    merged: bool = False
    #: the pretraining dataset's own network loads as it is (nnU-Net's loader rule)
    as_is_loads: bool | None = None
    #: share of the parameters (heads excluded) of the same key and shape in that network
    as_is_share: float | None = None
    #: share ``transfer --strategy adapt`` carries into the target's own plans from that network
    transfer_share: float | None = None
    #: ``--fix`` of the target to the pretraining dataset's own network
    unified: Unified | None = None
    #: share its group's targeted pretraining loads (1.0 when verified; None without one)
    targeted_share: float | None = None
    error: str | None = None
    not_applicable: str | None = None

    def to_dict(self) -> dict[str, Json]:
        return {
            "target": self.target,
            "configuration": self.configuration,
            "group": self.group,
            "merged": self.merged,
            "as_is_loads": self.as_is_loads,
            "as_is_share": self.as_is_share,
            "transfer_share": self.transfer_share,
            "unified": None if self.unified is None else self.unified.to_dict(),
            "targeted_share": self.targeted_share,
            "error": self.error,
            "not_applicable": self.not_applicable,
        }


@dataclass(frozen=True)
class PretrainingPlan(Rendered):
    """Every configuration's groups, and every target's row."""

    source: str
    source_plans_name: str
    configurations: tuple[str, ...]
    groups: tuple[Group, ...]
    rows: tuple[TargetRow, ...]
    preprocessing: str  #: "source" (the pretraining dataset's own) or "target" (nnU-Net's move route)
    max_pretrainings: int | None = None
    dry_run: bool = False
    notes: tuple[str, ...] = ()
    #: distinct networks per configuration before merging
    distinct: dict[str, int] = field(default_factory=dict)

    def pretrainings(self, configuration: str) -> int:
        """The pretrainings the configuration needs: its groups that have pretraining plans."""
        return sum(g.configuration == configuration and g.pretraining is not None for g in self.groups)

    @property
    def exit_code(self) -> int:
        """0: every target has a verified targeted pretraining; 1: some target has none (a group the
        pretraining dataset cannot be planned for, or a limit that cannot be met); 3: a target could not be read, or
        no row applies (every target lacks the configuration)."""
        if any(r.error for r in self.rows):
            return int(ExitCode.INPUT)
        applicable = [r for r in self.rows if r.not_applicable is None]
        if not applicable:  # nothing planned: every combination lacks the configuration on one side
            return int(ExitCode.INPUT)
        if any(r.targeted_share is None for r in applicable):
            return int(ExitCode.INCOMPATIBLE)
        if self.max_pretrainings is not None and any(
                self.pretrainings(c) > self.max_pretrainings for c in self.configurations):
            return int(ExitCode.INCOMPATIBLE)
        return int(ExitCode.OK)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "plancheck_version": __version__,
            "source": self.source,
            "source_plans_name": self.source_plans_name,
            "configurations": list(self.configurations),
            "preprocessing": self.preprocessing,
            "max_pretrainings": self.max_pretrainings,
            "dry_run": self.dry_run,
            "distinct_networks": dict(self.distinct),
            "pretrainings": {c: self.pretrainings(c) for c in self.configurations},
            "groups": [g.to_dict() for g in self.groups],
            "targets": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
            "exit_code": self.exit_code,
        }
