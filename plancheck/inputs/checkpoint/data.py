"""Read tensor data: only the tensors asked for, each checked against its container before any allocation.

The safe reader (:func:`plancheck.inputs.checkpoint.read_checkpoint`) knows every tensor's dtype,
shape, stride, storage offset and storage key, and what each storage claims to hold. Here
the bytes behind a few of them are read, and nothing else:

* **torch zip**: a tensor's bytes live in the ``<prefix>/data/<key>`` entry. The entry
  must be stored uncompressed (as ``torch.save`` writes it), its local header must be
  where the central directory says, its bytes must lie inside the file, the storage must
  not claim more bytes than the entry holds, and the tensor's extent (offset, shape,
  stride) must lie inside the storage. Only then is a buffer of exactly that extent
  allocated and filled with ``os.pread``.
* **safetensors**: the header's ``data_offsets`` were checked against the file when it
  was read; the span is read as it stands.
* **trusted** (``--trust-checkpoint``): ``torch.load(weights_only=False, mmap=True)``, as
  for the shapes.

No code from the file runs on the first two paths; tensors are built by torch from plain
bytes (``torch.frombuffer`` + ``as_strided``), then copied into their own contiguous memory.
Every failure is a one-line :class:`~plancheck.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import math
import os
import struct
import typing as t
import zipfile

from plancheck.inputs.checkpoint.records import (
    DTYPE_ITEMSIZE, Checkpoint, TensorRecord, _describe, _err, _one_line, _open_zip)

if t.TYPE_CHECKING:
    import torch

__all__ = ["read_tensors", "tensor_nbytes"]

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # the 30 bytes before a zip entry's name
_LOCAL_MAGIC = b"PK\x03\x04"


def tensor_nbytes(rec: TensorRecord) -> int:
    """Bytes of the storage span one tensor reaches (what reading it costs)."""
    itemsize = DTYPE_ITEMSIZE.get(rec.dtype, 0)
    if 0 in rec.shape:
        return 0
    stride = rec.stride if rec.stride is not None else _contiguous(rec.shape)
    return (1 + sum((n - 1) * s for n, s in zip(rec.shape, stride))) * itemsize


def read_tensors(ckpt: Checkpoint, keys: t.Iterable[str],
                 into: t.Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``ckpt.state_dict`` named by ``keys``, on the CPU; nothing else is read.

    ``into`` maps keys to CPU tensors to fill instead of allocating: used when such a tensor
    is contiguous, of the record's dtype and shape, and the stored tensor is contiguous too
    (the bytes then go from the file straight into it); otherwise a new tensor is returned.
    """
    wanted = list(dict.fromkeys(keys))
    unknown = [k for k in wanted if k not in ckpt.state_dict]
    if unknown:
        raise _err(f"no tensor {_one_line(unknown[0], 80)!r} in the state_dict", ckpt.path)
    if ckpt.format == "torch-zip":
        return _read_zip(ckpt, wanted, into or {})
    if ckpt.format == "safetensors":
        return _read_safetensors(ckpt, wanted)
    if ckpt.format == "torch-trusted":
        return _read_trusted(ckpt, wanted)
    raise _err(f"cannot read tensor data of a {ckpt.format} checkpoint", ckpt.path)


# --------------------------------------------------------------------------- shared


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for n in reversed(shape):
        stride.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(stride))


def _torch_dtype(name: str, key: str, path: str) -> torch.dtype:
    import torch

    dtype = getattr(torch, name, None) if name in DTYPE_ITEMSIZE else None
    if not isinstance(dtype, torch.dtype):
        raise _err(f"tensor {_one_line(key, 80)!r} has dtype {_one_line(name, 20)}, which plancheck does not read",
                   path)
    return dtype


