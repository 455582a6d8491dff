"""Renderers of ``--fix`` results (:class:`plancheck.records.fix.FixResult`): text and JSON."""

from __future__ import annotations

import json

from plancheck.records.fix import FixOutcome, FixResult
from plancheck.options import OutputFormat
from plancheck.render.registry import register, render

__all__: list[str] = []


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


@register(FixResult, OutputFormat.TEXT)
def _fix_text(result: FixResult, verbose: bool) -> str:
    lines: list[str] = []
    if result.already_compatible:
        lines.append(
            f"ALREADY COMPATIBLE: {result.target} [{result.configuration}] loads the weights of {result.source} "
            f"[{result.source_configuration}]; nothing to change"
        )
    else:
        lines.append(
            f"FIXED ({result.strategy}): plans {result.plans_name} [{result.configuration}] load the weights of "
            f"{result.source} [{result.source_configuration}]"
        )
        lines.append(f"Plans file: {result.path or '(no path)'}")
        if result.changes:
            lines.append("Changes:")
            from plancheck.inputs.paths import format_path

            for c in result.changes:
                lines.append(f"  {format_path(c.path)}: {json.dumps(c.source)} -> {json.dumps(c.target)}")
    p = result.patch
    if p is not None:
        lines.append(
            f"Patch size: {list(p.old)} -> {list(p.new)} (divisible by {list(p.divisor)}; "
            f"bottleneck {list(p.bottleneck)},"
            f" planner minimum {p.min_bottleneck_edge})"
        )
        lines += [f"  gave up: {g}" for g in p.given_up]
        planner = p.planner.name if p.planner else "planner"
        lines.append(
            f"Memory estimate: {_fmt(p.memory_old)} -> {_fmt(p.memory_new)} (reference {_fmt(p.memory_reference)}, "
            f"{planner})"
        )
        lines.append(f"Batch size: {p.batch_size_old} -> {p.batch_size_new} ({p.batch_size_reason})")
    lines.append(f"data_identifier: {result.data_identifier_note}")
    if result.warnings:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in result.warnings]
    if verbose and (result.notes or (p is not None and p.notes)):
        lines.append("Notes:")
        lines += [f"  - {n}" for n in (*result.notes, *(p.notes if p is not None else ()))]
    lines.append("Next:")
    lines += [f"  {c}" for c in result.commands]
    return "\n".join(lines) + "\n"


@register(FixResult, OutputFormat.JSON)
def _fix_json(result: FixResult, verbose: bool) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def _outcome_text(outcome: FixOutcome, fmt: str) -> str:
    if outcome.refusal is not None:
        return (render(outcome.before, fmt, verbose=False)
                + f"\nCannot fix with plans: {outcome.refusal.message}\n{outcome.refusal.explanation}\n")
    assert outcome.fix is not None
    if outcome.after is None:
        return outcome.fix.unified_diff() + render(outcome.fix, "text") + "(dry run: nothing written)\n"
    return (render(outcome.fix, "text") + f"Wrote {outcome.written}\n"
            + "Checked again: " + render(outcome.after, "text", verbose=False).splitlines()[0] + "\n"
            + "".join(line + "\n" for line in _schedule_lines(outcome)))


def _schedule_lines(outcome: FixOutcome) -> list[str]:
    """--schedule: the fine-tuning plans written, what they freeze."""
    f = outcome.finetune
    if f is None:
        return []
    from plancheck.finetune.schedule import PLANS_KEY

    return [f"Wrote {outcome.finetune_plans}: the new plans with a '{PLANS_KEY}' entry (read back and checked): "
            f"freeze {f.freeze}, {len(f.frozen)} of the {len(f.carried)} keys nnU-Net loads fixed in the frozen "
            f"phase, carried lr ratio {f.carried_lr_ratio:g}; trainer {outcome.finetune_trainer} (plancheck "
            "trainers). Run the last command of Next: above."]


@register(FixOutcome, OutputFormat.TEXT)
def _outcome_as_text(outcome: FixOutcome, verbose: bool) -> str:
    return _outcome_text(outcome, "text")


@register(FixOutcome, OutputFormat.MARKDOWN)
def _outcome_markdown(outcome: FixOutcome, verbose: bool) -> str:
    return _outcome_text(outcome, "markdown")


@register(FixOutcome, OutputFormat.JSON)
def _outcome_json(outcome: FixOutcome, verbose: bool) -> str:
    return json.dumps(outcome.to_dict(), indent=2) + "\n"
