"""What ``plancheck diff`` returns: each difference between two plans, in one category."""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass, field

from plancheck.inputs.paths import FieldPath, format_path
from plancheck.records.base import Rendered

__all__ = ['BLOCKING', 'Category', 'ChangeKind', 'PlanChange', 'PlansDiff']

Json = t.Any


class Category(str, enum.Enum):
    """What a difference does to a fine-tuning run (the order is the report order)."""

    ARCHITECTURE = "architecture"  #: weight shapes or state_dict keys change
    IO = "io"  #: input channels, labels or regions change
    PREPROCESSING = "preprocessing"  #: weights load; the network sees other data
    TRAINING = "training"  #: patch size, batch size, batch_dice, shape-neutral settings
    IDENTITY = "identity"  #: names and statistics that change nothing

    def __str__(self) -> str:
        return self.value


#: Categories whose differences make ``plancheck diff`` exit 1 (an ``io`` difference only when
#: it changes the number of input channels: see :attr:`PlanChange.blocking`).
BLOCKING = frozenset({Category.ARCHITECTURE})


class ChangeKind(str, enum.Enum):
    """What happened at a path (:func:`plancheck.compare.jsondiff.differences` yields these values)."""

    CHANGED = "changed"
    ADDED = "added"  #: only in B
    REMOVED = "removed"  #: only in A
    TYPE_CHANGED = "type_changed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class PlanChange:
    """One difference between two plans.

    ``path`` is canonical: the path in the resolved view (``configurations.<A's name>.…``
    for a configuration field, the key for a plan-wide field, ``dataset.json:…`` for a
    dataset.json field). ``source_path`` and ``target_path`` are the paths as they stand
    in file A and file B (``None`` on the side that lacks the field).
    """

    path: FieldPath
    category: Category
    kind: str
    source: Json
    target: Json
    source_path: FieldPath | None
    target_path: FieldPath | None
    note: str = ""
    #: An ``io`` difference that changes the number of input channels (the first conv's shape).
    input_channels: bool = False

    @property
    def blocking(self) -> bool:
        """The weights would not load: an architecture difference, or one that changes the input channels.

        Labels and regions change only the segmentation head, which nnU-Net never loads;
        another channel at the same position loads too (``check`` warns about it).
        """
        return self.category in BLOCKING or (self.category is Category.IO and self.input_channels)

    def to_dict(self) -> dict[str, Json]:
        return {
            "category": self.category.value,
            "path": format_path(self.path),
            "source_path": None if self.source_path is None else format_path(self.source_path),
            "target_path": None if self.target_path is None else format_path(self.target_path),
            "kind": str(self.kind),
            "source": self.source,
            "target": self.target,
            "note": self.note,
            "blocking": self.blocking,
        }


@dataclass(frozen=True)
class PlansDiff(Rendered):
    """The differences between plans A and plans B, in report order."""

    a: str
    b: str
    configurations: tuple[tuple[str, str], ...]
    changes: tuple[PlanChange, ...]
    notes: tuple[str, ...] = ()
    #: Per configuration pair, the resolved ``architecture`` of A and of B (for pictures; not in to_dict()).
    architectures: tuple[tuple[Json, Json], ...] = field(default=(), compare=False, repr=False)

    def by_category(self) -> dict[Category, tuple[PlanChange, ...]]:
        """Changes grouped by category, in :class:`Category` order; categories without changes are left out."""
        groups = {cat: tuple(c for c in self.changes if c.category is cat) for cat in Category}
        return {cat: changes for cat, changes in groups.items() if changes}

    @property
    def has_blocking(self) -> bool:
        """True when an ``architecture`` difference, or one of the input channels, exists
        (``plancheck diff`` exits 1)."""
        return any(c.blocking for c in self.changes)

    @property
    def summary(self) -> dict[str, int]:
        return {cat.value: sum(1 for c in self.changes if c.category is cat) for cat in Category}

    def to_dict(self) -> dict[str, Json]:
        return {
            "a": self.a,
            "b": self.b,
            "configurations": [{"a": a, "b": b} for a, b in self.configurations],
            "changes": [c.to_dict() for c in self.changes],
            "summary": self.summary,
            "blocking": self.has_blocking,
            "notes": list(self.notes),
        }
