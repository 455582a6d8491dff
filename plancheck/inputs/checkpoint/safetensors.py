"""safetensors files: the size-bounded JSON header, validated entry by entry."""

from __future__ import annotations

import json
import math
import struct
from types import MappingProxyType
from typing import Any

from plancheck.inputs.checkpoint.records import (
    Checkpoint,
    MAX_SAFETENSORS_HEADER,
    TensorRecord,
    _describe,
    _err,
    _one_line,
    _uint_tuple,
)


# --------------------------------------------------------------------------- safetensors

_SAFETENSORS_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "C64": ("complex64", 8),
}


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _read_safetensors(path: str, head: bytes, size: int) -> Checkpoint:
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_SAFETENSORS_HEADER:
        raise _err(f"safetensors header of {n} bytes is over the {MAX_SAFETENSORS_HEADER} byte limit",
                   path)
    if 8 + n > size:
        raise _err(f"truncated safetensors file: header of {n} bytes, file of {size} bytes", path)
    try:
        with open(path, "rb") as fh:
            fh.seek(8)
            raw = fh.read(n)
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except Exception as e:  # OSError, UnicodeDecodeError, JSONDecodeError, RecursionError
        raise _err(f"corrupt safetensors header ({_describe(e)})", path) from e
    if not isinstance(header, dict):
        raise _err("corrupt safetensors header: not a JSON object", path)

    data_len = size - 8 - n
    records: dict[str, TensorRecord] = {}
    spans: dict[str, tuple[int, int]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue  # free-form strings; not needed for a compatibility check
        shown = _one_line(name, 80)
        if not isinstance(entry, dict):
            raise _err(f"corrupt safetensors header: entry {shown!r} is not an object", path)
        dtype = entry.get("dtype")
        shape = _uint_tuple(entry.get("shape"))
        offsets = _uint_tuple(entry.get("data_offsets"))
        if dtype not in _SAFETENSORS_DTYPES:
            raise _err(f"corrupt safetensors header: {shown!r} has unknown dtype "
                       f"{_one_line(dtype, 20)!r}", path)
        if shape is None:
            raise _err(f"corrupt safetensors header: {shown!r} has no valid shape", path)
        if offsets is None or len(offsets) != 2 or not offsets[0] <= offsets[1] <= data_len:
            raise _err(f"corrupt safetensors header: {shown!r} has data_offsets outside the "
                       f"{data_len} data bytes", path)
        dt, itemsize = _SAFETENSORS_DTYPES[dtype]
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise _err(f"corrupt safetensors header: {shown!r} spans {offsets[1] - offsets[0]} "
                       f"bytes, its shape {shape} needs {math.prod(shape) * itemsize}", path)
        records[name] = TensorRecord(shape=shape, dtype=dt, storage_key=name, location="cpu")
        spans[name] = (8 + n + offsets[0], 8 + n + offsets[1])
    if not records:
        raise _err("safetensors file holds no tensors", path)
    return Checkpoint(
        path=path,
        format="safetensors",
        state_dict=MappingProxyType(records),
        container_key=None,
        init_args=None,
        trainer_name=None,
        current_epoch=None,
        top_level_keys=tuple(records),
        storage_spans=MappingProxyType(spans),
    )