def _from_bytes(buf: torch.Tensor, rec: TensorRecord, first: int, key: str, path: str) -> torch.Tensor:
    """The tensor *rec* describes, from *buf* (uint8) holding its storage from element *first* on."""
    import torch

    dtype = _torch_dtype(rec.dtype, key, path)
    if 0 in rec.shape:
        return torch.empty(rec.shape, dtype=dtype)
    stride = rec.stride if rec.stride is not None else _contiguous(rec.shape)
    flat = buf.view(dtype)
    if tuple(stride) == _contiguous(rec.shape) and flat.numel() == math.prod(rec.shape) \
            and rec.storage_offset == first:
        return flat.view(rec.shape)  # the buffer is exactly this tensor: no copy
    return flat.as_strided(rec.shape, stride, rec.storage_offset - first).clone(memory_format=torch.contiguous_format)


def _extent(rec: TensorRecord) -> tuple[int, int]:
    """``[first, end)`` elements of the storage the tensor reaches (``(0, 0)`` when empty)."""
    if 0 in rec.shape:
        return 0, 0
    stride = rec.stride if rec.stride is not None else _contiguous(rec.shape)
    return rec.storage_offset, rec.storage_offset + 1 + sum((n - 1) * s for n, s in zip(rec.shape, stride))


def _pread(fd: int, nbytes: int, offset: int, what: str, path: str, dest: torch.Tensor | None = None) -> torch.Tensor:
    """*nbytes* bytes of the file from *offset*, into ``dest`` (uint8, exactly *nbytes*) or a new uint8
    tensor (allocated only after the checks)."""
    import torch

    buf = dest if dest is not None and dest.numel() == nbytes else torch.empty(nbytes, dtype=torch.uint8)
    view = memoryview(buf.numpy()).cast("B")
    done = 0
    while done < nbytes:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise _err(f"truncated file: {what} ends past the end of the file", path)
        done += got
    return buf


# --------------------------------------------------------------------------- torch zip


def _destination(rec: TensorRecord, dest: torch.Tensor | None) -> torch.Tensor | None:
    """``dest`` viewed as bytes, when the stored tensor's bytes can go straight into it."""
    if dest is None or dest.device.type != "cpu" or not dest.is_contiguous() or 0 in rec.shape:
        return None
    if str(dest.dtype).removeprefix("torch.") != rec.dtype or tuple(dest.shape) != rec.shape:
        return None
    if rec.stride is not None and tuple(rec.stride) != _contiguous(rec.shape):
        return None
    import torch

    return dest.detach().view(-1).view(torch.uint8)


