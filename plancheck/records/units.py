"""How quantities are written (shares, bytes, seconds), in records' messages and every renderer alike."""

from __future__ import annotations

import math

__all__ = ["GiB", "bytes_text", "percent", "seconds_text", "share_text"]

GiB = 2**30


def bytes_text(n: float | None) -> str:
    """``1.50 GiB``; ``—`` for unknown."""
    if n is None:
        return "—"
    for unit, size in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def seconds_text(s: float | None) -> str:
    """``2.5 min``, ``12 s``, ``0.35 s``; ``—`` for unknown."""
    if s is None:
        return "—"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s" if s < 10 else f"{s:.0f} s"


def percent(share: float) -> str:
    """A share as a percentage to 0.1, rounded down: never 100.0% for less than all.

    The one rounding of plancheck (check, matrix, transfer and the HTML pages). A tiny tolerance
    keeps exact tenths that floating point lands just below (29 / 100) at their value.
    """
    if share >= 1:
        return "100.0%"
    tenths = min(math.floor(share * 1000 + 1e-9), 999)
    return f"{tenths / 10:.1f}%"


def share_text(part: int, whole: int) -> str:
    """``part`` of ``whole`` as :func:`percent`; all of nothing is 100.0%."""
    return percent(part / whole) if whole else "100.0%"

