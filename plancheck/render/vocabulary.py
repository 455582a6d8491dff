"""One vocabulary for every picture: what happened to a block's tensors, its colour, its legend line.

The HTML/SVG pages, the Mermaid diagram and the text legend all take their status names,
colours, marks and legend lines from here, so that every format says the same thing.
A block (a stem, stage, transposed convolution or head; see :mod:`plancheck.network.layout`) gets
its status from the report's rows for its tensors (:func:`block_status`): this reads the
frozen report, it never re-runs a check.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from plancheck.records.report import Report, Status, TensorRow

if t.TYPE_CHECKING:
    from plancheck.records.layout import Block

__all__ = ["ALL_STATUSES", "BLOCK_STATUSES", "DIFF_LABELS", "TRANSFER_LABELS", "TRANSFER_STATUSES", "BlockStatus",
           "block_status", "legend_text", "rows_by_key", "transfer_block_status"]


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

#: What ``plancheck transfer`` did to a block's tensors (the head and unused keep their colours).
COPIED = BlockStatus("copied", "=", "copied: every tensor carried over unchanged", ("#d4efe3", "#007a5a"),
                     ("#0f3b2e", "#3fcf9f"))
ADAPTED = BlockStatus("adapted", "~", "adapted: carried over, some tensors through a shape rule",
                      ("#f3dcea", "#a2487f"), ("#45172f", "#e58fc0"))
PARTLY = BlockStatus("partly", "½", "partly: some tensors carried over, the others not (in the target: initialised)",
                     ("#fde7b8", "#b36b00"), ("#4a3506", "#f0b030"))
INITIALISED = BlockStatus("initialised", "○", "initialised: nothing carried over, nnU-Net's own initialisation",
                          ("#f8d0c2", "#c24a00"), ("#4d1f0c", "#ff8a50"))

#: Every status of a check (and diff), in legend order.
BLOCK_STATUSES: tuple[BlockStatus, ...] = (LOADS, FAILS, MISSING, UNUSED, HEAD)
#: Every status of a transfer, in legend order: target blocks by action, source blocks carried over or not.
TRANSFER_STATUSES: tuple[BlockStatus, ...] = (COPIED, ADAPTED, PARTLY, INITIALISED, UNUSED, HEAD)
ALL_STATUSES: tuple[BlockStatus, ...] = (*BLOCK_STATUSES, COPIED, ADAPTED, PARTLY, INITIALISED)
BY_NAME = {s.name: s for s in (*ALL_STATUSES, UNKNOWN)}

#: The same colours read as a plans comparison (``plancheck diff``: no loader involved).
DIFF_LABELS = {
    "loads": "same in A and B",
    "fails": "differs between A and B in a way that changes weight shapes (features, kernel, convolutions)",
    "missing": "only in B",
    "unused": "only in A",
    "head": "segmentation head",
}

#: The labels of shared statuses as a transfer reads them.
TRANSFER_LABELS = {
    "unused": "source tensors not carried over",
    "head": "segmentation head: nnU-Net's initialisation, trained anew",
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


def transfer_block_status(block: Block, actions: t.Mapping[str, str], role: str) -> BlockStatus:
    """What a transfer did to the block's tensors.

    ``actions``: every key of the block's side that the transfer touched -> ``copied``,
    ``adapted``, ``initialised`` or ``head`` (target keys: the plan's action; source keys:
    the action of the target tensor it went into). A target block is copied, adapted, partly
    (some carried, some initialised), initialised or head; a source block whose tensors went
    nowhere is unused.
    """
    mine = [actions[k] for k in block.keys if k in actions]
    if block.kind == "head" or (mine and set(mine) == {"head"}):
        return HEAD
    if role == "source":
        if not mine:
            return UNUSED if block.keys else UNKNOWN
        used = {a for a in mine if a in ("copied", "adapted")}
        if len(mine) < len(block.keys):
            return PARTLY if used else UNUSED
        return ADAPTED if "adapted" in used else COPIED
    if not mine:
        return UNKNOWN
    carried = {a for a in mine if a in ("copied", "adapted")}
    if not carried:
        return INITIALISED
    if "initialised" in mine:
        return PARTLY
    return ADAPTED if "adapted" in carried else COPIED


def legend_text(labels: t.Mapping[str, str] | None = None,
                statuses: t.Sequence[BlockStatus] = BLOCK_STATUSES) -> str:
    """The legend as plain text lines (mark, name, meaning)."""
    return "\n".join(f"{s.mark} {s.name}: {(labels or {}).get(s.name, s.label)}" for s in statuses)
