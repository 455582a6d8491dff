"""nnU-Net's results, as ``plancheck compare`` reads them: trained-model folders and their ``summary.json`` files.

A RESULT is a trained-model folder (``TRAINER__PLANS__CONFIGURATION``, holding ``fold_N/``), one
``fold_N`` folder, a ``summary.json`` itself, or a dataset ID with trainer, plans and configuration,
as nnU-Net names the folder under ``$nnUNet_results``. Each fold's validation summary is
``fold_N/validation/summary.json``, written by nnU-Net's ``compute_metrics_on_folder``
(``nnunetv2.evaluation.evaluate_predictions``) at the end of training; a fold without
``checkpoint_final.pth`` did not finish.

The files are read as JSON and nothing else; a file that is not what nnU-Net writes is an
:class:`~plancheck.errors.InputError` naming it. Nothing here imports torch or nnU-Net.
"""

from __future__ import annotations

import json
import math
import os
import typing as t
from dataclasses import dataclass

from plancheck.errors import InputError

__all__ = ["Case", "FoldResult", "ResultInput", "case_name", "read_summary", "resolve_result"]

Json = t.Any


@dataclass(frozen=True)
class Case:
    """One validation case: its name (the reference file without the folder and the file ending) and its metrics."""

    name: str
    metrics: dict[str, dict[str, float]]  #: label or region key ("1", "(1, 2)") -> metric -> value (NaN kept)


@dataclass(frozen=True)
class FoldResult:
    fold: str
    summary: str | None  #: the summary.json read (None: none found)
    finished: bool  #: checkpoint_final.pth exists (a summary.json alone does not say that)
    cases: tuple[Case, ...] = ()
    labels: tuple[str, ...] = ()  #: the foreground labels or regions, as summary.json keys ("0" excluded)
    foreground_mean: dict[str, float] | None = None  #: nnU-Net's own foreground mean of this fold


@dataclass(frozen=True)
class ResultInput:
    label: str  #: what the user gave
    folder: str | None  #: the trained-model folder (None: a summary.json given alone)
    folds: tuple[FoldResult, ...]
    missing: tuple[str, ...] = ()  #: folds asked for (``folds``) with no fold folder or no summary.json


def _float(value: Json, where: str, path: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"not an nnU-Net summary.json: {where} is {type(value).__name__}, not a number", path=path)
    return float(value)


def _suffix(files: list[str]) -> str:
    """The file ending all reference files share (``.nii.gz``): the common suffix from its first dot."""
    names = [os.path.basename(f) for f in files]
    if not names:
        return ""
    common = os.path.commonprefix([n[::-1] for n in names])[::-1]
    return common[common.index("."):] if "." in common else ""


def case_name(reference_file: str, suffix: str) -> str:
    name = os.path.basename(reference_file)
    return name[: len(name) - len(suffix)] if suffix and name.endswith(suffix) else name


