"""Compare two shape tables with the rule of nnU-Net's ``load_pretrained_weights``.

The rule, from ``nnunetv2/run/load_pretrained_weights.py``: every key of the *target*
network's state_dict that does not contain ``.seg_layers.`` must exist in the source
weights with the same shape; the loader asserts on the first that does not, walking the
target's state_dict in order. Segmentation-head keys are skipped (re-initialised), and
source keys the target lacks are dropped without a word.
"""

from __future__ import annotations

from plancheck.records.report import FirstFailure, Status, TensorRow
from plancheck.inputs.shapes import ShapeTable, is_head

__all__ = ["compare", "first_failure", "key_status"]


def key_status(key: str, source: ShapeTable, target: ShapeTable) -> Status:
    """What nnU-Net's loader does with one raw key."""
    if is_head(key):
        return Status.HEAD
    if key not in target:
        return Status.UNUSED
    if key not in source:
        return Status.MISSING
    return Status.OK if source.shapes[key] == target.shapes[key] else Status.MISMATCH


def first_failure(source: ShapeTable, target: ShapeTable) -> FirstFailure | None:
    """The key at which nnU-Net's loader would stop, and why (``missing`` or ``shape``)."""
    for key, shape in target.shapes.items():
        if is_head(key):
            continue
        if key not in source:
            return FirstFailure(key=key, reason="missing", source_shape=None, target_shape=shape)
        if source.shapes[key] != shape:
            return FirstFailure(key=key, reason="shape", source_shape=source.shapes[key], target_shape=shape)
    return None


_SEVERITY = {Status.MISSING: 4, Status.MISMATCH: 3, Status.HEAD: 2, Status.OK: 1, Status.UNUSED: 0}


def compare(source: ShapeTable, target: ShapeTable) -> tuple[TensorRow, ...]:
    """One row per tensor: the target's tensors in state_dict order, then source-only tensors.

    A tensor's alias keys share one row. Should its keys disagree (one alias present in
    the source, another not), the row takes the status that makes nnU-Net fail.
    """
    rows: list[TensorRow] = []
    for group in target.groups:
        statuses = [key_status(k, source, target) for k in group]
        status = max(statuses, key=_SEVERITY.__getitem__)
        present = next((k for k in group if k in source), None)
        rows.append(
            TensorRow(
                keys=group,
                status=status,
                source_shape=None if present is None else source.shapes[present],
                target_shape=target.shapes[group[0]],
            )
        )
    for group in source.groups:
        only = tuple(k for k in group if k not in target)
        if not only:
            continue
        status = Status.HEAD if all(is_head(k) for k in only) else Status.UNUSED
        rows.append(TensorRow(keys=only, status=status, source_shape=source.shapes[only[0]], target_shape=None))
    return tuple(rows)
