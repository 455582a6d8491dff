"""Renderers: text, JSON and Markdown, all reading the same result records.

A new format is one function in :data:`RENDERERS`. Each renderer takes a result that
has ``to_dict()`` and is registered for its type (a check :class:`~plancheck.records.report.Report`
here; later modules register their own results through :func:`register`).
"""

from __future__ import annotations

import json
import typing as t

from plancheck.options import OutputFormat
from plancheck.records.report import Report, Status, TensorRow
from plancheck.records.units import percent, share_text
from plancheck.render.registry import RENDERERS, register, render
from plancheck.inputs.shapes import format_shape

# register and render: from plancheck.render.registry, kept here for old imports
__all__ = ["OutputFormat", "RENDERERS", "format_shape", "percent", "register", "render", "short_parameter"]


def format_value(value: t.Any) -> str:
    if value is None:
        return "—"
    return json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value


#: Widest value shown whole in a root-cause cell; wider ones are summarised (the JSON keeps them whole).
CELL_WIDTH = 40


def summarise_value(value: t.Any, other: t.Any = None, *, noun: str = "entries", width: int = CELL_WIDTH) -> str:
    """A value for a table cell: whole when it fits ``width``, else a summary ("13 labels, same").

    ``other`` is the value on the other side: equal values say so, since a summary alone
    would hide it.
    """
    text = format_value(value)
    if len(text) <= width:
        return text
    same = ", same" if value == other else ""
    if isinstance(value, dict):
        return f"{len(value)} {noun}{same}"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} values{same}"
    if isinstance(value, str):  # a class path: as many of its last components as fit
        parts = text.split(".")
        shown = parts[-1]
        for part in reversed(parts[:-1]):
            if len(part) + 1 + len(shown) + 1 > width:
                break
            shown = f"{part}.{shown}"
        return "…" + shown[-(width - 1):]
    return text[: width - 1] + "…"


@register(Report, OutputFormat.JSON)
def _report_json(report: Report, verbose: bool) -> str:
    return json.dumps(report.to_dict(), indent=2)


def _verdict_line(report: Report) -> str:
    if report.compatible:
        return "COMPATIBLE: nnU-Net's load_pretrained_weights would load these weights"
    ff = report.first_failure
    assert ff is not None
    if ff.reason == "missing":
        why = "missing in the source"
    elif ff.reason == "container":
        return ("INCOMPATIBLE: nnU-Net's load_pretrained_weights would fail before comparing any key: "
                "the file has no 'network_weights' (see Root causes)")
    else:
        why = f"shape: source {format_shape(ff.source_shape)}, target {format_shape(ff.target_shape)}"
    return f"INCOMPATIBLE: nnU-Net's load_pretrained_weights would stop at {ff.key} ({why})"


def _side_line(side: t.Any) -> str:
    heads = "head unknown" if side.segmentation_heads is None else f"{side.segmentation_heads} heads"
    channels = f"{side.input_channels} input channel{'s' if side.input_channels != 1 else ''}"
    return (
        f"{side.plans} [{side.configuration}]: {side.network_class}, {channels} "
        f"(from {side.input_channels_from}), {heads}"
    )


#: Side details shown in the text header, in this order (every detail is in the JSON).
_SIDE_FACTS = ("dataset", "format", "container_key", "trainer_name", "current_epoch", "fold", "network_built_by")
_SIDE_PATHS = ("checkpoint", "model_folder", "folder")


def _side_facts(side: t.Any) -> str:
    """One line of what a non-plans side is (checkpoint facts, the dataset folder), or ""."""
    details = getattr(side, "details", None) or {}
    facts = [
        f"{key.replace('_', ' ')} {details[key]}"
        for key in _SIDE_FACTS
        if details.get(key) not in (None, "")
        and not (key == "network_built_by" and str(details[key]).startswith("get_network_from_plans"))
    ]
    if side.kind == "plans" and not facts:
        return ""
    where = next((details[k] for k in _SIDE_PATHS if details.get(k)), None)
    lead = side.kind if where is None else f"{side.kind} {where}"
    return lead + (f" ({', '.join(facts)})" if facts else "")


def _sides_block(report: Report) -> str:
    lines = []
    for role, side in (("source", report.source), ("target", report.target)):
        lines.append(f"{role}  {_side_line(side)}")
        facts = _side_facts(side)
        if facts:
            lines.append(f"        {facts}")
    return "\n".join(lines)


def _load_lines(report: Report) -> list[tuple[str, str, str]]:
    s = report.summary
    rows = [
        (
            "all",
            f"{s.tensors_loadable} of {s.tensors_total} tensors ({share_text(s.tensors_loadable, s.tensors_total)})",
            f"{s.parameters_loadable:,} of {s.parameters_total:,} parameters "
            f"({share_text(s.parameters_loadable, s.parameters_total)})",
        )
    ]
    for p in s.parts:
        rows.append(
            (
                p.name,
                f"{p.tensors_loadable} of {p.tensors_total} tensors "
                f"({share_text(p.tensors_loadable, p.tensors_total)})",
                f"{p.parameters_loadable:,} of {p.parameters_total:,} parameters "
                f"({share_text(p.parameters_loadable, p.parameters_total)})",
            )
        )
    return rows


def _tensor_rows(report: Report, verbose: bool) -> list[TensorRow]:
    rows = list(report.tensors)
    if not verbose:
        rows = [r for r in rows if r.status not in (Status.OK, Status.HEAD)]
    return rows


def short_parameter(parameter: str) -> str:
    """``configurations.3d_fullres.architecture.arch_kwargs.strides[4]`` -> ``strides[4]`` (full paths: Root causes)."""
    marker = ".arch_kwargs."
    if parameter.startswith("configurations.") and marker in parameter:
        return parameter.split(marker, 1)[1]
    return parameter


