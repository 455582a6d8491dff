"""Where nnU-Net keeps things: ``$nnUNet_*`` folders and dataset IDs, trained-model folders, folds and their
checkpoints, and files told apart by their first bytes."""

from __future__ import annotations

import contextlib
import os
import typing as t

from plancheck._nnunet import quiet
from plancheck.errors import InputError
from plancheck.inputs.datasets import is_dataset_ref
from plancheck.inputs.plans import DatasetJson, load_dataset_json

__all__ = [
    "CHECKPOINT_NAMES",
    "CHECKPOINT_SUFFIXES",
    "ENV_VARS",
    "checkpoint_in",
    "dataset_json_of",
    "dataset_name",
    "env_folder",
    "fold_key",
    "folds",
    "head_bytes",
    "is_checkpoint_file",
    "is_model_folder",
    "looks_like_dataset_id",
    "nnunet_paths",
    "parse_model_folder_name",
    "plans_files",
]


#: Environment variables nnU-Net reads, in the order its dataset-ID lookup searches them.
ENV_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


#: nnU-Net's checkpoint names in a fold folder, in the order plancheck takes them: the final weights, the best
#: (by pseudo Dice), and last the latest, which nnUNetTrainer saves during training (an unfinished run has only it).
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


#: File names that are checkpoints whatever their first bytes (a damaged one then gets the reader's message).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".model", ".tar", ".zip")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def looks_like_dataset_id(text: str) -> bool:
    """``999``, ``12345``, ``Dataset999`` or ``Dataset999_Name`` (a string that is not an existing path):
    nnU-Net's grammar, :func:`plancheck.inputs.datasets.is_dataset_ref`."""
    return is_dataset_ref(text) and not os.path.exists(text)


def head_bytes(path: str, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def is_checkpoint_file(path: str) -> bool:
    """Checkpoint by content (torch zip, legacy torch, safetensors) or by name; JSON text never is."""
    head = head_bytes(path)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return False
    if head[:4] in _ZIP_MAGIC or head.startswith(_LEGACY_TORCH_MAGIC):
        return True
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
        return True
    return path.lower().endswith(CHECKPOINT_SUFFIXES)


def dataset_json_of(value: t.Any) -> DatasetJson | None:
    return None if value is None else load_dataset_json(value)


def fold_key(name: str) -> tuple[int, int | str]:
    rest = name[len("fold_"):]
    return (0, int(rest)) if rest.isdigit() else (1, rest)


def folds(folder: str) -> list[str]:
    try:
        names = [n for n in os.listdir(folder) if n.startswith("fold_") and os.path.isdir(os.path.join(folder, n))]
    except OSError:
        return []
    return sorted(names, key=fold_key)


def checkpoint_in(fold_dir: str) -> str | None:
    for name in CHECKPOINT_NAMES:
        path = os.path.join(fold_dir, name)
        if os.path.isfile(path):
            return path
    return None


def parse_model_folder_name(folder: str) -> tuple[str, str, str] | None:
    parts = os.path.basename(os.path.normpath(folder)).split("__")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def is_model_folder(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "plans.json")) and bool(folds(folder))


@contextlib.contextmanager
def nnunet_paths() -> t.Iterator[None]:
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


def env_folder(var: str, arg: str, purpose: str) -> str:
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
    root = env_folder(var, arg, purpose)
    with nnunet_paths():
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


def plans_files(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    skip = {"dataset.json", "dataset_fingerprint.json", "splits_final.json"}
    return [n for n in names if n.endswith(".json") and n not in skip and "plans" in n.lower()]

