"""Render: text, JSON, Markdown, SVG, Mermaid and HTML of the records, through one registry.

``render(record, fmt)`` (:mod:`plancheck.render.registry`) finds the renderer of the record's
type and loads its module on first use.
"""

from __future__ import annotations

from plancheck.render.registry import HTML, register, render

__all__ = ["HTML", "register", "render"]