def read_summary(path: str) -> tuple[tuple[Case, ...], tuple[str, ...], dict[str, float]]:
    """``(cases, foreground labels, foreground_mean)`` of one summary.json, checked for nnU-Net's structure."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path=path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"not JSON: {e}", path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("metric_per_case"), list):
        raise InputError("not an nnU-Net summary.json: no 'metric_per_case' list", path=path)
    per_case = data["metric_per_case"]
    refs = []
    for i, entry in enumerate(per_case):
        if not isinstance(entry, dict) or not isinstance(entry.get("reference_file"), str) \
                or not isinstance(entry.get("metrics"), dict):
            raise InputError(f"not an nnU-Net summary.json: metric_per_case[{i}] has no reference_file and metrics",
                             path=path)
        refs.append(entry["reference_file"])
    suffix = _suffix(refs)
    cases = []
    seen: set[str] = set()
    labels: list[str] = []
    for i, entry in enumerate(per_case):
        name = case_name(entry["reference_file"], suffix)
        if name in seen:
            raise InputError(f"case {name} appears twice in metric_per_case", path=path)
        seen.add(name)
        metrics: dict[str, dict[str, float]] = {}
        for key, values in entry["metrics"].items():
            if not isinstance(values, dict):
                raise InputError(f"not an nnU-Net summary.json: metric_per_case[{i}].metrics[{key!r}] is not an "
                                 "object", path=path)
            metrics[str(key)] = {str(m): _float(v, f"metric_per_case[{i}].metrics[{key!r}][{m!r}]", path)
                                 for m, v in values.items()}
            if str(key) != "0" and str(key) not in labels:
                labels.append(str(key))
        cases.append(Case(name, metrics))
    fg = data.get("foreground_mean")
    foreground = {str(m): _float(v, f"foreground_mean[{m!r}]", path) for m, v in fg.items()} \
        if isinstance(fg, dict) else {}
    return tuple(cases), tuple(labels), foreground


def _fold(folder: str, fold_dir: str) -> FoldResult:
    name = os.path.basename(fold_dir)[len("fold_"):]
    summary = os.path.join(fold_dir, "validation", "summary.json")
    finished = os.path.isfile(os.path.join(fold_dir, "checkpoint_final.pth"))
    if not os.path.isfile(summary):
        return FoldResult(name, None, finished)
    cases, labels, foreground = read_summary(summary)
    return FoldResult(name, summary, finished, cases, labels, foreground)


def _model_folder(path: str, label: str, folds: t.Sequence[str] | None) -> ResultInput:
    from plancheck.inputs.locations import folds as fold_dirs

    present = {d[len("fold_"):]: os.path.join(path, d) for d in fold_dirs(path)}
    wanted = list(folds) if folds else list(present)
    found = [_fold(path, present[f]) for f in wanted if f in present]
    missing = [f for f in wanted if f not in present] + [r.fold for r in found if r.summary is None]
    return ResultInput(label, path, tuple(r for r in found if r.summary is not None), tuple(missing))


def resolve_result(arg: str, *, folds: t.Sequence[str] | None = None, trainer: str = "nnUNetTrainer",
                   plans_identifier: str = "nnUNetPlans", configuration: str = "3d_fullres") -> ResultInput:
    """One RESULT (see the module's description); ``folds`` the folds to look for (default: those present)."""
    path = os.fspath(arg)
    if os.path.isfile(path):
        fold_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        fold = os.path.basename(fold_dir)[len("fold_"):] if os.path.basename(fold_dir).startswith("fold_") else "?"
        cases, labels, foreground = read_summary(path)
        finished = os.path.isfile(os.path.join(fold_dir, "checkpoint_final.pth"))
        return ResultInput(arg, None, (FoldResult(fold, path, finished, cases, labels, foreground),))
    if os.path.isdir(path):
        if os.path.basename(os.path.normpath(path)).startswith("fold_"):
            one = _fold(os.path.dirname(path), os.path.normpath(path))
            if one.summary is None:
                raise InputError("no validation/summary.json in this fold folder (training not finished, or its "
                                 "validation not run)", path=path)
            return ResultInput(arg, os.path.dirname(os.path.normpath(path)), (one,))
        from plancheck.inputs.locations import folds as fold_dirs

        if not fold_dirs(path):
            raise InputError("not a trained-model folder: no fold_N folder (give TRAINER__PLANS__CONFIGURATION, a "
                             "fold_N folder or a summary.json)", path=path)
        return _model_folder(path, arg, folds)
    from plancheck.inputs.locations import dataset_name, looks_like_dataset_id

    if looks_like_dataset_id(path):
        _, folder = dataset_name(path, var="nnUNet_results", purpose="trained models")
        model = os.path.join(folder, f"{trainer}__{plans_identifier}__{configuration}")
        if not os.path.isdir(model):
            raise InputError(f"dataset {arg}: no {os.path.basename(model)} under {folder} (choose with -tr, -p, -c)")
        return _model_folder(model, arg, folds)
    raise InputError("no such file or folder", path=path)
