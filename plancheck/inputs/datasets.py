"""Dataset IDs and dataset names: one grammar, nnU-Net's, for every place plancheck reads or prints one.

nnU-Net's ``maybe_convert_to_dataset_name`` takes a string that starts with ``Dataset`` as a
dataset name, as it is, and any other string as an integer ID, which it looks up as the folder
prefix ``"Dataset%03.0d" % id`` (``5`` -> ``Dataset005``, ``12345`` -> ``Dataset12345``) under
``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results``. plancheck takes the same two
forms, with two restrictions that keep a path a path: an ID is ASCII digits only (``int()``
would also take ``" 5"``, ``"+5"`` and ``"5_0"``), and a name holds no path separator. Whether
an argument that fits the grammar is a dataset or a file is decided by the caller (an existing
path wins everywhere).

The other direction, a dataset name to the ID that ``nnUNetv2_train`` and ``nnUNetv2_preprocess
-d`` take, reads every digit after ``Dataset`` (``Dataset12345_Big`` -> ``12345``).
"""

from __future__ import annotations

import re

__all__ = ["command_id", "dataset_number", "display_id", "is_dataset_ref"]

_NAME = re.compile(r"^Dataset[^/\\]*$")
_ID = re.compile(r"^[0-9]+$")
_NUMBER = re.compile(r"^Dataset([0-9]+)(?:_|$)")

#: What a command prints where the dataset is not known.
PLACEHOLDER = "DATASET_ID"


def is_dataset_ref(text: str) -> bool:
    """``"5"``, ``"12345"``, ``"Dataset005"``, ``"Dataset005_Name"``: what nnU-Net resolves as a dataset."""
    return bool(_ID.match(text) or _NAME.match(text))


def dataset_number(name: str | None) -> int | None:
    """``Dataset802_Name`` -> ``802``; ``None`` for anything that is not a dataset name."""
    match = _NUMBER.match(name or "")
    return int(match.group(1)) if match else None


def command_id(name: str | None) -> str:
    """The dataset as ``nnUNetv2_train``/``nnUNetv2_preprocess -d`` take it: its ID, else :data:`PLACEHOLDER`."""
    number = dataset_number(name)
    return PLACEHOLDER if number is None else str(number)


def display_id(ref: str) -> str:
    """A dataset reference as nnU-Net's folder prefix names it: ``"5"`` -> ``Dataset005``; a name as it is."""
    return f"Dataset{int(ref):03d}" if _ID.match(ref) else ref
