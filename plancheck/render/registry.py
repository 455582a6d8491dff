"""One registry of renderers, keyed by record type and format (``text``, ``json``, ``markdown``, ``html``).

A renderer is ``fn(record, verbose) -> str``, registered with :func:`register` in the module
that renders that record. :data:`MODULES` names that module for each record type, so
:func:`render` imports it on first use: no caller imports a renderer for its side effect,
and ``plancheck diff`` never imports the torch-side renderers of transfer and verify.
Records reach this module only through :meth:`plancheck.records.base.Rendered.__str__`.
"""

from __future__ import annotations

import importlib
import typing as t

from plancheck.options import OutputFormat

__all__ = ["HTML", "MODULES", "RENDERERS", "Renderer", "register", "render"]

#: The ``--html FILE`` page, a format of its own beside :class:`~plancheck.options.OutputFormat`.
HTML = "html"

Renderer = t.Callable[[t.Any, bool], str]
#: (record type, format) -> renderer(record, verbose)
RENDERERS: dict[tuple[type, str], Renderer] = {}

_HTML_PAGES = "plancheck.render.html"
#: record type (``module.QualName``) -> the modules that register its renderers: (text/json/markdown, html)
MODULES: dict[str, tuple[str, str]] = {
    "plancheck.records.report.Report": ("plancheck.render.report", _HTML_PAGES),
    "plancheck.records.diff.PlansDiff": ("plancheck.render.diff", _HTML_PAGES),
    "plancheck.records.fix.FixResult": ("plancheck.render.fix", _HTML_PAGES),
    "plancheck.records.fix.FixOutcome": ("plancheck.render.fix", _HTML_PAGES),
    "plancheck.records.matrix.Matrix": ("plancheck.render.matrix", _HTML_PAGES),
    "plancheck.records.transfer.TransferResult": ("plancheck.render.transfer", _HTML_PAGES),
    "plancheck.records.verify.VerifyResult": ("plancheck.render.verify", _HTML_PAGES),
    "plancheck.records.pretraining.PretrainingPlan": ("plancheck.render.pretraining", _HTML_PAGES),
    "plancheck.records.results.Comparison": ("plancheck.render.results", _HTML_PAGES),
    "plancheck.records.ablation.Ablation": ("plancheck.render.ablation", _HTML_PAGES),
}


def _format(fmt: str | OutputFormat) -> str:
    return HTML if fmt == HTML else OutputFormat(fmt).value


def register(record_type: type, fmt: str | OutputFormat) -> t.Callable[[Renderer], Renderer]:
    key = (record_type, _format(fmt))

    def deco(fn: Renderer) -> Renderer:
        RENDERERS[key] = fn
        return fn

    return deco


def _load(record_type: type, fmt: str) -> None:
    modules = MODULES.get(f"{record_type.__module__}.{record_type.__qualname__}")
    if modules is not None:
        importlib.import_module(modules[1] if fmt == HTML else modules[0])


def renderer_for(record_type: type, fmt: str | OutputFormat) -> Renderer | None:
    """The renderer of ``record_type`` (or of the nearest base class that has one) in ``fmt``."""
    fmt = _format(fmt)
    for klass in record_type.__mro__:
        if (klass, fmt) not in RENDERERS:
            _load(klass, fmt)
        renderer = RENDERERS.get((klass, fmt))
        if renderer is not None:
            return renderer
    return None


def render(record: t.Any, fmt: str | OutputFormat = OutputFormat.TEXT, *, verbose: bool = True) -> str:
    """``record`` as ``fmt``; :class:`TypeError` if nothing renders that type in that format."""
    renderer = renderer_for(type(record), fmt)
    if renderer is None:
        raise TypeError(f"no {_format(fmt)} renderer for {type(record).__name__}")
    return renderer(record, verbose)
