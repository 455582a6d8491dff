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

import contextlib
import os
import typing as t
from dataclasses import dataclass, field

from plancheck._nnunet import quiet
from plancheck.inputs.datasets import is_dataset_ref
from plancheck.errors import InputError, PlansError, UsageError
from plancheck.inputs.plans import DatasetJson, PlansFile, find_dataset_json, load_dataset_json, load_plans

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
DEFAULT_PLANS_IDENTIFIER = "nnUNetPlans"
DEFAULT_TRAINER = "nnUNetTrainer"
SOURCE_KINDS = ("plans", "checkpoint", "model-folder", "state-dict", "safetensors", "preprocessed-folder", "nnssl")
TARGET_KINDS = ("plans", "preprocessed-folder", "model-folder", "dataset")

#: Environment variables nnU-Net reads, in the order its dataset-ID lookup searches them.
ENV_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: nnU-Net's checkpoint names in a fold folder, in the order plancheck takes them: the final weights, the best
#: (by pseudo Dice), and last the latest, which nnUNetTrainer saves during training (an unfinished run has only it).
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")
#: File names that are checkpoints whatever their first bytes (a damaged one then gets the reader's message).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".model", ".tar", ".zip")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


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


# --------------------------------------------------------------------------- helpers


def looks_like_dataset_id(text: str) -> bool:
    """``999``, ``12345``, ``Dataset999`` or ``Dataset999_Name`` (a string that is not an existing path):
    nnU-Net's grammar, :func:`plancheck.inputs.datasets.is_dataset_ref`."""
    return is_dataset_ref(text) and not os.path.exists(text)


def _head(path: str, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _is_checkpoint_file(path: str) -> bool:
    """Checkpoint by content (torch zip, legacy torch, safetensors) or by name; JSON text never is."""
    head = _head(path)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return False
    if head[:4] in _ZIP_MAGIC or head.startswith(_LEGACY_TORCH_MAGIC):
        return True
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
        return True
    return path.lower().endswith(CHECKPOINT_SUFFIXES)


def _load_dataset_json(value: t.Any) -> DatasetJson | None:
    return None if value is None else load_dataset_json(value)


def _embedded(data: Json, label: str, what: str) -> t.Any:
    """Validate a plans or dataset.json dict from a checkpoint, with errors that name where it came from."""
    try:
        loaded = load_plans(data) if what == "plans" else load_dataset_json(data)
    except PlansError as e:
        raise PlansError(e.message, path=label) from e
    return type(loaded)(data=loaded.data, path=label)


def _fold_key(name: str) -> tuple[int, int | str]:
    rest = name[len("fold_"):]
    return (0, int(rest)) if rest.isdigit() else (1, rest)


def _folds(folder: str) -> list[str]:
    try:
        names = [n for n in os.listdir(folder) if n.startswith("fold_") and os.path.isdir(os.path.join(folder, n))]
    except OSError:
        return []
    return sorted(names, key=_fold_key)


def _checkpoint_in(fold_dir: str) -> str | None:
    for name in CHECKPOINT_NAMES:
        path = os.path.join(fold_dir, name)
        if os.path.isfile(path):
            return path
    return None


def _parse_model_folder_name(folder: str) -> tuple[str, str, str] | None:
    parts = os.path.basename(os.path.normpath(folder)).split("__")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def _is_model_folder(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "plans.json")) and bool(_folds(folder))


# --------------------------------------------------------------------------- dataset IDs


@contextlib.contextmanager
def _nnunet_paths() -> t.Iterator[None]:
    """Make nnU-Net's path globals reflect ``os.environ`` now.

    nnunetv2 >= 2.7 reads the variables lazily (``nnunetv2.paths._EnvPath``); older
    releases bound them to strings when ``nnunetv2.paths`` was first imported. Those bound
    globals are replaced for the call and restored afterwards.
    """
    with quiet():
        import nnunetv2.paths as paths
        import nnunetv2.utilities.dataset_name_id_conversion as conversion
        import nnunetv2.utilities.file_path_utilities as file_paths
    saved: list[tuple[t.Any, str, t.Any]] = []
    for module in (paths, conversion, file_paths):
        for var in ENV_VARS:
            if not hasattr(module, var):
                continue
            value = getattr(module, var)
            if value is None or isinstance(value, str):  # bound at import time
                saved.append((module, var, value))
                setattr(module, var, os.environ.get(var))
    try:
        with quiet():
            yield
    finally:
        for module, var, value in saved:
            setattr(module, var, value)