def _cause_text(row: TensorRow) -> str:
    names = [short_parameter(c.parameter) for c in row.causes]
    if len(names) > 2:
        return f"{names[0]} (+{len(names) - 1} changing with it)"
    return ", ".join(names)


def _report_sections(report: Report, verbose: bool, fmt: str) -> list[tuple[str, str]]:
    from tabulate import tabulate

    sections: list[tuple[str, str]] = []
    sections.append(("", _verdict_line(report)))
    sections.append(("", _sides_block(report)))
    if report.root_causes:
        nouns = ["labels" if "labels" in rc.cause.parameter else
                 "channels" if rc.cause.parameter.startswith(("dataset.json:channel_names", "dataset.json:modality"))
                 else "entries" for rc in report.root_causes]
        table = [
            (
                rc.cause.parameter,
                summarise_value(rc.cause.source, rc.cause.target, noun=noun),
                summarise_value(rc.cause.target, rc.cause.source, noun=noun),
                rc.tensors,
                f"{rc.parameters:,}",
                rc.note,
            )
            for rc, noun in zip(report.root_causes, nouns)
        ]
        sections.append(
            (
                "Root causes",
                tabulate(table, headers=["parameter", "source", "target", "tensors", "parameters", "note"],
                         tablefmt=fmt, disable_numparse=True),
            )
        )
    load = tabulate(_load_lines(report), tablefmt=fmt if fmt == "github" else "plain",
                    headers=["part", "tensors", "parameters"] if fmt == "github" else ())
    heads = report.summary.counts.get(Status.HEAD.value, 0)
    if heads:
        load += (f"\n\nSegmentation head: {heads} tensor{'s' if heads != 1 else ''} (.seg_layers.), "
                 "skipped by nnU-Net and trained anew")
    sections.append(("Would load", load))
    nnssl = _nnssl_section(report)
    if nnssl:
        sections.append(("nnssl pretraining checkpoint", nnssl))
    if report.warnings:
        sections.append(("Warnings", "\n".join(f"- {w}" for w in report.warnings)))
    notes = [*report.source.notes, *report.target.notes, *report.notes]
    if notes:
        sections.append(("Notes", "\n".join(f"- {n}" for n in notes)))
    rows = _tensor_rows(report, verbose)
    has_causes = any(r.causes for r in rows)
    table = []
    for r in rows:
        line = [r.status.value, r.key, r.aliases or "", format_shape(r.source_shape), format_shape(r.target_shape)]
        if has_causes:
            line.append(_cause_text(r))
        table.append(line)
    headers = ["status", "key", "aliases", "source shape", "target shape"] + (["cause"] if has_causes else [])
    title = "Tensors" if verbose else "Tensors that do not load (all others: ok, or the head)"
    if table:
        sections.append((title, tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)))
    return sections


def _nnssl_section(report: Report) -> str:
    """What an nnssl checkpoint is, master's pretrained-trainer verdict, and what to cite."""
    facts = report.source.details.get("nnssl")
    verdict = report.pretrained_trainer
    if not facts:
        return ""
    lines = [
        f"architecture {facts['architecture']}, pretrained at patch size {format_value(facts['pretrain_patch_size'])}, "
        f"spacing {format_value(facts['pretrain_spacing'])} ({facts['pretrain_configuration']}), "
        f"{facts['pretrain_num_input_channels']} input channel(s); recommended fine-tuning patch size "
        f"{format_value(facts['recommended_downstream_patchsize'])}",
        "nnU-Net's -pretrained_weights loader (whole network): "
        + ("loads" if report.compatible else "does not load (see above)"),
    ]
    if verdict is not None:
        what = f"{verdict.encoder_tensors} encoder and {verdict.stem_tensors} stem tensors"
        lines.append(
            "nnU-Net master's PretrainedTrainer (encoder and stem only): "
            + (f"loads ({what})" if verdict.loads else f"does not load: {verdict.failure}")
        )
        lines.extend(f"  {a}" for a in verdict.adaptations)
    from plancheck.inputs.nnssl import NnsslPlan

    citations = NnsslPlan.citation_lines_of(facts.get("citations") or [])
    if citations:
        lines.append("Please cite, when you use these weights:")
        lines.extend(f"  {c}" for c in citations)
    return "\n".join(lines)


@register(Report, OutputFormat.TEXT)
def _report_text(report: Report, verbose: bool) -> str:
    parts = []
    for title, body in _report_sections(report, verbose, "simple"):
        parts.append(f"{title}\n{body}" if title else body)
    return "\n\n".join(parts) + "\n"


@register(Report, OutputFormat.MARKDOWN)
def _report_markdown(report: Report, verbose: bool) -> str:
    parts = ["## plancheck"]
    for title, body in _report_sections(report, verbose, "github"):
        if not title:
            lines = body.splitlines()
            parts.append("\n".join(f"- {line.strip()}" if len(lines) > 1 else f"**{line}**" for line in lines))
        elif title in ("Warnings", "Notes"):
            parts.append(f"### {title}\n\n{body}")
        else:
            parts.append(f"### {title}\n\n{body}")
        if title == "Would load":
            parts.extend(_mermaid_parts(report))
    return "\n\n".join(parts) + "\n"


def _mermaid_parts(report: Report) -> list[str]:
    """The two U-Nets as a Mermaid diagram (plancheck.render.mermaid), when the report has their layout."""
    from plancheck.render.mermaid import mermaid_section

    section = mermaid_section(report)
    return [] if section is None else [f"### Networks\n\n{section}"]
