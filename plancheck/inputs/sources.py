"""Resolve what the user named as SOURCE and TARGET into plans, a dataset.json and, for a source, weights.

SOURCE may be a plans.json, an nnU-Net checkpoint (``.pth`` with ``network_weights`` and
``init_args``), a trained-model folder (``nnUNetTrainer__nnUNetPlans__3d_fullres`` with
plans.json, dataset.json and ``fold_*/checkpoint_final.pth``), a bare state_dict or
safetensors file (with ``--source-plans``), or a dataset ID resolved through
``nnUNet_results``. TARGET may be a plans.json, a preprocessed dataset folder, or a
dataset ID resolved through ``nnUNet_preprocessed``. Kinds are told apart by content and
layout, not by file name alone.

Dataset IDs follow nnU-Net's own rule (``maybe_convert_to_dataset_name``), with the
environment read when plancheck resolves, and every failure names the environment
variable and the folder that was tried. Checkpoints are read by
:func:`plancheck.inputs.checkpoint.read_checkpoint`: shapes only, no code from the file.
Nothing here imports torch.
"""

from __future__ import annotations

import os
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import InputError, PlansError, UsageError
from plancheck.inputs.locations import (
    CHECKPOINT_NAMES,
    CHECKPOINT_SUFFIXES,
    checkpoint_in,
    dataset_json_of,
    dataset_name,
    folds,
    is_checkpoint_file,
    is_model_folder,
    looks_like_dataset_id,
    nnunet_paths,
    parse_model_folder_name,
)
from plancheck.inputs.plans import DatasetJson, PlansFile, find_dataset_json, load_dataset_json, load_plans
from plancheck.inputs.targets import DEFAULT_PLANS_IDENTIFIER, TARGET_KINDS, TargetInput, resolve_target

if t.TYPE_CHECKING:
    from plancheck.inputs.checkpoint import Checkpoint
    from plancheck.inputs.nnssl import NnsslPlan

__all__ = [
    "DEFAULT_CONFIGURATION",
    "DEFAULT_PLANS_IDENTIFIER",
    "DEFAULT_TRAINER",
    "SOURCE_KINDS",
    "SourceInput",
    "TARGET_KINDS",
    "TargetInput",
    "dataset_name",
    "looks_like_dataset_id",
    "resolve_source",
    "resolve_target",
]

Json = t.Any
PathOrData = t.Union[str, "os.PathLike[str]", dict, PlansFile]

DEFAULT_CONFIGURATION = "3d_fullres"
DEFAULT_TRAINER = "nnUNetTrainer"
SOURCE_KINDS = ("plans", "checkpoint", "model-folder", "state-dict", "safetensors", "preprocessed-folder", "nnssl")
@dataclass(frozen=True)
class SourceInput:
    """What SOURCE turned out to be, and everything the check needs from it."""

    kind: str  #: one of :data:`SOURCE_KINDS`
    label: str  #: the argument as given (a path or a dataset ID)
    plans: PlansFile
    dataset_json: DatasetJson | None
    configuration: str
    plans_from: str = "file"  #: "file" | "init_args" | "--source-plans" | "model folder"
    checkpoint: Checkpoint | None = None
    fold: str | None = None
    trainer: str | None = None  #: the trainer that produced the weights, when known
    trainer_from: str = ""  #: where ``trainer`` was read ("the checkpoint's trainer_name", ...)
    model_folder: str | None = None
    dataset: str | None = None  #: DatasetNNN_Name, for a dataset ID
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    details: dict[str, Json] = field(default_factory=dict)
    nnssl: NnsslPlan | None = None  #: an nnssl pretraining checkpoint's adaptation plan


# --------------------------------------------------------------------------- helpers


def _embedded(data: Json, label: str, what: str) -> t.Any:
    """Validate a plans or dataset.json dict from a checkpoint, with errors that name where it came from."""
    try:
        loaded = load_plans(data) if what == "plans" else load_dataset_json(data)
    except PlansError as e:
        raise PlansError(e.message, path=label) from e
    return type(loaded)(data=loaded.data, path=label)


# --------------------------------------------------------------------------- dataset IDs


# --------------------------------------------------------------------------- sources


