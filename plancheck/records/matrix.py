"""What ``plancheck matrix`` returns: one row per target and configuration."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ExitCode
from plancheck.records.base import Rendered

__all__ = ['Matrix', 'MatrixRow']

Json = t.Any


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One target and configuration: the verdict, what would load, why not, and whether --fix helps."""

    target: str
    configuration: str
    compatible: bool | None
    parameter_share: float | None = None
    main_cause: str | None = None
    fixable: bool | None = None
    fix_note: str | None = None
    fixed_path: str | None = None
    fixed_compatible: bool | None = None
    error: str | None = None
    #: The check behind the row (for the HTML page's detail); not in to_dict().
    report: t.Any = field(default=None, compare=False, repr=False)
    not_applicable: str | None = None  #: why the combination does not exist (a side lacks the configuration)

    @property
    def applicable(self) -> bool:
        return self.not_applicable is None

    @property
    def ok(self) -> bool:
        """Compatible as it is, or after the fix that was written."""
        return bool(self.compatible or self.fixed_compatible)

    def to_dict(self) -> dict[str, Json]:
        return {
            "target": self.target,
            "configuration": self.configuration,
            "compatible": self.compatible,
            "parameter_share": self.parameter_share,
            "main_cause": self.main_cause,
            "fixable": self.fixable,
            "fix_note": self.fix_note,
            "fixed_path": self.fixed_path,
            "fixed_compatible": self.fixed_compatible,
            "error": self.error,
            "applicable": self.applicable,
            "not_applicable": self.not_applicable,
        }


@dataclass(frozen=True, slots=True)
class Matrix(Rendered):
    source: str
    rows: tuple[MatrixRow, ...]
    fixed: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def applicable_rows(self) -> tuple[MatrixRow, ...]:
        """The rows whose combination exists; a combination one side lacks is neither a pass nor a failure."""
        return tuple(r for r in self.rows if r.applicable)

    @property
    def exit_code(self) -> int:
        """3 if a row could not be checked or no row applies, else 0 only if every applicable row loads."""
        rows = self.applicable_rows
        if not rows or any(r.error for r in rows):
            return int(ExitCode.INPUT)
        return int(ExitCode.OK if all(r.ok for r in rows) else ExitCode.INCOMPATIBLE)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "schema_version": 1,
            "plancheck_version": __version__,
            "source": self.source,
            "fix": self.fixed,
            "compatible": bool(self.applicable_rows) and all(r.ok and not r.error for r in self.applicable_rows),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }
