"""Renderers of ``plancheck matrix`` (:class:`plancheck.records.matrix.Matrix`): text, Markdown and JSON."""

from __future__ import annotations

import json

from plancheck.options import OutputFormat
from plancheck.records.matrix import Matrix
from plancheck.render.registry import register
from plancheck.records.units import percent


def _pct(share: float | None) -> str:
    """Rounded down as everywhere (:func:`plancheck.records.units.percent`): never 100.0% for less than all."""
    return "—" if share is None else percent(share)


def _table_rows(m: Matrix) -> list[list[str]]:
    out = []
    for r in m.rows:
        if not r.applicable:
            verdict = "not applicable"
        elif r.error:
            verdict = "error"
        elif r.compatible:
            verdict = "compatible"
        elif r.fixed_compatible:
            verdict = "fixed"
        else:
            verdict = "incompatible"
        fix = "—" if r.fixable is None else ("yes" if r.fixable else "no")
        note = r.not_applicable or r.error or r.fix_note or ""
        out.append([verdict, r.target, r.configuration, _pct(r.parameter_share), r.main_cause or "—", fix, note])
    return out


_HEADERS = ["verdict", "target", "configuration", "would load", "main root cause", "--fix can fix", "note"]


def _summary_line(m: Matrix) -> str:
    rows = m.applicable_rows
    ok = sum(r.ok for r in rows)
    na = len(m.rows) - len(rows)
    return (f"{ok} of {len(rows)} rows load{' after --fix' if m.fixed else ''}"
            f"{f' ({na} not applicable)' if na else ''}; source: {m.source}")


@register(Matrix, OutputFormat.TEXT)
def _matrix_text(m: Matrix, verbose: bool) -> str:
    from tabulate import tabulate

    return _summary_line(m) + "\n\n" + tabulate(_table_rows(m), headers=_HEADERS, disable_numparse=True) + "\n"


@register(Matrix, OutputFormat.MARKDOWN)
def _matrix_markdown(m: Matrix, verbose: bool) -> str:
    from tabulate import tabulate

    table = tabulate(_table_rows(m), headers=_HEADERS, tablefmt="github", disable_numparse=True)
    return f"## plancheck matrix\n\n**{_summary_line(m)}**\n\n{table}\n"


@register(Matrix, OutputFormat.JSON)
def _matrix_json(m: Matrix, verbose: bool) -> str:
    return json.dumps(m.to_dict(), indent=2)
