"""Renderers of ``plancheck diff`` (:class:`plancheck.records.diff.PlansDiff`): text, Markdown and JSON."""

from __future__ import annotations

import json
import typing as t

from plancheck.compare.plansdiff import display_path, short_value
from plancheck.options import OutputFormat
from plancheck.records.diff import Category, ChangeKind, PlanChange, PlansDiff
from plancheck.render.registry import register

Json = t.Any


def _cell(change: PlanChange, side: str, width: int) -> str:
    if (side == "A" and change.kind == ChangeKind.ADDED) or (side == "B" and change.kind == ChangeKind.REMOVED):
        return "(absent)"
    return short_value(change.source if side == "A" else change.target, width)


def _verdict(result: PlansDiff) -> str:
    s = result.summary
    channels = sum(1 for c in result.changes if c.category is Category.IO and c.input_channels)
    if result.has_blocking:
        return (
            f"BLOCKING: {s['architecture']} architecture and {channels} input-channel difference(s); "
            "pretrained weights may not load as they are"
        )
    if s["io"]:
        return (
            f"NOT BLOCKING: no architecture or input-channel difference; {s['io']} io difference(s) in labels, "
            "regions or channel names change only the segmentation head (never loaded) or what a channel holds"
        )
    if result.changes:
        return "NOT BLOCKING: no architecture or io difference"
    return "IDENTICAL: no difference in the compared fields"


def _header(result: PlansDiff) -> list[str]:
    configs_a = ", ".join(a for a, _ in result.configurations) or "no configuration"
    configs_b = ", ".join(b for _, b in result.configurations) or "no configuration"
    return [f"A  {result.a} [{configs_a}]", f"B  {result.b} [{configs_b}]"]


def _summary_line(result: PlansDiff) -> str:
    return ", ".join(f"{n} {cat}" for cat, n in result.summary.items())


def _rows(result: PlansDiff, path_sep: str, width: int, escape: t.Callable[[str], str]) -> tuple[list[list[str]], bool]:
    has_notes = any(c.note for c in result.changes)
    rows = []
    for category, changes in result.by_category().items():
        for i, change in enumerate(changes):
            row = [
                category.value if i == 0 else "",
                escape(display_path(change, sep=path_sep)),
                escape(_cell(change, "A", width)),
                escape(_cell(change, "B", width)),
            ]
            if has_notes:
                row.append(escape(change.note))
            rows.append(row)
    return rows, has_notes


@register(PlansDiff, OutputFormat.TEXT)
def _diff_text(result: PlansDiff, verbose: bool) -> str:
    from tabulate import tabulate

    parts = ["\n".join([_verdict(result), *_header(result)])]
    rows, has_notes = _rows(result, "\n", 60, lambda s: s)
    if rows:
        headers = ["category", "path", "A", "B"] + (["note"] if has_notes else [])
        parts.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    parts.append(_summary_line(result))
    if result.notes:
        parts.append("Notes\n" + "\n".join(f"- {n}" for n in result.notes))
    return "\n\n".join(parts) + "\n"


@register(PlansDiff, OutputFormat.MARKDOWN)
def _diff_markdown(result: PlansDiff, verbose: bool) -> str:
    from tabulate import tabulate

    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    parts = ["## plancheck diff", f"**{_verdict(result)}**", "\n".join(f"- {line}" for line in _header(result))]
    rows, has_notes = _rows(result, "<br>", 80, escape)
    if rows:
        headers = ["category", "path", "A", "B"] + (["note"] if has_notes else [])
        parts.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    parts.append(_summary_line(result))
    if result.notes:
        parts.append("### Notes\n\n" + "\n".join(f"- {n}" for n in result.notes))
    return "\n\n".join(parts) + "\n"


@register(PlansDiff, OutputFormat.JSON)
def _diff_json(result: PlansDiff, verbose: bool) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"