def resolve_source(
    arg: PathOrData,
    *,
    configuration: str | None = None,
    fold: int | str | None = None,
    trainer: str | None = None,
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
    source_plans: PathOrData | None = None,
    source_dataset_json: t.Any = None,
    trust_checkpoint: bool = False,
) -> SourceInput:
    """Find out what SOURCE is and load it (a checkpoint: its shapes and embedded plans only).

    ``configuration=None`` means the checkpoint's own configuration for weights, and
    ``3d_fullres`` for plans. ``fold=None`` takes the first fold of a model folder that
    holds a checkpoint. ``trainer`` and ``plans_identifier`` select the model folder of a
    dataset ID, as ``nnUNetv2_train -tr -p`` name it.
    """
    source = _resolve_source(arg, configuration=configuration, fold=fold, trainer=trainer,
                             plans_identifier=plans_identifier, source_plans=source_plans,
                             source_dataset_json=source_dataset_json, trust_checkpoint=trust_checkpoint)
    if source.kind in ("plans", "preprocessed-folder"):
        # options that choose or read weights do nothing for plans: say so rather than ignore them
        unused = {
            "`fold`": (fold is not None, "picks the fold of a trained-model folder or source dataset ID"),
            "`source_plans`": (source_plans is not None, "gives the plans of a state_dict or safetensors SOURCE"),
            "`trust_checkpoint`": (bool(trust_checkpoint), "changes how a checkpoint is read"),
        }
        given = [f"{name} ({why})" for name, (was_given, why) in unused.items() if was_given]
        if given:
            raise UsageError(
                f"{'; '.join(given)}: {'it does' if len(given) == 1 else 'they do'} not apply to SOURCE "
                f"{source.label}, which is {'a plans file' if source.kind == 'plans' else 'a preprocessed folder'} "
                "(plans, no weights)"
            )
    return source


def _resolve_source(
    arg: PathOrData,
    *,
    configuration: str | None,
    fold: int | str | None,
    trainer: str | None,
    plans_identifier: str,
    source_plans: PathOrData | None,
    source_dataset_json: t.Any,
    trust_checkpoint: bool,
) -> SourceInput:
    fold_name = None if fold is None else str(fold)
    if isinstance(arg, (dict, PlansFile)):
        return _plans_source(arg, configuration, source_dataset_json)
    path = os.fspath(arg)
    common = dict(
        configuration=configuration,
        source_plans=source_plans,
        source_dataset_json=source_dataset_json,
        trust=trust_checkpoint,
    )
    if os.path.isdir(path):
        return _source_directory(path, fold_name, plans_identifier, **common)
    if os.path.isfile(path):
        if is_checkpoint_file(path):
            return _checkpoint_source(path, kind=None, fold=fold_name, **common)
        return _plans_source(path, configuration, source_dataset_json)
    if looks_like_dataset_id(path):
        return _source_dataset_id(path, fold_name, trainer, plans_identifier, **common)
    if path.lower().endswith(CHECKPOINT_SUFFIXES):
        from plancheck.inputs.checkpoint import read_checkpoint

        read_checkpoint(path)  # raises its "no such file" error
    return _plans_source(path, configuration, source_dataset_json)


def _plans_source(arg: PathOrData, configuration: str | None, dataset_json: t.Any, *,
                  kind: str = "plans", details: dict[str, Json] | None = None) -> SourceInput:
    plans = load_plans(arg)
    if dataset_json is None:
        dataset_json = find_dataset_json(plans.path)
    label = plans.label if not isinstance(arg, (str, os.PathLike)) else os.fspath(arg)
    return SourceInput(
        kind=kind,
        label=label,
        plans=plans,
        dataset_json=dataset_json_of(dataset_json),
        configuration=configuration or DEFAULT_CONFIGURATION,
        details=details or {},
    )


def _source_directory(path: str, fold: str | None, plans_identifier: str, **common: t.Any) -> SourceInput:
    base = os.path.basename(os.path.normpath(path))
    parent = os.path.dirname(os.path.abspath(path))
    if is_model_folder(path):
        return _model_folder_source(path, fold, **common)
    if base.startswith("fold_") and os.path.isfile(os.path.join(parent, "plans.json")):
        own = base[len("fold_"):]
        if fold is not None and fold != own:
            raise UsageError(f"`fold` {fold} contradicts the fold folder given as SOURCE ({path})")
        return _model_folder_source(parent, own, **common)
    plans_file = os.path.join(path, f"{plans_identifier}.json")
    if os.path.isfile(plans_file):
        return _plans_source(plans_file, common["configuration"], common["source_dataset_json"],
                             kind="preprocessed-folder", details={"folder": path})
    raise InputError(
        "is a directory, but neither a trained-model folder (plans.json and fold_*/checkpoint_final.pth) "
        f"nor a preprocessed dataset folder ({plans_identifier}.json and dataset.json; -p selects the plans)",
        path=path,
    )


