"""Read the tensor layout of a checkpoint without running its code or reading its data.

A checkpoint downloaded from the internet is untrusted input: ``torch.load`` with
``weights_only=False`` runs whatever the pickle asks for. This package reads only
what a compatibility check needs -- the name, shape, dtype and storage of every
tensor, plus nnU-Net's ``init_args`` / ``trainer_name`` / ``current_epoch`` -- and
does so without ever executing code from the file and without reading tensor data:

* **torch zip** (what ``torch.save`` writes since torch 1.6): only the
  ``<prefix>/data.pkl`` entry is read. Its opcodes are first walked without building
  anything (:func:`_prescan`: nesting and memo indices that could crash or exhaust
  CPython are refused), then it is unpickled by :class:`_SafeUnpickler`,
  whose ``find_class`` resolves an explicit allowlist (:data:`ALLOWED_GLOBALS`) to
  harmless stand-ins and refuses every other global. Tensor rebuild functions
  produce :class:`TensorRecord` s; ``persistent_load`` never touches
  ``<prefix>/data/<key>``.
* **safetensors**: only the (size-bounded) JSON header is parsed.
* ``trust=True``: ``torch.load(weights_only=False, map_location="meta")`` for files
  the user vouches for (legacy serialisation, custom classes). torch is imported
  only on this path.

The package, one file per guard: :mod:`.scan` (opcode pre-scan), :mod:`.unpickle`
(restricted unpickler), :mod:`.torchzip` and :mod:`.safetensors` (the containers),
:mod:`.trusted` (``torch.load`` for trusted files), :mod:`.tree` (state_dict and
``init_args`` out of the unpickled object), :mod:`.records` (what is returned).

Every failure is a :class:`~plancheck.errors.CheckpointError` with a one-line message.
"""

from __future__ import annotations

import os

from plancheck.inputs.checkpoint.records import (
    CONTAINER_KEYS,
    EXTRA_KEYS,
    MAX_PICKLE_BYTES,
    MAX_PICKLE_NESTING,
    MAX_SAFETENSORS_HEADER,
    _LEGACY_TORCH_MAGIC,
    _ZIP_MAGIC,
    Checkpoint,
    TensorRecord,
    _describe,
    _err,
)
from plancheck.inputs.checkpoint.safetensors import _looks_like_safetensors, _read_safetensors
from plancheck.inputs.checkpoint.torchzip import _read_torch_zip
from plancheck.inputs.checkpoint.trusted import _read_trusted
from plancheck.inputs.checkpoint.unpickle import ALLOWED_GLOBALS
from plancheck.errors import CheckpointError

__all__ = [
    "ALLOWED_GLOBALS",
    "CONTAINER_KEYS",
    "EXTRA_KEYS",
    "MAX_PICKLE_BYTES",
    "MAX_PICKLE_NESTING",
    "MAX_SAFETENSORS_HEADER",
    "Checkpoint",
    "TensorRecord",
    "read_checkpoint",
]


def read_checkpoint(path: str | os.PathLike[str], *, trust: bool = False) -> Checkpoint:
    """Read *path* (torch zip or safetensors, detected by content) into a :class:`Checkpoint`.

    Without *trust* no code from the file runs and no tensor data is read. With
    *trust*, torch zip and legacy files go through ``torch.load(weights_only=False,
    map_location="meta")``; safetensors files are always read the safe way.
    Raises :class:`CheckpointError` (one line, prefixed with the path) for anything
    that cannot be read.
    """
    spath = os.fsdecode(os.fspath(path))
    try:
        size = os.stat(spath).st_size
        if os.path.isdir(spath):
            raise _err("is a directory, not a checkpoint file", spath)
        with open(spath, "rb") as fh:
            head = fh.read(16)
    except CheckpointError:
        raise
    except FileNotFoundError as e:
        raise _err("no such file", spath) from e
    except PermissionError as e:
        raise _err("cannot read the file: permission denied", spath) from e
    except OSError as e:
        raise _err(f"cannot read the file: {e.strerror or type(e).__name__}", spath) from e
    except ValueError as e:  # e.g. a NUL byte in the path
        raise _err(f"invalid path ({_describe(e)})", spath.replace("\0", "\\0")) from e

    if size == 0:
        raise _err("empty file (0 bytes): not a checkpoint", spath)
    if _looks_like_safetensors(head):
        return _read_safetensors(spath, head, size)
    if trust:
        return _read_trusted(spath)
    if head[:4] in _ZIP_MAGIC:
        return _read_torch_zip(spath)
    if head.startswith(_LEGACY_TORCH_MAGIC):
        raise _err(
            "not a zip archive: legacy torch serialisation (_use_new_zipfile_serialization=False);"
            " re-save it with torch>=1.6, or read it trusted if you trust its source",
            spath,
        )
    raise _err("not a zip archive: legacy torch serialisation or not a torch checkpoint", spath)