def _env_folder(var: str, arg: str, purpose: str) -> str:
    folder = os.environ.get(var)
    if not folder:
        raise InputError(f"dataset {arg}: {var} is not set ({purpose})")
    if not os.path.isdir(folder):
        raise InputError(f"dataset {arg}: {var}={folder} is not a directory ({purpose})")
    return folder


def dataset_name(arg: str, *, var: str, purpose: str) -> tuple[str, str]:
    """``999`` / ``Dataset999_Name`` -> (``Dataset999_Name``, the folder under ``$var``), nnU-Net's way.

    nnU-Net looks for the name in nnUNet_raw, nnUNet_preprocessed and nnUNet_results; the
    folder must then exist under ``var``. Errors name the variable and the folder tried.
    """
    root = _env_folder(var, arg, purpose)
    with _nnunet_paths():
        from nnunetv2.utilities.dataset_name_id_conversion import (
            find_candidate_datasets,
            maybe_convert_to_dataset_name,
        )

        try:
            name = str(maybe_convert_to_dataset_name(arg))
        except (RuntimeError, ValueError, AssertionError) as e:
            number = int(arg) if arg.isdigit() else None
            if number is not None and "More than one" in str(e):
                found = ", ".join(str(c) for c in find_candidate_datasets(number))
                raise InputError(
                    f"dataset {arg} is ambiguous: {found} (in nnUNet_raw, nnUNet_preprocessed or nnUNet_results); "
                    "name it in full (DatasetNNN_Name)"
                ) from e
            prefix = f"Dataset{number:03d}_*" if number is not None else f"{arg}*"
            others = ", ".join(
                f"{v}={os.environ[v]}" if os.environ.get(v) else f"{v} (not set)" for v in ENV_VARS if v != var
            )
            raise InputError(
                f"dataset {arg} not found: looked in {var}={root} (no {prefix} folder; nnU-Net also searched {others})"
            ) from e
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
        raise InputError(f"dataset {arg} not found: looked in {var}={root} (no {name} folder)")
    return name, folder


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
            "--fold": (fold is not None, "picks the fold of a trained-model folder or source dataset ID"),
            "--source-plans": (source_plans is not None, "gives the plans of a state_dict or safetensors SOURCE"),
            "--trust-checkpoint": (bool(trust_checkpoint), "changes how a checkpoint is read"),
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
        if _is_checkpoint_file(path):
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
        dataset_json=_load_dataset_json(dataset_json),
        configuration=configuration or DEFAULT_CONFIGURATION,
        details=details or {},
    )


