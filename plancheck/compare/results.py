"""Arms of nnU-Net results side by side: metrics as nnU-Net averages them, and paired differences per case.

- Per class: the mean of each metric over every validation case of every fold found, NaN left out
  (nnU-Net's ``np.nanmean``: a class absent from both reference and prediction has no Dice).
- Foreground: the mean over the foreground classes of those class means (nnU-Net's
  ``foreground_mean``); per fold from that fold's cases, then mean ± sd over the folds.
- Per case: the mean Dice over the foreground classes that have one. Paired with the baseline by
  case name; the case sets must be equal (the same folds of the same split), else the pair is
  refused. Wilcoxon signed-rank, two-sided, ``scipy.stats.wilcoxon`` with its defaults (zero
  differences dropped).

No torch, no nnU-Net: JSON in, numbers out.
"""

from __future__ import annotations

import math
import typing as t

from plancheck.inputs.results import Case, ResultInput
from plancheck.records.results import ArmResult, Paired

__all__ = ["arm_result", "paired"]


def _nanmean(values: t.Iterable[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _class_means(cases: t.Sequence[Case], labels: t.Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label in labels:
        metrics = sorted({m for c in cases for m in c.metrics.get(label, {})})
        out[label] = {m: _nanmean(c.metrics[label][m] for c in cases if m in c.metrics.get(label, {}))
                      for m in metrics}
    return out


def _foreground(classes: dict[str, dict[str, float]]) -> dict[str, float]:
    metrics = sorted({m for ms in classes.values() for m in ms})
    # nnU-Net's foreground_mean: np.mean over the class means (a NaN class mean makes it NaN there too)
    return {m: (sum(ms[m] for ms in classes.values()) / len(classes) if all(m in ms for ms in classes.values())
                else math.nan) for m in metrics}


def case_dice(case: Case, labels: t.Sequence[str]) -> float:
    return _nanmean(case.metrics.get(label, {}).get("Dice", math.nan) for label in labels)


def arm_result(name: str, result: ResultInput) -> ArmResult:
    labels: list[str] = []
    for fold in result.folds:
        labels += [lb for lb in fold.labels if lb not in labels]
    cases = [c for f in result.folds for c in f.cases]
    classes = _class_means(cases, labels)
    fold_dice = {f.fold: _foreground(_class_means(f.cases, labels)).get("Dice", math.nan) for f in result.folds}
    return ArmResult(
        name=name, source=result.label, folder=result.folder, folds=tuple(f.fold for f in result.folds),
        unfinished=tuple(f.fold for f in result.folds if not f.finished), missing=result.missing, cases=len(cases),
        labels=tuple(labels), classes=classes, foreground=_foreground(classes), fold_dice=fold_dice,
        case_dice={c.name: case_dice(c, labels) for c in cases})


def _names(names: t.Collection[str], n: int = 3) -> str:
    shown = sorted(names)[:n]
    return ", ".join(shown) + (f" and {len(names) - n} more" if len(names) > n else "")


def paired(arm: ArmResult, baseline: ArmResult) -> Paired:
    """``arm`` against ``baseline``, case by case (refused unless both hold the same cases)."""
    ours, theirs = set(arm.case_dice), set(baseline.case_dice)
    for side in (arm, baseline):
        if not side.folds:
            return Paired(arm.name, baseline.name, refusal=f"no results of {side.name} found (not trained, or no "
                                                            "validation summary)")
    if ours != theirs:
        only_ours, only_theirs = ours - theirs, theirs - ours
        parts = []
        if only_ours:
            parts.append(f"{len(only_ours)} case{'s' if len(only_ours) != 1 else ''} only in {arm.name} "
                         f"({_names(only_ours)})")
        if only_theirs:
            parts.append(f"{len(only_theirs)} only in {baseline.name} ({_names(only_theirs)})")
        folds = "" if arm.folds == baseline.folds else (f"; folds {','.join(arm.folds) or 'none'} against "
                                                         f"{','.join(baseline.folds) or 'none'}")
        return Paired(arm.name, baseline.name, refusal=f"the case sets differ: {'; '.join(parts)}{folds}")
    diffs: dict[str, float] = {}
    left_out = []
    for case in sorted(ours):
        a, b = arm.case_dice[case], baseline.case_dice[case]
        if math.isnan(a) or math.isnan(b):
            left_out.append(case)
        else:
            diffs[case] = a - b
    better = sum(d > 0 for d in diffs.values())
    worse = sum(d < 0 for d in diffs.values())
    statistic = p_value = None
    if better + worse:
        from scipy.stats import wilcoxon

        test = wilcoxon(list(diffs.values()))
        statistic, p_value = float(test.statistic), float(test.pvalue)
    return Paired(arm.name, baseline.name, diffs=diffs, left_out=tuple(left_out), better=better, worse=worse,
                  equal=len(diffs) - better - worse, statistic=statistic, p_value=p_value)
