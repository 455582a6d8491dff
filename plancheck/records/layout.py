"""The layout records: a U-Net's blocks by resolution level, as pictures need them.

Frozen records with ``to_dict``; :mod:`plancheck.network.layout` makes them from a built
network or from a configuration's ``arch_kwargs``. Levels count from 0 (full resolution,
the top of the U) to ``levels - 1`` (the bottleneck).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

__all__ = ["KINDS", "Block", "CheckLayout", "NetworkLayout"]

Json = t.Any

#: Block kinds, in drawing order.
KINDS = ("stem", "encoder", "transpconv", "decoder", "head")


@dataclass(frozen=True, slots=True)
class Block:
    """One drawn element of a U-Net: a stem, an encoder or decoder stage, a transposed convolution or a head."""

    id: str  #: unique in its network: ``stem``, ``enc3``, ``up2``, ``dec1``, ``head0`` (index within its kind)
    kind: str  #: one of :data:`KINDS`
    index: int  #: index in its module list (``decoder.stages[index]``, ...)
    level: int  #: resolution level; 0 is full resolution. A transposed conv sits at the level it upsamples from
    module: str  #: qualified module name in the network (``encoder.stages.3``); "" for an arch_kwargs layout
    features: int | None  #: output channels
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    repeats: int | None  #: convolutions (``unit == "conv"``) or residual blocks (``unit == "block"``)
    unit: str = "conv"
    keys: tuple[str, ...] = ()  #: state_dict keys of this block's parameters and buffers

    @property
    def label(self) -> str:
        return {
            "stem": "stem",
            "encoder": f"encoder stage {self.index}",
            "transpconv": f"transposed conv {self.index}",
            "decoder": f"decoder stage {self.index}",
            "head": f"head {self.index}",
        }[self.kind]

    def to_dict(self) -> dict[str, Json]:
        return {
            "id": self.id,
            "kind": self.kind,
            "index": self.index,
            "level": self.level,
            "module": self.module,
            "features": self.features,
            "kernel": None if self.kernel is None else list(self.kernel),
            "stride": None if self.stride is None else list(self.stride),
            "repeats": self.repeats,
            "unit": self.unit,
            "keys": list(self.keys),
        }


@dataclass(frozen=True, slots=True)
class NetworkLayout:
    """The blocks of one U-Net, by level."""

    network_class: str
    dims: int
    levels: int  #: number of encoder stages
    blocks: tuple[Block, ...]
    from_network: bool = True  #: False: read from arch_kwargs (no keys)

    def of_kind(self, kind: str) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.kind == kind)

    def block_of_key(self) -> dict[str, Block]:
        return {key: block for block in self.blocks for key in block.keys}

    def to_dict(self) -> dict[str, Json]:
        return {
            "network_class": self.network_class,
            "dims": self.dims,
            "levels": self.levels,
            "from_network": self.from_network,
            "blocks": [b.to_dict() for b in self.blocks],
        }


@dataclass(frozen=True, slots=True)
class CheckLayout:
    """Both networks of a check (either may be None: no U-Net structure to draw)."""

    source: NetworkLayout | None
    target: NetworkLayout | None

    def to_dict(self) -> dict[str, Json]:
        return {
            "source": None if self.source is None else self.source.to_dict(),
            "target": None if self.target is None else self.target.to_dict(),
        }
