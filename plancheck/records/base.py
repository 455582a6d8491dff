"""What every record shares: ``str(record)`` is its text rendering, through the registry's one lazy hook."""

from __future__ import annotations

__all__ = ["Rendered"]


class Rendered:
    """Mixin of the frozen result records: ``__str__`` renders as text (torchinfo's ``repr`` idiom).

    The import is inside the method: records never import a renderer at module level.
    """

    __slots__ = ()

    def __str__(self) -> str:
        from plancheck.render.registry import render

        return render(self, "text")
