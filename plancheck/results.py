"""``plancheck compare``: nnU-Net results of several arms side by side, each against the baseline.

The pipeline: **load** each RESULT (:mod:`plancheck.inputs.results`: trained-model folders,
``summary.json`` files, dataset IDs, or the arms of an ablation manifest), **compare**
(:mod:`plancheck.compare.results`: metrics as nnU-Net averages them, paired differences per
case, Wilcoxon), and return a :class:`~plancheck.records.results.Comparison` that every renderer
reads. Missing folds and unfinished runs are listed, never averaged in silently.
"""

from __future__ import annotations

import json
import os
import typing as t

from plancheck.errors import InputError, UsageError
from plancheck.records.results import Comparison

__all__ = ["Comparison", "compare_results", "read_manifest"]

Json = t.Any
MANIFEST_KEY = "plancheck_ablation"


def read_manifest(path: str) -> dict[str, Json]:
    """An ablation manifest (``plancheck ablation`` writes it), checked for the fields ``compare`` reads."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path=path) from None
    except ValueError as e:
        raise InputError(f"not JSON: {e}", path=path) from None
    if not isinstance(data, dict) or data.get(MANIFEST_KEY) != 1 or not isinstance(data.get("arms"), list):
        raise InputError(f"not a plancheck ablation manifest (no '{MANIFEST_KEY}': 1 and 'arms' list)", path=path)
    for i, arm in enumerate(data["arms"]):
        if not isinstance(arm, dict) or not isinstance(arm.get("name"), str) or \
                (arm.get("made") and not isinstance(arm.get("results_folder"), str)):
            raise InputError(f"arms[{i}] has no name (or, made, no results_folder)", path=path)
    return data


def _name_of(arg: str) -> tuple[str | None, str]:
    """``NAME=RESULT`` names an arm; otherwise the name comes from the folder."""
    if "=" in arg and not os.path.exists(arg):
        name, _, rest = arg.partition("=")
        if name and rest:
            return name, rest
    return None, arg


def _default_name(arg: str, folder: str | None) -> str:
    if folder:
        return os.path.basename(os.path.normpath(folder))
    return os.path.relpath(arg) if os.path.isfile(arg) else arg


def compare_results(
    results: t.Sequence[str] = (),
    *,
    manifest: str | None = None,
    baseline: str | None = None,
    folds: t.Sequence[str] | None = None,
    results_folder: str | None = None,
    trainer: str = "nnUNetTrainer",
    plans_identifier: str = "nnUNetPlans",
    configuration: str = "3d_fullres",
) -> Comparison:
    """Compare ``results`` (and/or the made arms of ``manifest``), each against ``baseline``.

    ``baseline``: an arm's name (default: the manifest's baseline, else the first RESULT).
    ``folds``: the folds each arm should have (default: the manifest's, else those present).
    ``results_folder``: where the manifest's arms are (default: ``$nnUNet_results``).
    ``trainer``, ``plans_identifier``, ``configuration``: for RESULTs given as dataset IDs.
    """
    from plancheck.compare.results import arm_result, paired
    from plancheck.inputs.results import ResultInput, resolve_result

    arms = []
    notes: list[str] = []
    wanted = [str(f) for f in folds] if folds else None
    default_baseline = None
    if manifest is not None:
        data = read_manifest(manifest)
        root = results_folder or os.environ.get("nnUNet_results")
        if not root:
            raise UsageError("the manifest's arms are under $nnUNet_results: set it, or pass `results_folder`")
        wanted = wanted or [str(f) for f in data.get("folds") or []] or None
        default_baseline = data.get("baseline")
        for arm in data["arms"]:
            if not arm.get("made"):
                notes.append(f"arm {arm['name']} was not made: {arm.get('reason') or 'no reason recorded'}")
                continue
            folder = os.path.join(root, arm["results_folder"])
            if os.path.isdir(folder):
                found = resolve_result(folder, folds=wanted)
            else:
                found = ResultInput(folder, folder, (), tuple(wanted or ()))
                notes.append(f"arm {arm['name']}: {folder} does not exist yet (not trained)")
            arms.append(arm_result(arm["name"], found))
    for arg in results:
        name, rest = _name_of(arg)
        found = resolve_result(rest, folds=wanted, trainer=trainer, plans_identifier=plans_identifier,
                               configuration=configuration)
        arms.append(arm_result(name or _default_name(rest, found.folder), found))
    if not arms:
        raise UsageError("compare needs at least one RESULT (or a manifest with made arms)")
    names = [a.name for a in arms]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"two arms are named {duplicates[0]}: name them NAME=RESULT")
    chosen = baseline or default_baseline or names[0]
    if chosen not in names:
        raise UsageError(f"`baseline` {chosen!r} is none of the arms ({', '.join(names)})")
    base = arms[names.index(chosen)]
    pairs = tuple(paired(a, base) for a in arms if a.name != chosen)
    for arm in arms:
        if arm.missing:
            notes.append(f"arm {arm.name}: fold{'s' if len(arm.missing) != 1 else ''} {', '.join(arm.missing)} "
                         "not found (no fold folder or no validation/summary.json): left out, not averaged in")
        if arm.unfinished:
            notes.append(f"arm {arm.name}: fold{'s' if len(arm.unfinished) != 1 else ''} "
                         f"{', '.join(arm.unfinished)} without checkpoint_final.pth (unfinished): shown, but not a "
                         "final result")
    return Comparison(arms=tuple(arms), baseline=chosen, paired=pairs, notes=tuple(notes), manifest=manifest)
