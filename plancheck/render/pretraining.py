"""Renderers of ``plancheck plan-pretraining`` (:class:`plancheck.records.pretraining.PretrainingPlan`): text,
Markdown and JSON."""

from __future__ import annotations

import json
import os

from plancheck.options import OutputFormat
from plancheck.records.pretraining import Group, PretrainingPlan, TargetRow
from plancheck.records.units import percent
from plancheck.render.registry import register

__all__: list[str] = []


def short(path: str) -> str:
    """A target as a reader knows it: the dataset folder and the plans file."""
    parts = path.replace(os.sep, "/").rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else path


def headline(plan: PretrainingPlan) -> str:
    per = ", ".join(f"{c}: {plan.distinct.get(c, 0)} distinct network{'s' if plan.distinct.get(c, 0) != 1 else ''}"
                    f" -> {plan.pretrainings(c)} pretraining{'s' if plan.pretrainings(c) != 1 else ''}"
                    for c in plan.configurations)
    served = sum(r.targeted_share is not None for r in plan.rows)
    applicable = sum(r.not_applicable is None for r in plan.rows)
    limit = f", at most {plan.max_pretrainings} asked" if plan.max_pretrainings is not None else ""
    return (f"Pretraining {plan.source} ({plan.source_plans_name}) for {applicable} target row"
            f"{'s' if applicable != 1 else ''}: {per}{limit}; {served} of {applicable} served by a verified "
            "pretraining")


def pretraining_line(group: Group, dry_run: bool) -> str:
    p = group.pretraining
    if p is None:
        return f"no pretraining plans: {group.refusal}"
    if p.already_compatible:
        return f"the pretraining dataset's own plans ({p.plans_name}), unchanged: its network is this one"
    state = ("planned (dry run: not written)" if dry_run else "written, read back" if group.written
             else "not written")
    patch = ""
    if p.patch is not None and p.patch.old != p.patch.new:
        patch = f"; patch {'x'.join(map(str, p.patch.old))} -> {'x'.join(map(str, p.patch.new))}"
    return (f"{p.path} ({state}; loads into all {len(group.served)} target{'s' if len(group.served) != 1 else ''}; "
            f"{len(p.changes)} plans change{'s' if len(p.changes) != 1 else ''}{patch}; data_identifier: "
            f"{'kept' if p.data_identifier_kept else 'new'})")


def row_cells(r: TargetRow) -> list[str]:
    if r.not_applicable:
        return [short(r.target), r.configuration, "—", "not applicable", "", "", r.not_applicable]
    if r.error:
        return [short(r.target), r.configuration, "—", "error", "", "", r.error]
    as_is = ("loads" if r.as_is_loads else "no") + ("" if r.as_is_share is None else f" ({percent(r.as_is_share)})")
    transfer = "—" if r.transfer_share is None else percent(r.transfer_share)
    unified = "—" if r.unified is None else r.unified.describe()
    targeted = ("—" if r.group is None else f"group {r.group}" + (" (merged)" if r.merged else "")
                + ("" if r.targeted_share is not None else ": none"))
    return [short(r.target), r.configuration, targeted, as_is, transfer, unified, ""]


HEADERS = ["target", "configuration", "targeted pretraining", "source's network as is", "transfer (adapt)",
           "unified to the source's network (--fix)", "note"]


def _group_lines(group: Group, dry_run: bool) -> list[str]:
    lines = [f"Group {group.number} [{group.configuration}]: {group.architecture.describe()}",
             f"  serves: {', '.join(short(t) for t in group.targets)}"]
    for m in group.merged:
        lines.append(f"  merged: {short(m.target)} (its own network: distinct network {m.own_group}): "
                     f"{m.unified.describe()}"
                     + ("" if m.unified.fix is None else f" -> plans {m.unified.fix.plans_name}"))
    lines.append(f"  pretraining plans: {pretraining_line(group, dry_run)}")
    if group.commands:
        lines.append("  commands (FOLD: your choice; -device cpu on a machine without CUDA):")
        lines += [f"    {c}" for c in group.commands]
    return lines


@register(PretrainingPlan, OutputFormat.TEXT)
def _text(plan: PretrainingPlan, verbose: bool) -> str:
    from tabulate import tabulate

    lines = [headline(plan), ""]
    for group in plan.groups:
        lines += _group_lines(group, plan.dry_run) + [""]
    lines += ["Targets:", tabulate([row_cells(r) for r in plan.rows], headers=HEADERS, disable_numparse=True)]
    if plan.notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in plan.notes)]
    if plan.dry_run:
        lines += ["", "(dry run: no plans written)"]
    return "\n".join(lines) + "\n"


@register(PretrainingPlan, OutputFormat.MARKDOWN)
def _markdown(plan: PretrainingPlan, verbose: bool) -> str:
    from tabulate import tabulate

    out = ["## plancheck plan-pretraining", "", f"**{headline(plan)}**", ""]
    for group in plan.groups:
        out += [f"### Group {group.number} [{group.configuration}]: {group.architecture.describe()}", "",
                f"- serves: {', '.join(f'`{short(t)}`' for t in group.targets)}"]
        out += [f"- merged: `{short(m.target)}`: {m.unified.describe()}" for m in group.merged]
        out += [f"- pretraining plans: {pretraining_line(group, plan.dry_run)}", ""]
        if group.commands:
            out += ["```", *group.commands, "```", ""]
    out += ["### Targets", "", tabulate([row_cells(r) for r in plan.rows], headers=HEADERS, tablefmt="github",
                                        disable_numparse=True), ""]
    return "\n".join(out)


@register(PretrainingPlan, OutputFormat.JSON)
def _json(plan: PretrainingPlan, verbose: bool) -> str:
    return json.dumps(plan.to_dict(), indent=2) + "\n"