def _source_directory(path: str, fold: str | None, plans_identifier: str, **common: t.Any) -> SourceInput:
    base = os.path.basename(os.path.normpath(path))
    parent = os.path.dirname(os.path.abspath(path))
    if _is_model_folder(path):
        return _model_folder_source(path, fold, **common)
    if base.startswith("fold_") and os.path.isfile(os.path.join(parent, "plans.json")):
        own = base[len("fold_"):]
        if fold is not None and fold != own:
            raise UsageError(f"--fold {fold} contradicts the fold folder given as SOURCE ({path})")
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
    folds = _folds(folder)
    with_checkpoint = [f for f in folds if _checkpoint_in(os.path.join(folder, f))]
    shown = ", ".join(f[len("fold_"):] for f in with_checkpoint) or "none"
    if fold is not None:
        fold_dir = os.path.join(folder, f"fold_{fold}")
        if not os.path.isdir(fold_dir):
            raise InputError(f"no fold_{fold} in the model folder (folds with a checkpoint: {shown})", path=folder)
        ckpt_path = _checkpoint_in(fold_dir)
        if ckpt_path is None:
            raise InputError(f"fold_{fold} holds none of {', '.join(CHECKPOINT_NAMES)}", path=folder)
    else:
        if not with_checkpoint:
            raise InputError(
                f"no fold_*/{CHECKPOINT_NAMES[0]} (or {', '.join(CHECKPOINT_NAMES[1:])}) in the model folder "
                f"(folds: {', '.join(folds) or 'none'})",
                path=folder,
            )
        fold = with_checkpoint[0][len("fold_"):]
        ckpt_path = _checkpoint_in(os.path.join(folder, with_checkpoint[0]))
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
    with _nnunet_paths():
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
    folder_name = _parse_model_folder_name(model_folder) if model_folder else None

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
            f"{what}: no plans say which network the weights belong to; pass --source-plans PLANS "
            "(and --source-dataset-json DATASET_JSON for the channels and labels)",
            path=path,
        )

    if source_dataset_json is not None:
        dataset_json = load_dataset_json(source_dataset_json)
    elif plans_from == TRANSFER_RECORD:
        dataset_json = transfer_dataset_json
    elif plans_from == "init_args" and isinstance(init_args.get("dataset_json"), dict):
        dataset_json = _embedded(init_args["dataset_json"], f"{path}:init_args.dataset_json", "dataset.json")
    elif plans_from == "--source-plans":
        dataset_json = _load_dataset_json(find_dataset_json(plans.path))
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
            f"a plancheck transfer file whose target plans ({named or 'unnamed'}) are gone: pass --source-plans PLANS "
            "(the plans it was written for)", path=path)
    if isinstance(target.get("dataset_json_data"), dict):
        dataset_json = _embedded(target["dataset_json_data"], f"{where}.dataset_json_data", "dataset.json")
    elif isinstance(target.get("dataset_json_path"), str) and os.path.isfile(target["dataset_json_path"]):
        dataset_json = load_dataset_json(target["dataset_json_path"])
    else:
        dataset_json = _load_dataset_json(find_dataset_json(plans.path)) if plans.path and os.path.isfile(
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


def resolve_target(
    arg: PathOrData,
    *,
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
    target_dataset_json: t.Any = None,
) -> TargetInput:
    """Find out what TARGET is: a plans.json, a preprocessed dataset folder, or a dataset ID."""
    if isinstance(arg, (dict, PlansFile)):
        plans = load_plans(arg)
        return TargetInput("plans", plans.label, plans, _load_dataset_json(target_dataset_json))
    path = os.fspath(arg)
    if os.path.isdir(path):
        plans_file = os.path.join(path, f"{plans_identifier}.json")
        if os.path.isfile(plans_file):
            return _plans_target(plans_file, path, "preprocessed-folder", target_dataset_json, {"folder": path})
        if _is_model_folder(path) or (
            os.path.isfile(os.path.join(path, "plans.json")) and os.path.isfile(os.path.join(path, "dataset.json"))
        ):
            return _plans_target(os.path.join(path, "plans.json"), path, "model-folder", target_dataset_json,
                                 {"folder": path})
        available = _plans_files(path)
        raise InputError(
            f"is a directory without {plans_identifier}.json: a preprocessed dataset folder holds "
            f"<plans identifier>.json and dataset.json"
            + (f" (plans here: {', '.join(available)}; choose with -p)" if available else ""),
            path=path,
        )
    if os.path.isfile(path):
        if _is_checkpoint_file(path):
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
            available = _plans_files(folder)
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
    return TargetInput(kind, label, plans, _load_dataset_json(dataset_json), details=details or {})


def _plans_files(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    skip = {"dataset.json", "dataset_fingerprint.json", "splits_final.json"}
    return [n for n in names if n.endswith(".json") and n not in skip and "plans" in n.lower()]