def _model_folder_source(folder: str, fold: str | None, **common: t.Any) -> SourceInput:
    found = folds(folder)
    with_checkpoint = [f for f in found if checkpoint_in(os.path.join(folder, f))]
    shown = ", ".join(f[len("fold_"):] for f in with_checkpoint) or "none"
    if fold is not None:
        fold_dir = os.path.join(folder, f"fold_{fold}")
        if not os.path.isdir(fold_dir):
            raise InputError(f"no fold_{fold} in the model folder (folds with a checkpoint: {shown})", path=folder)
        ckpt_path = checkpoint_in(fold_dir)
        if ckpt_path is None:
            raise InputError(f"fold_{fold} holds none of {', '.join(CHECKPOINT_NAMES)}", path=folder)
    else:
        if not with_checkpoint:
            raise InputError(
                f"no fold_*/{CHECKPOINT_NAMES[0]} (or {', '.join(CHECKPOINT_NAMES[1:])}) in the model folder "
                f"(folds: {', '.join(found) or 'none'})",
                path=folder,
            )
        fold = with_checkpoint[0][len("fold_"):]
        ckpt_path = checkpoint_in(os.path.join(folder, with_checkpoint[0]))
        assert ckpt_path is not None
    notes = []
    used = os.path.basename(ckpt_path)
    if used == CHECKPOINT_NAMES[1]:
        notes.append(f"fold_{fold} has no {CHECKPOINT_NAMES[0]}: using {used}")
    source = _checkpoint_source(ckpt_path, kind="model-folder", fold=fold, model_folder=folder, notes=notes, **common)
    if used == CHECKPOINT_NAMES[2]:
        latest = (
            f"fold_{fold} has neither {CHECKPOINT_NAMES[0]} nor {CHECKPOINT_NAMES[1]}: using {used}, the weights "
            "nnUNetTrainer saves during training (training may not have finished)"
        )
        source = _replace(source, warnings=(latest, *source.warnings))
    return source


def _source_dataset_id(arg: str, fold: str | None, trainer: str | None, plans_identifier: str,
                       **common: t.Any) -> SourceInput:
    purpose = "a source dataset ID names a trained model: $nnUNet_results/DatasetNNN_Name/TRAINER__PLANS__CONFIGURATION"
    name, dataset_folder = dataset_name(arg, var="nnUNet_results", purpose=purpose)
    tr = (trainer or DEFAULT_TRAINER).rsplit(".", 1)[-1]  # a dotted --trainer names its class's folder
    configuration = common["configuration"] or DEFAULT_CONFIGURATION
    with nnunet_paths():
        from nnunetv2.utilities.file_path_utilities import get_output_folder

        folder = get_output_folder(name, tr, plans_identifier, configuration)
    if not os.path.isdir(folder):
        try:
            available = sorted(n for n in os.listdir(dataset_folder) if n.count("__") == 2)
        except OSError:
            available = []
        raise InputError(
            f"dataset {arg}: no trained model {os.path.basename(folder)}: looked for {folder} "
            f"(nnUNet_results={os.environ.get('nnUNet_results')}); available: {', '.join(available) or 'none'} "
            "(choose with -tr, -p, -c)"
        )
    common = {**common, "configuration": configuration}
    source = _model_folder_source(folder, fold, **common)
    details = {**source.details, "dataset": name, "resolved_through": f"nnUNet_results={os.environ['nnUNet_results']}"}
    return _replace(source, label=arg, dataset=name, details=details)


def _replace(source: SourceInput, **changes: t.Any) -> SourceInput:
    from dataclasses import replace

    return replace(source, **changes)