def _read_zip(ckpt: Checkpoint, keys: list[str], into: t.Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    path = ckpt.path
    zf = _open_zip(path)
    out: dict[str, torch.Tensor] = {}
    with zf, open(path, "rb") as fh:
        fd = fh.fileno()
        file_size = os.fstat(fd).st_size
        pkl = [i.filename for i in zf.infolist() if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
        if len(pkl) != 1:
            raise _err("zip archive without exactly one <folder>/data.pkl", path)
        prefix = pkl[0][: -len("data.pkl")]
        _check_byteorder(zf, prefix, path)
        spans: dict[str, tuple[int, int]] = {}  # storage key -> (start in the file, entry bytes)
        for key in keys:
            rec = ckpt.state_dict[key]
            if rec.storage_key not in spans:
                spans[rec.storage_key] = _storage_span(zf, fh, prefix, rec.storage_key,
                                                       ckpt.storage_nbytes.get(rec.storage_key), file_size, path)
            start, nbytes = spans[rec.storage_key]
            itemsize = DTYPE_ITEMSIZE.get(rec.dtype, 0)
            _torch_dtype(rec.dtype, key, path)
            first, end = _extent(rec)
            if end * itemsize > nbytes:
                raise _err(
                    f"tensor {_one_line(key, 80)!r} {rec.shape} at offset {rec.storage_offset} reaches byte"
                    f" {end * itemsize} of storage {_one_line(rec.storage_key, 20)!r}, which holds {nbytes}",
                    path,
                )
            dest = _destination(rec, into.get(key))
            buf = _pread(fd, (end - first) * itemsize, start + first * itemsize,
                         f"storage {_one_line(rec.storage_key, 20)!r}", path, dest)
            out[key] = into[key] if dest is not None else _from_bytes(buf, rec, first, key, path)
    return out


def _check_byteorder(zf: zipfile.ZipFile, prefix: str, path: str) -> None:
    try:
        info = zf.getinfo(prefix + "byteorder")
    except KeyError:
        return  # torch before 2.1 wrote none: little-endian
    if info.file_size > 16:
        raise _err("byteorder entry of the zip is not 'little' or 'big'", path)
    order = zf.read(info).strip()
    if order != b"little":
        raise _err(f"tensors saved {_one_line(order.decode('latin-1'), 10)}-endian: plancheck reads little-endian"
                   " checkpoints only", path)


def _storage_span(zf: zipfile.ZipFile, fh: t.BinaryIO, prefix: str, key: str, claimed: int | None,
                  file_size: int, path: str) -> tuple[int, int]:
    """Where storage *key*'s bytes start in the file, and how many there are; checked."""
    name = f"{prefix}data/{key}"
    shown = _one_line(name, 80)
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _err(f"storage {shown} is referenced by data.pkl but not in the zip archive", path) from None
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise _err(f"storage {shown} is compressed; torch.save stores storages uncompressed", path)
    if claimed is None:
        raise _err(f"storage {shown} has an unknown size", path)
    if claimed > info.file_size:
        raise _err(f"storage {shown} claims {claimed} bytes, its zip entry holds {info.file_size}", path)
    fh.seek(info.header_offset)
    local = fh.read(_LOCAL_HEADER.size)
    if len(local) != _LOCAL_HEADER.size:
        raise _err(f"truncated zip archive: the local header of {shown} is past the end of the file", path)
    magic, *_, name_len, extra_len = _LOCAL_HEADER.unpack(local)
    if magic != _LOCAL_MAGIC:
        raise _err(f"damaged zip archive: no local header where {shown} should start", path)
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.file_size > file_size:
        raise _err(f"truncated zip archive: {shown} ends at byte {start + info.file_size}, the file has {file_size}",
                   path)
    return start, claimed


# --------------------------------------------------------------------------- safetensors


def _read_safetensors(ckpt: Checkpoint, keys: list[str]) -> dict[str, torch.Tensor]:
    path = ckpt.path
    out: dict[str, torch.Tensor] = {}
    with open(path, "rb") as fh:
        fd = fh.fileno()
        file_size = os.fstat(fd).st_size
        for key in keys:
            rec = ckpt.state_dict[key]
            span = ckpt.storage_spans.get(rec.storage_key)
            if span is None or not 0 <= span[0] <= span[1] <= file_size:
                raise _err(f"tensor {_one_line(key, 80)!r} has no byte range inside the file", path)
            if span[1] - span[0] != tensor_nbytes(rec):
                raise _err(f"tensor {_one_line(key, 80)!r} spans {span[1] - span[0]} bytes, its shape needs"
                           f" {tensor_nbytes(rec)}", path)
            buf = _pread(fd, span[1] - span[0], span[0], f"tensor {_one_line(key, 80)!r}", path)
            out[key] = _from_bytes(buf, rec, 0, key, path)
    return out


# --------------------------------------------------------------------------- trusted


def _read_trusted(ckpt: Checkpoint, keys: list[str]) -> dict[str, torch.Tensor]:
    import torch

    from plancheck.inputs.checkpoint.tree import _select_state_dict

    path = ckpt.path
    try:
        top = torch.load(path, weights_only=False, map_location="cpu", mmap=True)
    except Exception:
        try:  # the legacy format cannot be memory-mapped
            top = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as e:
            raise _err(f"torch.load failed ({_describe(e)})", path) from e
    _, state = _select_state_dict(top, lambda o: isinstance(o, torch.Tensor), path)
    return {k: state[k].detach().clone() for k in keys}
