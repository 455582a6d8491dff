"""The result records of a check: small frozen dataclasses that every renderer reads.

``Report.to_dict()`` is the stable JSON (documented in the README); ``str(report)`` is
the text report. Nothing here imports torch, click or pytest.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass, field

from plancheck.inputs.shapes import Shape, numel
from plancheck.records.base import Rendered

if t.TYPE_CHECKING:
    from plancheck.records.layout import CheckLayout

__all__ = [
    "Cause",
    "ChannelPair",
    "FirstFailure",
    "PartSummary",
    "Report",
    "RootCause",
    "SideSummary",
    "Status",
    "Summary",
    "TensorRow",
    "summarise",
]

SCHEMA_VERSION = 1
Json = t.Any


class Status(str, enum.Enum):
    """What nnU-Net's loader does with one tensor."""

    OK = "ok"  #: same shape in both: loaded
    MISMATCH = "mismatch"  #: in both, different shapes: nnU-Net asserts
    MISSING = "missing"  #: in the target, not in the source: nnU-Net asserts
    UNUSED = "unused"  #: in the source only: dropped silently
    HEAD = "head"  #: segmentation head: skipped and re-initialised

    def __str__(self) -> str:
        return self.value


#: Statuses that make nnU-Net's loader fail.
FAILING = frozenset({Status.MISMATCH, Status.MISSING})


@dataclass(frozen=True, slots=True)
class Cause:
    """One plans or dataset.json field behind a tensor's status, with both values."""

    parameter: str
    source: Json
    target: Json

    def to_dict(self) -> dict[str, Json]:
        return {"parameter": self.parameter, "source": self.source, "target": self.target}


@dataclass(frozen=True, slots=True)
class RootCause:
    """A cause and how much of the network it explains.

    ``tensors`` and ``parameters`` count the target's tensors that fail (mismatch,
    missing) and that this cause explains, each tensor once however many alias keys it
    has: the same counting as the summary's totals, so a cause never counts more than
    exists. Tensors only the source has (unused) carry the cause but are not counted.
    ``group`` holds every field of a group of fields that change together (depth, the
    network class with its own keyword arguments, a combination), with both values;
    ``cause`` then names the group.
    """

    cause: Cause
    tensors: int
    parameters: int
    note: str = ""
    group: tuple[Cause, ...] = ()

    def to_dict(self) -> dict[str, Json]:
        return {**self.cause.to_dict(), "tensors": self.tensors, "parameters": self.parameters, "note": self.note,
                "group": [c.to_dict() for c in self.group]}


