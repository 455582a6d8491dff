"""``--trust-checkpoint``: ``torch.load(weights_only=False, map_location="meta")`` for files the
user vouches for (legacy serialisation, custom classes). The only path that imports torch."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from typing import Any

from plancheck.inputs.checkpoint.records import Checkpoint, TensorRecord, _describe, _err
from plancheck.inputs.checkpoint.tree import _build_checkpoint


# --------------------------------------------------------------------------- trusted


def _storage_keys_by_offset(path: str) -> dict[int, str]:
    """Byte offset of each ``<prefix>/data/<key>`` payload -> key (local headers only)."""
    keys: dict[int, str] = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
            for info in zf.infolist():
                parts = info.filename.split("/")
                if len(parts) != 3 or parts[1] != "data":
                    continue
                fh.seek(info.header_offset)
                local = fh.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                keys[info.header_offset + 30 + name_len + extra_len] = parts[2]
    except Exception:
        return {}
    return keys


def _read_trusted(path: str) -> Checkpoint:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        raise _err("reading a checkpoint trusted needs torch, which is not installed", path) from e
    try:
        top = torch.load(path, weights_only=False, map_location="meta")
    except Exception as e:
        raise _err(f"torch.load failed ({_describe(e)})", path) from e
    keys = _storage_keys_by_offset(path)
    fallback: dict[int, str] = {}

    def to_record(name: str, t: Any) -> TensorRecord:
        offset: int | None
        stride: tuple[int, ...] | None
        try:
            offset = getattr(t.untyped_storage(), "_checkpoint_offset", None)
            stride = tuple(t.stride())
            storage_offset = int(t.storage_offset())
        except Exception:  # sparse / nested / subclass tensors
            offset, stride, storage_offset = None, None, 0
        if offset is not None:
            key = keys.get(offset, f"offset:{offset}")
        else:  # legacy format: no record offsets; keys are unique per tensor
            key = fallback.setdefault(id(t), f"tensor:{len(fallback)}")
        return TensorRecord(
            shape=tuple(int(d) for d in t.shape),
            dtype=str(t.dtype).removeprefix("torch."),
            storage_key=key,
            location=str(t.device),
            storage_offset=storage_offset,
            stride=stride,
        )

    def leaf(obj: object, convert: Callable[[object], object]) -> tuple[bool, object]:
        if isinstance(obj, torch.Tensor):
            return True, to_record("", obj)
        if isinstance(obj, (torch.device, torch.dtype)):
            return True, str(obj)
        return False, obj

    return _build_checkpoint(path, "torch-trusted", top, lambda o: isinstance(o, torch.Tensor),
                             to_record, leaf)
