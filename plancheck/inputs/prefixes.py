"""A checkpoint's keys as nnU-Net's loader meets them: the prefixes DDP and ``torch.compile`` add, the key
each bare key was stored under, and the checkpoint's shape table."""

from __future__ import annotations

import collections
import typing as t

from plancheck.inputs.shapes import ShapeTable

if t.TYPE_CHECKING:
    from plancheck.inputs.checkpoint import Checkpoint

__all__ = ["KEY_PREFIXES", "checkpoint_shapes", "key_prefix", "raw_keys", "strip_key", "strip_prefixes"]


#: Key prefixes that DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) add outside nnU-Net.
KEY_PREFIXES = ("module.", "_orig_mod.")


def checkpoint_shapes(ckpt: Checkpoint) -> ShapeTable:
    """A checkpoint's actual tensors; keys sharing storage, offset, shape and stride are aliases."""
    return ShapeTable.from_items(
        ((key, rec.shape, (rec.storage_key, rec.storage_offset, rec.shape, rec.stride))
         for key, rec in ckpt.state_dict.items()),
        origin="checkpoint",
    )


def raw_keys(ckpt: Checkpoint, prefix: str | None) -> dict[str, str]:
    """Unprefixed key -> the key as stored in the checkpoint (the first, where prefixes collide)."""
    if not prefix:
        return {k: k for k in ckpt.state_dict}
    out: dict[str, str] = {}
    for key in ckpt.state_dict:
        out.setdefault(strip_key(key)[0], key)
    return out


def strip_key(key: str) -> tuple[str, str]:
    """(``key`` without leading DDP/compile prefixes, the prefix removed)."""
    removed = ""
    changed = True
    while changed:
        changed = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                removed += prefix
                changed = True
    return key, removed


def key_prefix(table: ShapeTable) -> str | None:
    """The prefix (``module.``, ``_orig_mod.`` or both) most keys carry, if most keys carry one."""
    removed = [strip_key(k)[1] for k in table.shapes]
    carried = [r for r in removed if r]
    if not carried or len(carried) * 2 <= len(removed):
        return None
    return collections.Counter(carried).most_common(1)[0][0]


def strip_prefixes(table: ShapeTable) -> ShapeTable:
    """The same table with ``module.``/``_orig_mod.`` stripped (the first of colliding keys wins)."""
    group_of = {key: index for index, group in enumerate(table.groups) for key in group}
    items: dict[str, tuple[str, tuple[int, ...], object]] = {}
    for key, shape in table.shapes.items():
        bare = strip_key(key)[0]
        items.setdefault(bare, (bare, shape, group_of[key]))
    return ShapeTable.from_items(items.values(), origin=f"{table.origin} (prefix stripped)")

