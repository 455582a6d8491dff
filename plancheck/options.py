"""The choices a caller names by string: output formats and the strategies of ``--fix`` and ``transfer``.

Each is a ``str`` enum, so ``"json"`` and ``OutputFormat.JSON`` are the same key and the same value.
"""

from __future__ import annotations

import enum

__all__ = ["FixStrategy", "OutputFormat", "TransferStrategy"]


class OutputFormat(str, enum.Enum):
    """``--format``: what every record renders to on stdout (HTML is ``--html FILE``)."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"

    def __str__(self) -> str:
        return self.value


class FixStrategy(str, enum.Enum):
    """How ``--fix`` makes the weights load."""

    ARCHITECTURE = "architecture"  #: the source's network in the target's plans
    MOVE = "move"  #: the source's whole plans, moved to the target dataset (nnU-Net's move)

    def __str__(self) -> str:
        return self.value


class TransferStrategy(str, enum.Enum):
    """What ``transfer`` carries: only exact-shape tensors, the encoder, or adapted tensors too."""

    EXACT = "exact"
    ENCODER = "encoder"
    ADAPT = "adapt"

    def __str__(self) -> str:
        return self.value

