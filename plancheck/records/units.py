"""How quantities are written (bytes, seconds), in records' messages and every renderer alike."""

from __future__ import annotations

__all__ = ["GiB", "bytes_text", "seconds_text"]

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

