"""Resolve what the user named as TARGET (the fine-tuning side): a plans.json, a preprocessed dataset folder,
a trained-model folder, or a dataset ID through ``nnUNet_preprocessed``."""

from __future__ import annotations

import os
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import InputError
from plancheck.inputs.locations import (
    dataset_json_of,
    dataset_name,
    is_checkpoint_file,
    is_model_folder,
    looks_like_dataset_id,
    plans_files,
)
from plancheck.inputs.plans import DatasetJson, PlansFile, find_dataset_json, load_plans

__all__ = ["DEFAULT_PLANS_IDENTIFIER", "TARGET_KINDS", "TargetInput", "resolve_target"]

Json = t.Any
PathOrData = t.Union[str, "os.PathLike[str]", dict, PlansFile]
DEFAULT_PLANS_IDENTIFIER = "nnUNetPlans"


TARGET_KINDS = ("plans", "preprocessed-folder", "model-folder", "dataset")


@dataclass(frozen=True)
class TargetInput:
    """What TARGET turned out to be: plans and their dataset.json."""

    kind: str  #: one of :data:`TARGET_KINDS`
    label: str
    plans: PlansFile
    dataset_json: DatasetJson | None
    dataset: str | None = None
    notes: tuple[str, ...] = ()
    details: dict[str, Json] = field(default_factory=dict)


def resolve_target(
    arg: PathOrData,
    *,
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
    target_dataset_json: t.Any = None,
) -> TargetInput:
    """Find out what TARGET is: a plans.json, a preprocessed dataset folder, or a dataset ID."""
    if isinstance(arg, (dict, PlansFile)):
        plans = load_plans(arg)
        return TargetInput("plans", plans.label, plans, dataset_json_of(target_dataset_json))
    path = os.fspath(arg)
    if os.path.isdir(path):
        plans_file = os.path.join(path, f"{plans_identifier}.json")
        if os.path.isfile(plans_file):
            return _plans_target(plans_file, path, "preprocessed-folder", target_dataset_json, {"folder": path})
        if is_model_folder(path) or (
            os.path.isfile(os.path.join(path, "plans.json")) and os.path.isfile(os.path.join(path, "dataset.json"))
        ):
            return _plans_target(os.path.join(path, "plans.json"), path, "model-folder", target_dataset_json,
                                 {"folder": path})
        available = plans_files(path)
        raise InputError(
            f"is a directory without {plans_identifier}.json: a preprocessed dataset folder holds "
            f"<plans identifier>.json and dataset.json"
            + (f" (plans here: {', '.join(available)}; choose with -p)" if available else ""),
            path=path,
        )
    if os.path.isfile(path):
        if is_checkpoint_file(path):
            raise InputError(
                "is a checkpoint: TARGET is the fine-tuning side (a plans.json, a preprocessed dataset folder "
                "or a dataset ID); checkpoints go first, as SOURCE",
                path=path,
            )
        return _plans_target(path, path, "plans", target_dataset_json)
    if looks_like_dataset_id(path):
        purpose = "a target dataset ID names $nnUNet_preprocessed/DatasetNNN_Name/<plans identifier>.json"
        name, folder = dataset_name(path, var="nnUNet_preprocessed", purpose=purpose)
        plans_file = os.path.join(folder, f"{plans_identifier}.json")
        if not os.path.isfile(plans_file):
            available = plans_files(folder)
            raise InputError(
                f"dataset {path}: no {plans_identifier}.json in {folder} "
                f"(nnUNet_preprocessed={os.environ.get('nnUNet_preprocessed')}); plans here: "
                f"{', '.join(available) or 'none'}"
                + ("; choose with -p" if available else "; run nnUNetv2_plan_and_preprocess")
            )
        details = {"dataset": name, "folder": folder,
                   "resolved_through": f"nnUNet_preprocessed={os.environ.get('nnUNet_preprocessed')}"}
        target = _plans_target(plans_file, path, "dataset", target_dataset_json, details)
        from dataclasses import replace

        return replace(target, dataset=name)
    return _plans_target(path, path, "plans", target_dataset_json)


def _plans_target(plans_path: str, label: str, kind: str, dataset_json: t.Any,
                  details: dict[str, Json] | None = None) -> TargetInput:
    plans = load_plans(plans_path)
    if dataset_json is None:
        dataset_json = find_dataset_json(plans.path)
    return TargetInput(kind, label, plans, dataset_json_of(dataset_json), details=details or {})

