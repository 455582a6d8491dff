"""State-dict shape tables: key -> shape, in state_dict order, with aliases folded.

dynamic_network_architectures registers one tensor under several keys
(``...convs.0.conv.weight`` and ``...convs.0.all_modules.0.weight``; ``encoder.*`` and
``decoder.encoder.*``). A :class:`ShapeTable` keeps every raw key (nnU-Net's loader
checks each of them) and the groups of keys that name one tensor.
"""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass

__all__ = ["SEG_HEAD_MARKER", "ShapeTable", "format_shape", "is_head", "numel"]

#: nnU-Net's loader skips every key that contains this string (``load_pretrained_weights``).
SEG_HEAD_MARKER = ".seg_layers."

Shape = tuple[int, ...]


def is_head(key: str) -> bool:
    return SEG_HEAD_MARKER in key


def numel(shape: Shape | None) -> int:
    return 0 if shape is None else math.prod(shape)


@dataclass(frozen=True)
class ShapeTable:
    """The shapes of one state_dict, and which keys are aliases of one tensor."""

    shapes: dict[str, Shape]
    groups: tuple[tuple[str, ...], ...]
    origin: str = "meta network"

    @classmethod
    def from_items(cls, items: t.Iterable[tuple[str, Shape, t.Hashable]], origin: str) -> ShapeTable:
        """Build from ``(key, shape, identity)``; keys with equal identity are aliases."""
        shapes: dict[str, Shape] = {}
        by_identity: dict[t.Hashable, list[str]] = {}
        for key, shape, identity in items:
            shapes[key] = tuple(int(s) for s in shape)
            by_identity.setdefault(identity, []).append(key)
        return cls(shapes=shapes, groups=tuple(tuple(keys) for keys in by_identity.values()), origin=origin)

    def __contains__(self, key: object) -> bool:
        return key in self.shapes

    def __len__(self) -> int:
        return len(self.shapes)

    def group_index(self) -> dict[str, tuple[str, ...]]:
        return {key: group for group in self.groups for key in group}

    def parameter_count(self) -> int:
        return sum(numel(self.shapes[group[0]]) for group in self.groups)


def format_shape(shape: Shape | None) -> str:
    """``[32, 1, 3, 3]``; ``—`` for a tensor that is absent."""
    return "—" if shape is None else "[" + ", ".join(str(s) for s in shape) + "]"

