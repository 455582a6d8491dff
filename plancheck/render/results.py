"""Renderers of ``plancheck compare`` (:class:`plancheck.records.results.Comparison`): text, Markdown and JSON."""

from __future__ import annotations

import json
import math

from plancheck.options import OutputFormat
from plancheck.records.results import ArmResult, Comparison, Paired
from plancheck.render.registry import register

__all__: list[str] = []


def num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def p_text(p: Paired) -> str:
    if p.refusal:
        return "—"
    if p.p_value is None:
        return "no difference"
    return f"{p.p_value:.3g}"


def labels_of(c: Comparison) -> list[str]:
    out: list[str] = []
    for arm in c.arms:
        out += [lb for lb in arm.labels if lb not in out]
    return out


def arm_row(arm: ArmResult, labels: list[str]) -> list[str]:
    folds = ",".join(arm.folds) or "none"
    if arm.missing:
        folds += f" (missing {','.join(arm.missing)})"
    if arm.unfinished:
        folds += f" (unfinished {','.join(arm.unfinished)})"
    spread = f"{num(arm.fold_mean)} ± {num(arm.fold_sd)}" if arm.fold_sd is not None else num(arm.fold_mean)
    return [arm.name, folds, str(arm.cases), spread, num(arm.foreground.get("Dice")),
            *(num(arm.classes.get(lb, {}).get("Dice")) for lb in labels)]


def paired_row(p: Paired) -> list[str]:
    if p.refusal:
        return [p.arm, "—", "—", "—", "—", f"refused: {p.refusal}"]
    left = f" ({len(p.left_out)} left out: no Dice)" if p.left_out else ""
    return [p.arm, f"{len(p.diffs)}{left}", signed(p.mean_diff), signed(p.median_diff),
            f"{p.better}/{p.worse}/{p.equal}", p_text(p)]


ARM_HEADERS = ["arm", "folds", "cases", "fold mean ± sd", "pooled"]
PAIRED_HEADERS = ["arm", "cases", "mean diff", "median diff", "better/worse/equal", "Wilcoxon p (two-sided)"]


def headline(c: Comparison) -> str:
    base = next(a for a in c.arms if a.name == c.baseline)
    return (f"{len(c.arms)} arm{'s' if len(c.arms) != 1 else ''}, baseline {c.baseline} "
            f"({len(base.folds)} fold{'s' if len(base.folds) != 1 else ''}, {base.cases} cases); foreground Dice from "
            "nnU-Net's validation summaries")


@register(Comparison, OutputFormat.TEXT)
def _text(c: Comparison, verbose: bool) -> str:
    from tabulate import tabulate

    labels = labels_of(c)
    lines = [headline(c), "",
             tabulate([arm_row(a, labels) for a in c.arms], headers=ARM_HEADERS + [f"class {lb}" for lb in labels],
                      disable_numparse=True)]
    if c.paired:
        lines += ["", f"Against {c.baseline}, paired by case (each case's foreground Dice, arm minus baseline):",
                  tabulate([paired_row(p) for p in c.paired], headers=PAIRED_HEADERS, disable_numparse=True)]
    if verbose:
        metrics = sorted({m for a in c.arms for ms in a.classes.values() for m in ms} - {"Dice"})
        for m in metrics:
            lines += ["", f"{m} per class (mean over cases):",
                      tabulate([[a.name, *(num(a.classes.get(lb, {}).get(m), 2 if m not in ("IoU",) else 4)
                                           for lb in labels)] for a in c.arms],
                               headers=["arm", *(f"class {lb}" for lb in labels)], disable_numparse=True)]
    if c.notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in c.notes)]
    return "\n".join(lines) + "\n"


@register(Comparison, OutputFormat.MARKDOWN)
def _markdown(c: Comparison, verbose: bool) -> str:
    from tabulate import tabulate

    labels = labels_of(c)
    out = ["## plancheck compare", "", f"**{headline(c)}**", "",
           tabulate([arm_row(a, labels) for a in c.arms], headers=ARM_HEADERS + [f"class {lb}" for lb in labels],
                    tablefmt="github", disable_numparse=True), ""]
    if c.paired:
        out += [f"Against `{c.baseline}`, paired by case:", "",
                tabulate([paired_row(p) for p in c.paired], headers=PAIRED_HEADERS, tablefmt="github",
                         disable_numparse=True), ""]
    out += [f"- {n}" for n in c.notes]
    return "\n".join(out) + "\n"


@register(Comparison, OutputFormat.JSON)
def _json(c: Comparison, verbose: bool) -> str:
    return json.dumps(c.to_dict(), indent=2) + "\n"