def _checkpoint_source(
    path: str,
    *,
    kind: str | None,
    fold: str | None,
    configuration: str | None,
    source_plans: PathOrData | None,
    source_dataset_json: t.Any,
    trust: bool,
    model_folder: str | None = None,
    notes: t.Sequence[str] = (),
) -> SourceInput:
    from plancheck.inputs.checkpoint import read_checkpoint  # imported only for weights: keeps `import plancheck` light

    ckpt = read_checkpoint(path, trust=trust)
    if ckpt.extras.get("nnssl_adaptation_plan") is not None and source_plans is None:
        return _nnssl_source(ckpt, path, configuration=configuration, source_dataset_json=source_dataset_json,
                             notes=notes)
    if kind is None:
        if ckpt.format == "safetensors":
            kind = "safetensors"
        elif ckpt.container_key is None or not ckpt.init_args:
            kind = "state-dict"
        else:
            kind = "checkpoint"
    init_args = ckpt.init_args or {}
    notes = list(notes)
    warnings: list[str] = []
    embedded = init_args.get("plans")
    embedded = embedded if isinstance(embedded, dict) and "configurations" in embedded else None
    folder_name = parse_model_folder_name(model_folder) if model_folder else None

    if source_plans is not None:
        plans = load_plans(source_plans)
        plans_from = "--source-plans"
        if embedded is not None:
            notes.append("--source-plans replaces the plans embedded in the checkpoint (init_args.plans)")
    elif embedded is not None:
        plans = _embedded(embedded, f"{path}:init_args.plans", "plans")
        plans_from = "init_args"
    elif model_folder is not None and os.path.isfile(os.path.join(model_folder, "plans.json")):
        plans = load_plans(os.path.join(model_folder, "plans.json"))
        plans_from = "model folder"
    elif (made := _transfer_target(ckpt, path)) is not None:
        plans, transfer_dataset_json, transfer_configuration, transfer_trainer, note = made
        plans_from = TRANSFER_RECORD
        kind = "transfer"
        notes.append(note)
    else:
        what = {
            "safetensors": "a safetensors file holds tensors only",
            "state-dict": "a bare state_dict" if ckpt.container_key is None
            else f"a state_dict under '{ckpt.container_key}' without init_args",
        }.get(kind, "a checkpoint without init_args.plans")
        raise InputError(
            f"{what}: no plans say which network the weights belong to; pass `source_plans` PLANS "
            "(and `source_dataset_json` DATASET_JSON for the channels and labels)",
            path=path,
        )

    if source_dataset_json is not None:
        dataset_json = load_dataset_json(source_dataset_json)
    elif plans_from == TRANSFER_RECORD:
        dataset_json = transfer_dataset_json
    elif plans_from == "init_args" and isinstance(init_args.get("dataset_json"), dict):
        dataset_json = _embedded(init_args["dataset_json"], f"{path}:init_args.dataset_json", "dataset.json")
    elif plans_from == "--source-plans":
        dataset_json = dataset_json_of(find_dataset_json(plans.path))
    elif model_folder is not None and os.path.isfile(os.path.join(model_folder, "dataset.json")):
        dataset_json = load_dataset_json(os.path.join(model_folder, "dataset.json"))
    else:
        dataset_json = None

    own_configuration = init_args.get("configuration")
    own_configuration = own_configuration if isinstance(own_configuration, str) else None
    if plans_from == TRANSFER_RECORD:
        own_configuration = transfer_configuration
    if own_configuration is None and folder_name is not None:
        own_configuration = folder_name[2]
    if configuration is not None and own_configuration is not None and configuration != own_configuration:
        warnings.append(
            f"-c {configuration} differs from the checkpoint's own configuration {own_configuration}: "
            f"its weights were trained as {own_configuration}"
        )
    chosen = configuration or own_configuration or DEFAULT_CONFIGURATION

    trainer, trainer_from = None, ""
    if ckpt.trainer_name:
        trainer, trainer_from = ckpt.trainer_name, "the checkpoint's trainer_name"
    elif folder_name is not None:
        trainer, trainer_from = folder_name[0], "the model folder's name"
    elif plans_from == TRANSFER_RECORD and transfer_trainer:
        trainer, trainer_from = transfer_trainer, f"the trainer {TRANSFER_RECORD} was written for"
    if fold is None and init_args.get("fold") is not None:
        fold = str(init_args["fold"])

    locations = sorted({rec.location for rec in ckpt.state_dict.values()})
    details: dict[str, Json] = {
        "checkpoint": path,
        "format": ckpt.format,
        "container_key": ckpt.container_key,
        "trainer_name": ckpt.trainer_name,
        "current_epoch": ckpt.current_epoch,
        "fold": fold,
        "configuration": own_configuration,
        "plans_from": plans_from,
        "tensors": len(ckpt.state_dict),
        "locations": locations,
    }
    if model_folder is not None:
        details["model_folder"] = model_folder
    return SourceInput(
        kind=kind,
        label=path if model_folder is None else model_folder,
        plans=plans,
        dataset_json=dataset_json,
        configuration=chosen,
        plans_from=plans_from,
        checkpoint=ckpt,
        fold=fold,
        trainer=trainer,
        trainer_from=trainer_from,
        model_folder=model_folder,
        notes=tuple(notes),
        warnings=tuple(warnings),
        details=details,
    )


#: The provenance record ``plancheck transfer`` writes beside ``network_weights`` (plancheck.transfer.PROVENANCE_KEY).
TRANSFER_RECORD = "plancheck_transfer"