@dataclass(frozen=True, slots=True)
class TensorRow:
    """One tensor (all of its alias keys) and what the loader does with it."""

    keys: tuple[str, ...]
    status: Status
    source_shape: Shape | None
    target_shape: Shape | None
    causes: tuple[Cause, ...] = ()

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def aliases(self) -> int:
        return len(self.keys) - 1

    @property
    def part(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def parameters(self) -> int:
        return numel(self.target_shape if self.target_shape is not None else self.source_shape)

    def to_dict(self) -> dict[str, Json]:
        out: dict[str, Json] = {
            "keys": list(self.keys),
            "status": self.status.value,
            "source_shape": None if self.source_shape is None else list(self.source_shape),
            "target_shape": None if self.target_shape is None else list(self.target_shape),
        }
        if self.status in (Status.MISMATCH, Status.MISSING, Status.UNUSED):
            out["causes"] = [c.to_dict() for c in self.causes]
        return out


@dataclass(frozen=True, slots=True)
class FirstFailure:
    """The key, in the target's state_dict order, at which nnU-Net's loader would assert."""

    key: str
    reason: str  # "missing" | "shape"
    source_shape: Shape | None
    target_shape: Shape | None

    def to_dict(self) -> dict[str, Json]:
        return {
            "key": self.key,
            "reason": self.reason,
            "source_shape": None if self.source_shape is None else list(self.source_shape),
            "target_shape": None if self.target_shape is None else list(self.target_shape),
        }


@dataclass(frozen=True, slots=True)
class PartSummary:
    """Loadable tensors and parameters of one top-level part of the network (encoder, decoder)."""

    name: str
    tensors_loadable: int
    tensors_total: int
    parameters_loadable: int
    parameters_total: int

    def to_dict(self) -> dict[str, int]:
        return {
            "tensors_loadable": self.tensors_loadable,
            "tensors_total": self.tensors_total,
            "parameters_loadable": self.parameters_loadable,
            "parameters_total": self.parameters_total,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts per status, and what share of the target would be loaded from the source.

    Totals count the target's tensors (each once, however many alias keys it has)
    except the segmentation head, which nnU-Net never loads.
    """

    counts: dict[str, int]
    tensors_loadable: int
    tensors_total: int
    parameters_loadable: int
    parameters_total: int
    parts: tuple[PartSummary, ...]

    @property
    def parameter_share(self) -> float:
        return self.parameters_loadable / self.parameters_total if self.parameters_total else 1.0

    def to_dict(self) -> dict[str, Json]:
        return {
            **self.counts,
            "tensors_loadable": self.tensors_loadable,
            "tensors_total": self.tensors_total,
            "parameters_loadable": self.parameters_loadable,
            "parameters_total": self.parameters_total,
            "parts": {p.name: p.to_dict() for p in self.parts},
        }


def summarise(rows: t.Sequence[TensorRow]) -> Summary:
    counts = {s.value: 0 for s in Status}
    parts: dict[str, list[int]] = {}
    for row in rows:
        counts[row.status.value] += 1
        if row.target_shape is None or row.status is Status.HEAD:
            continue
        acc = parts.setdefault(row.part, [0, 0, 0, 0])
        loadable = row.status is Status.OK
        acc[0] += loadable
        acc[1] += 1
        acc[2] += row.parameters if loadable else 0
        acc[3] += row.parameters
    part_summaries = tuple(PartSummary(name, *acc) for name, acc in parts.items())
    return Summary(
        counts=counts,
        tensors_loadable=sum(p.tensors_loadable for p in part_summaries),
        tensors_total=sum(p.tensors_total for p in part_summaries),
        parameters_loadable=sum(p.parameters_loadable for p in part_summaries),
        parameters_total=sum(p.parameters_total for p in part_summaries),
        parts=part_summaries,
    )


@dataclass(frozen=True, slots=True)
class ChannelPair:
    """One input channel position: its name (dataset.json) and normalisation scheme (plans) on each side.

    ``None`` where a side does not say (no dataset.json, or no such position).
    """

    position: int
    source_name: str | None
    target_name: str | None
    source_scheme: str | None
    target_scheme: str | None

    @property
    def differs(self) -> bool:
        """Both sides name this position and the names (case-insensitive) or the schemes differ."""
        if None in (self.source_name, self.target_name):
            return False
        assert self.source_name is not None and self.target_name is not None
        if self.source_name.casefold() != self.target_name.casefold():
            return True
        return None not in (self.source_scheme, self.target_scheme) and self.source_scheme != self.target_scheme

    def to_dict(self) -> dict[str, Json]:
        return {
            "position": self.position,
            "source": {"name": self.source_name, "scheme": self.source_scheme},
            "target": {"name": self.target_name, "scheme": self.target_scheme},
            "differs": self.differs,
        }


@dataclass(frozen=True, slots=True)
class SideSummary:
    """What was checked on one side, for the report's header."""

    role: str
    plans: str
    configuration: str
    dataset_json: str | None
    network_class: str
    input_channels: int
    input_channels_from: str
    segmentation_heads: int | None
    #: "plans", "checkpoint", "model-folder", "state-dict", "safetensors", "preprocessed-folder" or "dataset"
    kind: str = "plans"
    notes: tuple[str, ...] = ()
    #: Facts about the input beyond the plans (a checkpoint's format, container key, trainer_name,
    #: current_epoch, fold; a dataset ID's folder; the trainer that built the network). JSON values only.
    details: dict[str, Json] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Json]:
        return {
            "plans": self.plans,
            "kind": self.kind,
            "configuration": self.configuration,
            "dataset_json": self.dataset_json,
            "network_class": self.network_class,
            "input_channels": self.input_channels,
            "input_channels_from": self.input_channels_from,
            "segmentation_heads": self.segmentation_heads,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class Report(Rendered):
    """The answer to: will ``-pretrained_weights`` from the source load into the target?"""

    compatible: bool
    source: SideSummary
    target: SideSummary
    first_failure: FirstFailure | None
    tensors: tuple[TensorRow, ...]
    summary: Summary
    root_causes: tuple[RootCause, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: Both networks' stages by level, for pictures (plancheck.network.layout); not part of to_dict().
    layout: CheckLayout | None = field(default=None, compare=False, repr=False)
    #: Input channels by position, both sides (names from dataset.json, schemes from the plans).
    channels: tuple[ChannelPair, ...] = ()
    #: nnssl sources only: master's pretrained-trainer verdict (plancheck.inputs.nnssl.PretrainedTrainerVerdict)
    pretrained_trainer: t.Any = None

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "plancheck_version": __version__,
            "compatible": self.compatible,
            "configuration": {"source": self.source.configuration, "target": self.target.configuration},
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "nnunet_first_failure": None if self.first_failure is None else self.first_failure.to_dict(),
            "root_causes": [rc.to_dict() for rc in self.root_causes],
            "summary": self.summary.to_dict(),
            "warnings": list(self.warnings),
            "notes": [*self.source.notes, *self.target.notes, *self.notes],
            "channels": [c.to_dict() for c in self.channels],
            "tensors": [row.to_dict() for row in self.tensors],
            **({} if self.pretrained_trainer is None else {"pretrained_trainer": self.pretrained_trainer.to_dict()}),
        }

    def problems(self) -> tuple[TensorRow, ...]:
        return tuple(r for r in self.tensors if r.status in FAILING)
