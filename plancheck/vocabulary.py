"""One vocabulary for every picture: what happened to a block's tensors, its colour, its legend line.

The HTML/SVG pages, the Mermaid diagram and the text legend all take their status names,
colours, marks and legend lines from here, so that every format says the same thing.
A block (a stem, stage, transposed convolution or head; see :mod:`plancheck.layout`) gets
its status from the report's rows for its tensors (:func:`block_status`): this reads the
frozen report, it never re-runs a check.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from plancheck.report import Report, Status, TensorRow

if t.TYPE_CHECKING:
    from plancheck.layout import Block

__all__ = ["BLOCK_STATUSES", "DIFF_LABELS", "BlockStatus", "block_status", "legend_text", "rows_by_key"]


@dataclass(frozen=True, slots=True)
class BlockStatus:
    name: str  #: CSS class suffix and Mermaid class name
    mark: str  #: one character drawn in the block, so the status reads without colour
    label: str  #: the legend line
    light: tuple[str, str]  #: (fill, stroke) in the light colour scheme
    dark: tuple[str, str]  #: (fill, stroke) in the dark colour scheme


# Okabe-Ito hues (distinguishable with the common colour-vision deficiencies), plus a mark each.
LOADS = BlockStatus("loads", "✓", "all tensors load", ("#d4efe3", "#007a5a"), ("#0f3b2e", "#3fcf9f"))
FAILS = BlockStatus("fails", "≠", "some tensors do not load (shape differs): nnU-Net stops",
                    ("#fde7b8", "#b36b00"), ("#4a3506", "#f0b030"))
MISSING = BlockStatus("missing", "✗", "missing in the source: nnU-Net stops", ("#f8d0c2", "#c24a00"),
                      ("#4d1f0c", "#ff8a50"))
UNUSED = BlockStatus("unused", "–", "only in the source: dropped silently", ("#e8e8e8", "#777777"),
                     ("#2c2c2c", "#9a9a9a"))
HEAD = BlockStatus("head", "↺", "segmentation head: skipped, trained anew", ("#d3e5f5", "#0062a3"),
                   ("#0c2b45", "#5fb0f0"))
UNKNOWN = BlockStatus("unknown", "?", "not in the report", ("#f4f4f4", "#aaaaaa"), ("#222222", "#777777"))

#: Every status, in legend order.
BLOCK_STATUSES: tuple[BlockStatus, ...] = (LOADS, FAILS, MISSING, UNUSED, HEAD)
BY_NAME = {s.name: s for s in (*BLOCK_STATUSES, UNKNOWN)}

#: The same colours read as a plans comparison (``plancheck diff``: no loader involved).
DIFF_LABELS = {
    "loads": "same in A and B",
    "fails": "differs between A and B in a way that changes weight shapes (features, kernel, convolutions)",
    "missing": "only in B",
    "unused": "only in A",
    "head": "segmentation head",
}


def rows_by_key(report: Report) -> dict[str, TensorRow]:
    """Every key of the report (aliases included) -> its row."""
    return {key: row for row in report.tensors for key in row.keys}


def block_status(block: Block, rows: t.Mapping[str, TensorRow], role: str) -> BlockStatus:
    """What nnU-Net's loader does with the block's tensors, seen from ``role`` ("source" or "target")."""
    mine = [rows[k] for k in block.keys if k in rows]
    if not mine:
        return HEAD if block.kind == "head" else UNKNOWN
    statuses = {r.status for r in mine}
    if block.kind == "head" or statuses == {Status.HEAD}:
        return HEAD
    if Status.MISMATCH in statuses:
        return FAILS
    if role == "target":
        if Status.MISSING in statuses:
            return MISSING if statuses <= {Status.MISSING, Status.HEAD} else FAILS
        return LOADS
    if Status.UNUSED in statuses:
        return UNUSED
    return LOADS


def legend_text(labels: t.Mapping[str, str] | None = None) -> str:
    """The legend as plain text lines (mark, name, meaning)."""
    return "\n".join(f"{s.mark} {s.name}: {(labels or {}).get(s.name, s.label)}" for s in BLOCK_STATUSES)