def _transfer_target(ckpt: Checkpoint, path: str) -> tuple[t.Any, t.Any, str | None, str | None, str] | None:
    """A file ``plancheck transfer`` wrote holds weights for its target's network: (plans, dataset.json,
    configuration, trainer, note) from its provenance record, or ``None`` for any other file.

    The record embeds the target's plans and dataset.json (read as data, validated as any
    plans); files from before that name the plans file, which must then still exist.
    """
    record = ckpt.extras.get(TRANSFER_RECORD)
    target = record.get("target") if isinstance(record, dict) else None
    if not isinstance(target, dict):
        return None
    where = f"{path}:{TRANSFER_RECORD}.target"
    configuration = target.get("configuration") if isinstance(target.get("configuration"), str) else None
    trainer = target.get("trainer") if isinstance(target.get("trainer"), str) else None
    named = next((p for p in (target.get("plans_path"), target.get("plans")) if isinstance(p, str)), None)
    if isinstance(target.get("plans_data"), dict):
        plans = _embedded(target["plans_data"], f"{where}.plans_data", "plans")
        said = f"its embedded copy of the target plans ({named or 'a plans dict'})"
    elif named is not None and os.path.isfile(named):
        plans = load_plans(named)
        said = f"the target plans it names ({named})"
    else:
        raise InputError(
            f"a plancheck transfer file whose target plans ({named or 'unnamed'}) are gone: pass `source_plans` PLANS "
            "(the plans it was written for)", path=path)
    if isinstance(target.get("dataset_json_data"), dict):
        dataset_json = _embedded(target["dataset_json_data"], f"{where}.dataset_json_data", "dataset.json")
    elif isinstance(target.get("dataset_json_path"), str) and os.path.isfile(target["dataset_json_path"]):
        dataset_json = load_dataset_json(target["dataset_json_path"])
    else:
        dataset_json = dataset_json_of(find_dataset_json(plans.path)) if plans.path and os.path.isfile(
            plans.path) else None
    note = (f"a plancheck transfer file: its weights are for the network it was written for, built from {said}, "
            f"configuration {configuration or DEFAULT_CONFIGURATION} ({TRANSFER_RECORD} provenance record)")
    return plans, dataset_json, configuration, trainer, note


def _nnssl_source(ckpt: Checkpoint, path: str, *, configuration: str | None, source_dataset_json: t.Any,
                  notes: t.Sequence[str]) -> SourceInput:
    """An nnssl pretraining checkpoint: the network comes from its adaptation plan (plancheck.inputs.nnssl)."""
    from plancheck.inputs import nnssl

    plan = nnssl.read_plan(ckpt.extras, path)
    plans = _embedded(nnssl.source_plans(plan, path), f"{path}:{nnssl.PLAN_KEY}", "plans")
    chosen = configuration or nnssl.CONFIGURATION
    if chosen != nnssl.CONFIGURATION:
        raise InputError(
            f"an nnssl checkpoint describes one network, checked as configuration {nnssl.CONFIGURATION} "
            f"(like_nnssl.py's); -c {chosen} names none", path=path)
    notes = [*notes, f"nnssl pretraining checkpoint: network built from {nnssl.PLAN_KEY}.architecture_plans "
                     f"({plan.class_name}) with pretrain_num_input_channels={plan.pretrain_input_channels}"]
    if ckpt.trainer_name:
        notes.append(f"trainer_name {ckpt.trainer_name} is nnssl's pretraining trainer, not an nnU-Net trainer: "
                     "not used to build the network")
    if plan.citations:
        notes.append("please cite the papers behind these pretrained weights (listed under nnssl in the report)")
    details: dict[str, Json] = {
        "checkpoint": path,
        "format": ckpt.format,
        "container_key": ckpt.container_key,
        "trainer_name": ckpt.trainer_name,
        "current_epoch": ckpt.current_epoch,
        "fold": None,
        "configuration": None,
        "plans_from": nnssl.PLAN_KEY,
        "tensors": len(ckpt.state_dict),
        "locations": sorted({rec.location for rec in ckpt.state_dict.values()}),
        "nnssl": plan.facts(),
    }
    return SourceInput(
        kind="nnssl",
        label=path,
        plans=plans,
        dataset_json=None if source_dataset_json is None else load_dataset_json(source_dataset_json),
        configuration=chosen,
        plans_from=nnssl.PLAN_KEY,
        checkpoint=ckpt,
        notes=tuple(notes),
        details=details,
        nnssl=plan,
    )


# --------------------------------------------------------------------------- targets


