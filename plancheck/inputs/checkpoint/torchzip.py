"""The torch zip container (``torch.save`` since torch 1.6): find and read ``<prefix>/data.pkl``,
pre-scan it, unpickle it safely."""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from plancheck.errors import CheckpointError
from plancheck.inputs.checkpoint.records import (
    DTYPE_ITEMSIZE,
    Checkpoint,
    MAX_PICKLE_BYTES,
    TensorRecord,
    _describe,
    _err,
    _new_record,
    _one_line,
    _open_zip,
)
from plancheck.inputs.checkpoint.scan import _prescan
from plancheck.inputs.checkpoint.tree import _build_checkpoint
from plancheck.inputs.checkpoint.unpickle import (
    _DType,
    _NDArrayMarker,
    _SafeUnpickler,
    _StandIn,
    _Storage,
    _StorageType,
    _TensorStub,
    _numpy_leaf,
)


# --------------------------------------------------------------------------- torch zip


def _is_data_pkl(name: str) -> bool:
    return name.endswith("/data.pkl") and name.count("/") == 1


def _read_torch_zip(path: str) -> Checkpoint:
    data = _read_data_pkl(path)
    unpickler = _SafeUnpickler(data)
    try:
        with warnings.catch_warnings():  # protocol-0 STRING escapes warn on bad input
            warnings.simplefilter("ignore")
            _prescan(data)
            top = unpickler.load()
    except CheckpointError as e:
        raise _err(e.message, path) from e
    except Exception as e:  # EOFError, UnpicklingError, ValueError, struct.error, ...
        raise _err(f"data.pkl cannot be unpickled ({_describe(e)})", path) from e
    if unpickler.n_tensors == 0:
        raise _err("data.pkl holds no tensors: not a model checkpoint", path)

    nbytes: dict[str, int] = {}

    def to_record(name: str, stub: Any) -> TensorRecord:
        storage = stub.storage
        if storage.key not in nbytes:
            itemsize = DTYPE_ITEMSIZE.get(storage.dtype, 0) if storage.typed else 1
            nbytes[storage.key] = storage.numel * itemsize
        return _new_record(stub.size, stub.dtype, storage.key, storage.location, stub.offset,
                           stub.stride)

    def leaf(obj: object, convert: Callable[[object], object]) -> tuple[bool, object]:
        if type(obj) is _TensorStub:
            return True, to_record("", obj)
        if type(obj) is _DType:
            return True, f"torch.{obj.name}"
        if type(obj) in (_Storage, _StorageType, _StandIn, _NDArrayMarker):
            return True, None
        return _numpy_leaf(obj, convert)

    ckpt = _build_checkpoint(path, "torch-zip", top, lambda o: type(o) is _TensorStub,
                             to_record, leaf)
    return dataclasses.replace(ckpt, storage_nbytes=MappingProxyType(nbytes))


def _read_data_pkl(path: str) -> bytes:
    zf = _open_zip(path)
    with zf:
        try:
            infos = [i for i in zf.infolist() if _is_data_pkl(i.filename)]
        except Exception as e:  # pragma: no cover - infolist is in memory
            raise _err(f"cannot list the zip archive ({_describe(e)})", path) from e
        if not infos:
            names = [_one_line(n, 60) for n in zf.namelist()[:4]]
            listing = ", ".join(names) + (", ..." if len(zf.namelist()) > 4 else "")
            raise _err(
                f"zip archive without <folder>/data.pkl: not a torch checkpoint"
                f" (entries: {listing or 'none'})",
                path,
            )
        if len(infos) > 1:
            names = ", ".join(_one_line(i.filename, 60) for i in infos[:4])
            raise _err(f"zip archive with {len(infos)} data.pkl entries ({names}): ambiguous", path)
        info = infos[0]
        if info.file_size > MAX_PICKLE_BYTES:
            raise _err(
                f"{_one_line(info.filename, 80)} is {info.file_size} bytes, over the"
                f" {MAX_PICKLE_BYTES} byte limit",
                path,
            )
        try:
            with zf.open(info) as fh:
                data = fh.read(MAX_PICKLE_BYTES + 1)
        except zipfile.BadZipFile as e:
            raise _err(f"damaged zip archive: {_one_line(e)}", path) from e
        except Exception as e:  # EOFError, zlib.error, NotImplementedError, RuntimeError, ...
            raise _err(f"cannot read {_one_line(info.filename, 80)} ({_describe(e)})", path) from e
        if len(data) > MAX_PICKLE_BYTES:
            raise _err(f"{_one_line(info.filename, 80)} is over the {MAX_PICKLE_BYTES} byte limit",
                       path)
        return data
