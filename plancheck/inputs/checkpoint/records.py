"""What the reader returns (:class:`TensorRecord`, :class:`Checkpoint`), its limits, and the
one-line error helpers every part of the reader shares."""

from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from plancheck.errors import CheckpointError


#: Keys under which a checkpoint dict keeps its state_dict, in order of preference.
CONTAINER_KEYS: tuple[str, ...] = (
    "network_weights",  # nnU-Net v2 (nnUNetTrainer.save_checkpoint)
    "state_dict",
    "model",
    "state_dict_ema",
    "model_ema",
    "network",
)

#: Top-level entries besides the state_dict that are copied out as plain data (``Checkpoint.extras``):
#: nnssl's pretraining checkpoints describe their network and how to adapt it there (plancheck.inputs.nnssl);
#: a file ``plancheck transfer`` wrote names the target it was written for (``plancheck_transfer``).
EXTRA_KEYS: tuple[str, ...] = ("nnssl_adaptation_plan", "citations", "plancheck_transfer")

#: Largest data.pkl the safe reader unpickles (nnU-Net's is well under 1 MiB).
MAX_PICKLE_BYTES = 256 * 1024 * 1024
#: Largest safetensors JSON header accepted (the limit the safetensors library uses).
MAX_SAFETENSORS_HEADER = 100_000_000
#: Deepest nesting of ``init_args`` that is copied out of the checkpoint.
_MAX_DEPTH = 64
#: Deepest nesting data.pkl may build (nnU-Net's is ~10). Deeper tuples crash CPython's
#: (unguarded, recursive) tuple hash with a segfault when used as a dict key.
MAX_PICKLE_NESTING = 200

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: ``torch.save(..., _use_new_zipfile_serialization=False)``: protocol 2, then a LONG1 magic.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


#: Bytes per element of the dtypes a checkpoint may name (torch's names); what the tensor
#: data reader sizes storages with. A dtype not listed here is never read.
DTYPE_ITEMSIZE: Mapping[str, int] = MappingProxyType({
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex128": 16, "complex64": 8,
    "complex32": 4, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint64": 8, "uint32": 4,
    "uint16": 2, "uint8": 1, "bool": 1, "float8_e5m2": 1, "float8_e4m3fn": 1,
    "float8_e5m2fnuz": 1, "float8_e4m3fnuz": 1,
})


# --------------------------------------------------------------------------- public


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """Shape, dtype and storage of one tensor; never its data."""

    shape: tuple[int, ...]
    dtype: str  #: "float32", "float16", "bfloat16", "int64", ...
    storage_key: str  #: torch zip storage key ("0", "1", ...) or the safetensors name
    location: str  #: "cpu", "cuda:0", ... as recorded in the file ("meta" when trusted)
    storage_offset: int = 0
    stride: tuple[int, ...] | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


_RECORD_FIELDS = ("shape", "dtype", "storage_key", "location", "storage_offset", "stride")
assert tuple(f.name for f in dataclasses.fields(TensorRecord)) == _RECORD_FIELDS
_record_setters = tuple(TensorRecord.__dict__[f].__set__ for f in _RECORD_FIELDS)


def _new_record(shape: tuple[int, ...], dtype: str, storage_key: str, location: str,
                storage_offset: int, stride: tuple[int, ...] | None) -> TensorRecord:
    """``TensorRecord(...)`` at half the cost: fills the slots directly, as the frozen
    dataclass's own ``__init__`` does through ``object.__setattr__`` (one record per tensor)."""
    rec = object.__new__(TensorRecord)
    set_shape, set_dtype, set_key, set_location, set_offset, set_stride = _record_setters
    set_shape(rec, shape)
    set_dtype(rec, dtype)
    set_key(rec, storage_key)
    set_location(rec, location)
    set_offset(rec, storage_offset)
    set_stride(rec, stride)
    return rec


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint holds, as far as a load-compatibility check needs to know."""

    path: str
    format: str  #: "torch-zip" | "safetensors" | "torch-trusted"
    state_dict: Mapping[str, TensorRecord]  #: read-only, ordered as in the file
    container_key: str | None  #: "network_weights", ... or None for a bare state_dict
    init_args: dict | None  #: nnU-Net's init_args (plans, configuration, ...) if present
    trainer_name: str | None
    current_epoch: int | None
    top_level_keys: tuple[str, ...]
    #: Bytes each storage claims: torch zip, from data.pkl's storage references (read by
    #: :mod:`plancheck.inputs.checkpoint.data` only after checking them against the zip entries).
    storage_nbytes: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: safetensors: the ``[start, end)`` file offsets of each tensor's bytes, from the header.
    storage_spans: Mapping[str, tuple[int, int]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))
    #: plain copies of the :data:`EXTRA_KEYS` the checkpoint dict holds (nnssl's adaptation plan, citations)
    extras: Mapping[str, object] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def alias_groups(self) -> list[tuple[str, ...]]:
        """Keys that name one tensor (same storage, offset, shape and stride).

        Groups are ordered by their first key, keys within a group as in the
        state_dict; keys that share nothing are not listed.
        """
        groups: dict[tuple[object, ...], list[str]] = {}
        for name, rec in self.state_dict.items():
            ident = (rec.storage_key, rec.storage_offset, rec.shape, rec.stride)
            groups.setdefault(ident, []).append(name)
        return [tuple(keys) for keys in groups.values() if len(keys) > 1]


# --------------------------------------------------------------------------- helpers


def _err(message: str, path: str) -> CheckpointError:
    return CheckpointError(message, path=path)


def _one_line(text: object, limit: int = 160) -> str:
    """*text* with control characters escaped, cut to *limit* characters."""
    s = str(text)
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    msg = _one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _type_name(obj: object) -> str:
    return type(obj).__name__



def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


def _uint_tuple(x: object) -> tuple[int, ...] | None:
    if not isinstance(x, (tuple, list)):
        return None
    for v in x:  # a plain loop: this runs twice per tensor while unpickling
        if type(v) is not int or v < 0:
            return None
    return tuple(x)


def _open_zip(path: str) -> zipfile.ZipFile:
    """``path`` as a zip archive, or a CheckpointError naming it (damaged, or not openable)."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise _err(f"damaged zip archive (truncated or corrupt): {_one_line(e)}", path) from e
    except Exception as e:
        raise _err(f"cannot open the zip archive ({_describe(e)})", path) from e
