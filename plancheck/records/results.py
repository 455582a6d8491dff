"""What ``plancheck compare`` returns: each arm's nnU-Net results, and each arm against the baseline, paired by case."""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ExitCode
from plancheck.records.base import Rendered

__all__ = ["ArmResult", "Comparison", "Paired"]

Json = t.Any


def _num(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@dataclass(frozen=True)
class ArmResult:
    """One arm: the folds found, and its metrics (per class pooled over every case, as nnU-Net's ``mean``)."""

    name: str
    source: str  #: the RESULT given (or the manifest's folder)
    folder: str | None
    folds: tuple[str, ...]  #: folds with a summary.json
    unfinished: tuple[str, ...]  #: of those, folds without checkpoint_final.pth
    missing: tuple[str, ...]  #: folds asked for and not found
    cases: int
    labels: tuple[str, ...]
    classes: dict[str, dict[str, float]]  #: label -> metric -> mean over the cases (NaN left out, as nnU-Net)
    foreground: dict[str, float]  #: metric -> mean over the foreground classes of ``classes`` (nnU-Net's way)
    fold_dice: dict[str, float]  #: fold -> that fold's foreground mean Dice
    case_dice: dict[str, float] = field(default_factory=dict)  #: case -> foreground mean Dice of the case

    @property
    def fold_mean(self) -> float | None:
        values = [v for v in self.fold_dice.values() if not math.isnan(v)]
        return sum(values) / len(values) if values else None

    @property
    def fold_sd(self) -> float | None:
        values = [v for v in self.fold_dice.values() if not math.isnan(v)]
        if len(values) < 2:
            return None
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unfinished

    def to_dict(self) -> dict[str, Json]:
        return {
            "name": self.name,
            "source": self.source,
            "folder": self.folder,
            "folds": list(self.folds),
            "unfinished": list(self.unfinished),
            "missing": list(self.missing),
            "cases": self.cases,
            "labels": list(self.labels),
            "classes": {k: {m: _num(v) for m, v in ms.items()} for k, ms in self.classes.items()},
            "foreground": {m: _num(v) for m, v in self.foreground.items()},
            "fold_dice": {k: _num(v) for k, v in self.fold_dice.items()},
            "fold_mean_dice": self.fold_mean,
            "fold_sd_dice": self.fold_sd,
            "case_dice": {k: _num(v) for k, v in self.case_dice.items()},
        }


@dataclass(frozen=True)
class Paired:
    """One arm against the baseline: per case, the arm's foreground Dice minus the baseline's."""

    arm: str
    baseline: str
    refusal: str | None = None  #: why the two cannot be paired (other cases)
    diffs: dict[str, float] = field(default_factory=dict)  #: case -> difference (cases with a Dice on both sides)
    left_out: tuple[str, ...] = ()  #: cases without a Dice on one side (every class absent from both masks)
    better: int = 0
    worse: int = 0
    equal: int = 0
    statistic: float | None = None
    p_value: float | None = None  #: two-sided Wilcoxon signed-rank (scipy.stats.wilcoxon); None: no difference

    @property
    def mean_diff(self) -> float | None:
        return sum(self.diffs.values()) / len(self.diffs) if self.diffs else None

    @property
    def median_diff(self) -> float | None:
        if not self.diffs:
            return None
        values = sorted(self.diffs.values())
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    def to_dict(self) -> dict[str, Json]:
        return {
            "arm": self.arm,
            "baseline": self.baseline,
            "refusal": self.refusal,
            "cases": len(self.diffs),
            "left_out": list(self.left_out),
            "mean_diff": self.mean_diff,
            "median_diff": self.median_diff,
            "better": self.better,
            "worse": self.worse,
            "equal": self.equal,
            "wilcoxon": {"statistic": self.statistic, "p_value": self.p_value},
            "diffs": dict(self.diffs),
        }


@dataclass(frozen=True)
class Comparison(Rendered):
    arms: tuple[ArmResult, ...]
    baseline: str
    paired: tuple[Paired, ...]
    notes: tuple[str, ...] = ()
    manifest: str | None = None

    @property
    def exit_code(self) -> int:
        """0: every arm complete and paired with the baseline; 1: a fold missing or unfinished, or a pair refused."""
        if any(not a.complete for a in self.arms) or any(p.refusal for p in self.paired):
            return int(ExitCode.INCOMPATIBLE)
        return int(ExitCode.OK)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "plancheck_version": __version__,
            "manifest": self.manifest,
            "baseline": self.baseline,
            "arms": [a.to_dict() for a in self.arms],
            "paired": [p.to_dict() for p in self.paired],
            "notes": list(self.notes),
            "exit_code": self.exit_code,
        }
