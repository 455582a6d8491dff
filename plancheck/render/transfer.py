"""Renderers of a transfer (:class:`plancheck.records.transfer.TransferResult`): text, JSON and Markdown.

The per-part table (stem, encoder, decoder, head: the share of parameters that came from
the source) is shared by ``transfer`` and ``check --transfer``; the tensor table lists each
target tensor with its action (``copied``, ``adapted:<rule>``, ``initialised:<reason>``,
``head``) and, when aligned from another key, its source key. Every report ends with the
nnU-Net command that uses the file.
"""

from __future__ import annotations

import json
import typing as t

from plancheck.inputs.shapes import format_shape
from plancheck.options import OutputFormat
from plancheck.finetune.schedule import PLANS_KEY
from plancheck.records.transfer import TransferResult
from plancheck.records.units import percent
from plancheck.remedies.transfer_plan import Action, TensorPlan, TransferPlan
from plancheck.render.registry import register

__all__ = ["plan_markdown", "plan_text"]


def _parts_rows(plan: TransferPlan) -> list[list[str]]:
    rows = []
    for p in plan.parts:
        rows.append([str(p.part), f"{p.parameters_total:,}", f"{p.parameters_carried:,}", percent(p.share),
                     str(p.tensors_copied), str(p.tensors_adapted),
                     str(p.tensors_total - p.tensors_copied - p.tensors_adapted)])
    return rows


_PART_HEADER = ["part", "parameters", "from source", "share", "copied", "adapted", "initialised"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*r).rstrip() for r in rows)]


def _headline(plan: TransferPlan) -> str:
    if plan.refused:
        return f"TRANSFER ({plan.strategy}): nothing can be carried over: {plan.refused}"
    return (f"TRANSFER ({plan.strategy}): {percent(plan.share)} of the parameters come from the source "
            f"({plan.parameters_carried:,} of {plan.parameters_total:,}; the head is not counted)")


def plan_text(plan: TransferPlan) -> str:
    """The headline and the per-part table (what ``check --transfer`` adds to the report)."""
    lines = [_headline(plan), ""]
    lines += ["  " + line for line in _table(_PART_HEADER, _parts_rows(plan))]
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"


def plan_markdown(plan: TransferPlan) -> str:
    lines = [f"**{_headline(plan)}**", "", "| " + " | ".join(_PART_HEADER) + " |",
             "|" + "---|" * len(_PART_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _parts_rows(plan)]
    lines += ["", *(f"- {n}" for n in plan.notes)]
    return "\n".join(lines) + "\n"


def _tensor_rows(plan: TransferPlan, verbose: bool) -> list[TensorPlan]:
    if verbose:
        return list(plan.tensors)
    return [r for r in plan.tensors if r.action is not Action.COPIED]


def _row(r: TensorPlan) -> list[str]:
    aliases = f" (+{len(r.keys) - 1})" if len(r.keys) > 1 else ""
    source = r.source_key if r.source_key not in (None, r.key) else ""
    return [r.key + aliases, r.label, source or "", format_shape(r.source_shape), format_shape(r.target_shape)]


def _side(s: t.Any) -> str:
    return (f"{s.plans} ({s.kind}, {s.configuration}, {s.network_class}, {s.input_channels} input channel"
            f"{'s' if s.input_channels != 1 else ''})")


def _schedule_lines(result: TransferResult) -> list[str]:
    """--schedule: what the fine-tuning plans say, and where they are."""
    f = result.finetune
    if f is None:
        return []
    frozen_keys = set(f.frozen)
    frozen = sum(r.parameters for r in result.plan.tensors if r.carried and r.key in frozen_keys)
    where = (f"Wrote {result.finetune_plans}: the target's plans with a '{PLANS_KEY}' entry (read back and checked)"
             if result.finetune_plans else f"Fine-tuning plans (not written): the target's plans with a '{PLANS_KEY}' "
             "entry")
    return [f"{where}: "
            f"freeze {f.freeze}, {len(f.frozen)} keys ({frozen:,} parameters) fixed in the frozen phase, carried "
            f"lr ratio {f.carried_lr_ratio:g}; trainer {result.finetune_trainer} (plancheck trainers)."]


def _outcome(result: TransferResult) -> str:
    if result.plan.parameters_carried == 0:
        return "Nothing written: no tensor of the source can be carried over."
    if result.dry_run:
        return "(dry run: nothing written)"
    return (f"Wrote {result.out}: every key of the target network under 'network_weights' (read back with the safe "
            "reader and checked against the target), with a provenance record under 'plancheck_transfer'.")


@register(TransferResult, OutputFormat.TEXT)
def _text(result: TransferResult, verbose: bool) -> str:
    plan = result.plan
    lines = [_headline(plan), f"  source: {_side(result.source)}", f"  target: {_side(result.target)}", ""]
    lines += ["  " + line for line in _table(_PART_HEADER, _parts_rows(plan))]
    rows = _tensor_rows(plan, verbose)
    if rows:
        title = "Tensors" if verbose else "Tensors not copied as they are (every tensor: -v / --format json)"
        lines += ["", f"{title}:"]
        lines += ["  " + line for line in _table(["target key", "action", "source key", "source", "target"],
                                                 [_row(r) for r in rows])]
    if result.warnings:
        lines += ["", "Warnings:", *(f"  - {w}" for w in result.warnings)]
    if result.notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in result.notes)]
    lines += ["", _outcome(result), *_schedule_lines(result)]
    if result.source_sha256:
        lines.append(f"Source SHA-256: {result.source_sha256}")
    if result.plan.parameters_carried:
        lines += ["", "Then train with the pretrained weights:", f"  {result.command}"]
    return "\n".join(lines) + "\n"


@register(TransferResult, OutputFormat.MARKDOWN)
def _markdown(result: TransferResult, verbose: bool) -> str:
    plan = result.plan
    lines = [f"### {_headline(plan)}", "", f"- source: `{_side(result.source)}`",
             f"- target: `{_side(result.target)}`", "", "| " + " | ".join(_PART_HEADER) + " |",
             "|" + "---|" * len(_PART_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _parts_rows(plan)]
    rows = _tensor_rows(plan, verbose)
    if rows:
        header = ["target key", "action", "source key", "source", "target"]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(f"`{c}`" if c else "" for c in _row(r)) + " |" for r in rows]
    for title, items in (("Warnings", result.warnings), ("Notes", result.notes)):
        if items:
            lines += ["", f"**{title}**", *(f"- {x}" for x in items)]
    lines += ["", _outcome(result), *_schedule_lines(result)]
    if result.source_sha256:
        lines.append(f"Source SHA-256: `{result.source_sha256}`")
    if result.plan.parameters_carried:
        lines += ["", "```sh", result.command, "```"]
    return "\n".join(lines) + "\n"


@register(TransferResult, OutputFormat.JSON)
def _json(result: TransferResult, verbose: bool) -> str:
    return json.dumps(result.to_dict(), indent=2)
