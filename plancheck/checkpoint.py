"""Read the tensor layout of a checkpoint without running its code or reading its data.

A checkpoint downloaded from the internet is untrusted input: ``torch.load`` with
``weights_only=False`` runs whatever the pickle asks for. This module reads only
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

Every failure is a :class:`~plancheck.errors.CheckpointError` with a one-line message.
"""

from __future__ import annotations

import _compat_pickle
import array
import dataclasses
import functools
import io
import itertools
import json
import math
import os
import pickle
import pickletools
import re
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from plancheck.errors import CheckpointError

__all__ = [
    "ALLOWED_GLOBALS",
    "CONTAINER_KEYS",
    "EXTRA_KEYS",
    "Checkpoint",
    "TensorRecord",
    "read_checkpoint",
]

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
#: nnssl's pretraining checkpoints describe their network and how to adapt it there (plancheck.nnssl).
EXTRA_KEYS: tuple[str, ...] = ("nnssl_adaptation_plan", "citations")

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
    #: plain copies of the :data:`EXTRA_KEYS` the checkpoint dict holds (nnssl's adaptation plan, citations)
    extras: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

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


# --------------------------------------------------------------------------- stand-ins
#
# What find_class hands to a pickle must survive the BUILD opcode, which sets
# ``__dict__`` entries or slots of (or calls ``__setstate__`` on) whatever object is on
# the stack -- on a plain function it can even replace ``__defaults__``. So the pickle
# only ever sees:
#   * NamedTuples (immutable, no ``__dict__``, no ``__setstate__``): internal records
#     and :class:`_StandIn`, the callable wrapper of every stand-in function;
#   * builtin classes (OrderedDict, set, frozenset, slice, complex), which BUILD cannot
#     modify;
#   * the numpy builders :class:`_NpDType` / :class:`_NpArray`, whose ``__setstate__``
#     validates and stores plain data. No real numpy object is created while unpickling
#     (numpy's own ``dtype.__setstate__`` segfaults on a malformed state); they are
#     built afterwards, and only for what is returned (``init_args``).


class _StandIn(NamedTuple):
    """Immutable callable wrapper: REDUCE calls it; BUILD cannot change it."""

    qualname: str
    fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


class _StorageType(NamedTuple):
    dtype: str  # element dtype of a typed storage; "uint8" (bytes) for UntypedStorage
    typed: bool


class _Storage(NamedTuple):
    dtype: str
    typed: bool
    key: str
    location: str
    numel: int  # elements for a typed storage, bytes for an untyped one


class _DType(NamedTuple):
    name: str


class _TensorStub(NamedTuple):
    storage: _Storage
    dtype: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _NDArrayMarker(NamedTuple):
    """Stands in for ``numpy.ndarray``: only usable as ``_reconstruct``'s first argument."""


_NDARRAY = _NDArrayMarker()


class _NpDTypeClass(NamedTuple):
    """Stands in for a ``numpy.dtypes.<X>DType`` class (numpy 2 pickles dtype classes so)."""

    name: str


_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}

#: ``torch.<name>`` dtype globals (``_rebuild_tensor_v3`` pickles the dtype) -> canonical name.
_TORCH_DTYPES: dict[str, str] = {
    **{n: n for n in (
        "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
        "uint8", "bool", "complex32", "complex64", "complex128", "uint16", "uint32",
        "uint64", "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz",
        "float8_e8m0fnu", "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4",
        "bits4x2",
    )},
    "float": "float32", "double": "float64", "half": "float16", "long": "int64",
    "int": "int32", "short": "int16", "cfloat": "complex64", "cdouble": "complex128",
    "chalf": "complex32",
}

_NUMPY_DTYPE_CLASSES = (
    "Float16DType", "Float32DType", "Float64DType", "LongDoubleDType", "Int8DType",
    "Int16DType", "Int32DType", "Int64DType", "LongDType", "LongLongDType",
    "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "ULongDType",
    "ULongLongDType", "BoolDType", "Complex64DType", "Complex128DType", "BytesDType",
    "StrDType", "ObjectDType",
)

#: numpy dtype strings a pickle may name: bool, integers, floats, complex, object, str, bytes.
_NP_DTYPE_SPEC = re.compile(r"b1|[iu][1248]|f(2|4|8|12|16)|c(8|16|24|32)|O8|[US][1-9][0-9]{0,8}")


def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


def _uint_tuple(x: object) -> tuple[int, ...] | None:
    if not isinstance(x, (tuple, list)):
        return None
    for v in x:  # a plain loop: this runs twice per tensor while unpickling
        if type(v) is not int or v < 0:
            return None
    return tuple(x)


#: ``tuple.__new__``: builds the internal NamedTuple records without their Python-level
#: ``__new__`` (which only re-packs the arguments) -- thousands of them per checkpoint.
_tuple_new = tuple.__new__


def _make_stub(storage: object, offset: object, size: object, stride: object,
               dtype: str | None) -> _TensorStub:
    if type(storage) is not _Storage:
        raise CheckpointError(
            f"malformed tensor in data.pkl: its storage is a {_type_name(storage)},"
            " not a persistent storage reference"
        )
    shape: tuple[int, ...] | None = size  # type: ignore[assignment]
    strides: tuple[int, ...] | None = stride  # type: ignore[assignment]
    if type(size) is not tuple or type(stride) is not tuple:  # torch writes plain tuples
        shape, strides = _uint_tuple(size), _uint_tuple(stride)
    ok = shape is not None and strides is not None and len(shape) == len(strides) \
        and type(offset) is int and offset >= 0
    if ok:  # one pass (this runs once per tensor): non-negative ints, and the extent
        assert shape is not None and strides is not None and isinstance(offset, int)
        extent = offset + 1
        for n, s in zip(shape, strides):
            if type(n) is not int or type(s) is not int or n < 0 or s < 0:
                ok = False
                break
            extent += (n - 1) * s
    if not ok:
        raise CheckpointError(
            "malformed tensor in data.pkl: size, stride and offset must be non-negative integers"
            " (size and stride of equal length)"
        )
    if storage.typed and 0 not in shape and extent > storage.numel:  # type: ignore[operator]
        # (an empty tensor reaches no element)
        raise CheckpointError(
            f"malformed tensor in data.pkl: shape {shape} at offset {offset} reaches element"
            f" {extent} of storage {storage.key!r}, which holds {storage.numel}"
        )
    return _tuple_new(_TensorStub, (storage, dtype or storage.dtype, offset, shape, strides))


def _torch_device(type_or_str: object, index: object = None) -> str:
    if not isinstance(type_or_str, str) or not (index is None or _is_uint(index)):
        raise CheckpointError("malformed torch.device in data.pkl")
    return type_or_str if index is None else f"{type_or_str}:{index}"


def _torch_size(dims: object = ()) -> tuple[int, ...]:
    shape = _uint_tuple(dims)
    if shape is None:
        raise CheckpointError("malformed torch.Size in data.pkl")
    return shape


def _codecs_encode(obj: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
    # Protocol 2 pickles ``bytes`` as ``_codecs.encode(text, "latin1")``; nothing else.
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise CheckpointError("refuses _codecs.encode with anything but (str, 'latin1')")
    return obj.encode("latin-1")


def _safe_bytes_factory(kind: type) -> Callable[..., object]:
    # bytes(n) would allocate n zero bytes, so only the forms pickle emits are allowed.
    def build(*args: object) -> object:
        if not args:
            return kind()
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return kind(args[0].encode("latin-1"))
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return kind(args[0])
        raise CheckpointError(f"refuses builtins.{kind.__name__} with these arguments")

    return build


class _NpDType:
    """``numpy.dtype(spec, align, copy)`` plus its BUILD state, validated; numpy-free."""

    __slots__ = ("spec", "byteorder", "_kind", "_itemsize")

    def __init__(self, spec: str, kind: str, itemsize: int) -> None:
        self.spec = spec
        self.byteorder = "="
        self._kind = kind
        self._itemsize = itemsize

    def __setstate__(self, state: object) -> None:
        # (3, byteorder, subarray, names, fields, elsize, alignment, flags) for plain dtypes.
        ok = (
            isinstance(state, tuple) and len(state) == 8 and state[0] == 3
            and state[1] in ("<", ">", "|", "=")
            and all(x is None for x in state[2:5])
            and all(type(x) is int for x in state[5:8])
        )
        if ok:
            assert isinstance(state, tuple)
            flexible = self._kind in "US"
            ok = (state[5] == self._itemsize) if flexible else (state[5] == state[6] == -1)
        if not ok:
            raise CheckpointError(
                f"unsupported numpy dtype state for {self.spec!r} in data.pkl"
            )
        assert isinstance(state, tuple)
        self.byteorder = state[1]

    def build(self) -> Any:
        import numpy

        dt = numpy.dtype(self.spec)
        if self.byteorder in "<>" and dt.byteorder != "|":
            dt = dt.newbyteorder(self.byteorder)
        return dt


def _np_dtype(spec: object, align: object = False, copy: object = True) -> _NpDType:
    if not (isinstance(spec, str) and _NP_DTYPE_SPEC.fullmatch(spec)
            and type(align) is bool and type(copy) is bool):
        raise CheckpointError(f"unsupported numpy dtype {_one_line(spec, 40)!r} in data.pkl")
    import numpy

    dt = numpy.dtype(spec)  # a validated short string: no state, no code
    return _NpDType(spec, dt.kind, dt.itemsize)


class _NpScalar(NamedTuple):
    dtype: _NpDType
    data: bytes


def _np_scalar(dtype: object, *args: object) -> object:
    if not isinstance(dtype, _NpDType) or len(args) > 1:
        raise CheckpointError("malformed numpy scalar in data.pkl")
    if dtype._kind == "O":  # numpy returns the object itself
        return args[0] if args else None
    if len(args) != 1 or not isinstance(args[0], bytes) or len(args[0]) != dtype._itemsize:
        raise CheckpointError("malformed numpy scalar in data.pkl: data does not fit its dtype")
    return _NpScalar(dtype, args[0])


class _NpArray:
    """``numpy._reconstruct(ndarray, (0,), b"b")`` plus its BUILD state, validated."""

    __slots__ = ("shape", "dtype", "fortran", "raw")

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: _NpDType | None = None
        self.fortran = False
        self.raw: object = None

    def __setstate__(self, state: object) -> None:
        # (version, shape, dtype, is_fortran, rawdata); rawdata is a list for object arrays.
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise CheckpointError("malformed numpy array state in data.pkl")
        _, shape, dtype, fortran, raw = state
        shape = _uint_tuple(shape)
        if shape is None or not isinstance(dtype, _NpDType) or type(fortran) is not bool:
            raise CheckpointError("malformed numpy array state in data.pkl")
        n = math.prod(shape)
        if dtype._kind == "O":
            ok = isinstance(raw, list) and len(raw) == n
        else:
            ok = isinstance(raw, bytes) and len(raw) == n * dtype._itemsize
        if not ok:
            raise CheckpointError("malformed numpy array in data.pkl: data does not fit its shape")
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, raw

    def build(self, convert: Callable[[object], object]) -> Any:
        import numpy

        if self.shape is None or self.dtype is None:
            raise CheckpointError("malformed numpy array in data.pkl: it has no data")
        order = "F" if self.fortran else "C"
        dt = self.dtype.build()
        if isinstance(self.raw, list):
            flat = numpy.empty(len(self.raw), dtype=object)
            for i, item in enumerate(self.raw):
                flat[i] = convert(item)
            return flat.reshape(self.shape, order=order)
        assert isinstance(self.raw, bytes)
        return numpy.frombuffer(self.raw, dtype=dt).reshape(self.shape, order=order).copy(order="K")


def _np_reconstruct(subtype: object, shape: object, dtype_code: object) -> _NpArray:
    # ndarray.__reduce__ always emits _reconstruct(ndarray, (0,), b"b"); the data comes
    # with the following BUILD (our __setstate__), bounded by the pickle's own size.
    if subtype is not _NDARRAY or not isinstance(shape, tuple) or shape != (0,) \
            or not isinstance(dtype_code, bytes):
        raise CheckpointError("refuses numpy _reconstruct other than of an empty ndarray")
    return _NpArray()


def _numpy_leaf(obj: object, convert: Callable[[object], object]) -> tuple[bool, object]:
    """Real numpy objects for the numpy builders (after unpickling)."""
    if type(obj) is _NpScalar:
        import numpy

        return True, numpy.frombuffer(obj.data, dtype=obj.dtype.build())[0]
    if type(obj) is _NpArray:
        return True, obj.build(convert)
    if type(obj) is _NpDType:
        return True, obj.build()
    if type(obj) is _NpDTypeClass:
        import numpy.dtypes

        return True, getattr(numpy.dtypes, obj.name)
    return False, obj


#: Sentinel for table entries that are methods of the unpickler (they count tensors).
_BOUND = object()


def _allowed_table() -> dict[str, object]:
    """``module.name`` -> what find_class hands out (``_BOUND``: the unpickler's method)."""
    table: dict[str, object] = {}

    def stand_in(qualname: str, fn: Callable[..., Any]) -> None:
        table[qualname] = _StandIn(qualname, fn)

    for fn in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
               "_rebuild_parameter", "_rebuild_parameter_with_state"):
        table[f"torch._utils.{fn}"] = _BOUND
    for cls, dt in _STORAGE_DTYPES.items():
        table[f"torch.{cls}"] = _StorageType(dt, True)
    for mod in ("torch", "torch.storage"):
        table[f"{mod}.UntypedStorage"] = _StorageType("uint8", False)
    for name, canonical in _TORCH_DTYPES.items():
        table[f"torch.{name}"] = _DType(canonical)
    stand_in("torch.device", _torch_device)
    stand_in("torch.Size", _torch_size)

    table["collections.OrderedDict"] = OrderedDict
    table["builtins.set"] = set
    table["builtins.frozenset"] = frozenset
    table["builtins.slice"] = slice
    table["builtins.complex"] = complex
    stand_in("builtins.bytes", _safe_bytes_factory(bytes))
    stand_in("builtins.bytearray", _safe_bytes_factory(bytearray))
    stand_in("_codecs.encode", _codecs_encode)

    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 / numpy 2
        stand_in(f"{mod}.scalar", _np_scalar)
        stand_in(f"{mod}._reconstruct", _np_reconstruct)
    stand_in("numpy.dtype", _np_dtype)
    table["numpy.ndarray"] = _NDARRAY
    for name in _NUMPY_DTYPE_CLASSES:
        table[f"numpy.dtypes.{name}"] = _NpDTypeClass(name)
    return table


_ALLOWED = _allowed_table()

#: Every global a checkpoint's pickle may name (``module.name``, Python 3 spelling).
ALLOWED_GLOBALS: frozenset[str] = frozenset(_ALLOWED)


# --------------------------------------------------------------------------- unpickler

#: Bytes the unpickler sees at once (all of nnU-Net's data.pkl, a few hundred kB).
_UNPICKLE_BUFFER = 1 << 20


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`, all to stand-ins."""

    def __init__(self, data: bytes) -> None:
        # A stream with peek(): the C unpickler then works through the buffer it peeks. From
        # a BytesIO (no peek) it calls read() for every opcode, half of its time.
        stream = io.BufferedReader(io.BytesIO(data),
                                   buffer_size=max(1, min(len(data), _UNPICKLE_BUFFER)))
        super().__init__(stream)
        self.n_tensors = 0

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError("malformed global reference in data.pkl")
        # Protocol 0-2 pickles use Python 2 names (e.g. __builtin__.set).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qual = f"{module}.{name}"
        value = _ALLOWED.get(qual)
        if value is None:
            raise CheckpointError(
                f"refuses to load global {_one_line(qual, 120)}: not a tensor, numpy scalar or"
                " plain container, and loading it could run code (read it trusted only if you"
                " trust its source)"
            )
        if value is _BOUND:
            return _StandIn(qual, getattr(self, name))
        return value

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(
                f"unknown persistent id in data.pkl (a {_type_name(pid)}, not a storage reference)"
            )
        _, stype, key, location, numel = pid
        if type(stype) is not _StorageType or not isinstance(key, str) \
                or not isinstance(location, str) or type(numel) is not int or numel < 0:
            raise CheckpointError("malformed storage reference in data.pkl")
        return _tuple_new(_Storage, (stype.dtype, stype.typed, key, location, numel))

    # Stand-ins for torch._utils; same signatures, produce _TensorStub.

    def _rebuild_tensor(self, storage: object, storage_offset: object, size: object,
                        stride: object) -> _TensorStub:
        if type(storage) is _Storage and not storage.typed:
            raise CheckpointError("malformed tensor in data.pkl: untyped storage without a dtype")
        stub = _make_stub(storage, storage_offset, size, stride, None)
        self.n_tensors += 1
        return stub

    def _rebuild_tensor_v2(self, storage: object, storage_offset: object, size: object,
                           stride: object, requires_grad: object = False,
                           backward_hooks: object = None, metadata: object = None) -> _TensorStub:
        # Every tensor of a checkpoint comes through here: _rebuild_tensor, inlined.
        if type(storage) is _Storage and not storage.typed:
            raise CheckpointError("malformed tensor in data.pkl: untyped storage without a dtype")
        stub = _make_stub(storage, storage_offset, size, stride, None)
        self.n_tensors += 1
        return stub

    def _rebuild_tensor_v3(self, storage: object, storage_offset: object, size: object,
                           stride: object, requires_grad: object, backward_hooks: object,
                           dtype: object, metadata: object = None) -> _TensorStub:
        if type(dtype) is not _DType:
            raise CheckpointError("malformed tensor in data.pkl: dtype is not a torch dtype")
        stub = _make_stub(storage, storage_offset, size, stride, dtype.name)
        self.n_tensors += 1
        return stub

    def _rebuild_parameter(self, data: object, requires_grad: object,
                           backward_hooks: object) -> _TensorStub:
        if type(data) is not _TensorStub:
            raise CheckpointError("malformed parameter in data.pkl: its data is not a tensor")
        return data

    def _rebuild_parameter_with_state(self, data: object, requires_grad: object,
                                      backward_hooks: object, state: object) -> _TensorStub:
        return self._rebuild_parameter(data, requires_grad, backward_hooks)


# --------------------------------------------------------------------------- pre-scan
#
# The rule. Before unpickling, data.pkl's opcodes -- as pickletools.genops reads them,
# up to the first STOP -- are run on an abstract stack of nesting depths: a leaf pushes 0,
# an empty container 1, a container built from stack items 1 + the deepest of them, a
# call (REDUCE, NEWOBJ, BUILD) the deepest of its operands; APPEND(S), SETITEM(S) and
# ADDITEMS raise their container to 1 + the deepest item added; PUT remembers the depth
# on top of the stack, GET pushes it back. data.pkl is refused when a depth exceeds
# MAX_PICKLE_NESTING, when a memo index is larger than the opcode's ordinal, when the
# opcodes cannot be read (unknown opcode, truncated argument, bad text or UTF-8 argument,
# no STOP), and when the walk itself fails (stack underflow, no MARK, a MARK beyond the
# stack, GET of an index never PUT).
#
# The walker (_walk). A hand-written loop over the bytes decides exactly that rule (the
# tests hold it against the pickletools-based implementation it replaced, on real, mutated
# and generated pickles): the opcodes protocol 2 pickles are made of are decoded inline,
# every other opcode through pickletools' own argument readers (_scan_other), unknown
# bytes are refused. Memo depths live in a bytearray (a depth is at most
# MAX_PICKLE_NESTING < _UNDEFINED). Shortcuts keep it cheap without changing the answer:
#   * memo indices as picklers write them -- each PUT the next free slot -- are checked
#     against the number of PUTs read so far, a lower bound of the opcode's ordinal; the
#     ordinal itself is counted (_Memo.ordinal) only for an index above that bound;
#   * a tensor record as torch.save writes it (_tensor_record_pattern), and a run of the
#     {name: {"version": n}} entries of a state_dict's _metadata (_dict_entries), are
#     matched by a regular expression and applied as a whole -- when their GETs fetch
#     depth-0 entries and their PUTs fill the next free slots, in order; anything else is
#     walked opcode by opcode.
# On a 410 MB ResEnc-L checkpoint (39k opcodes) this takes ~3.5 ms; the same rule over
# pickletools.genops took ~25 ms. (The patterns compile on first use, ~12 ms once.)

#: Opcode byte -> pickletools' description: the opcodes genops knows, and no others.
_OPCODES: dict[int, pickletools.OpcodeInfo] = {
    op.code.encode("latin-1")[0]: op for op in pickletools.opcodes
}
#: Memo slot that no PUT has filled (a depth is at most MAX_PICKLE_NESTING).
_UNDEFINED = 255
assert MAX_PICKLE_NESTING < _UNDEFINED
_u32 = struct.Struct("<I").unpack_from

_PUSH_LEAF = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT", "NONE", "NEWTRUE",
    "NEWFALSE", "GLOBAL", "PERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
})
_PUSH_EMPTY = frozenset({"EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"})
_FROM_MARK_BUILD = frozenset({"LIST", "TUPLE", "DICT", "FROZENSET", "INST", "OBJ"})
_FROM_MARK_EXTEND = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_POP_N_PUSH = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "REDUCE": 2, "NEWOBJ": 2,
               "NEWOBJ_EX": 3, "STACK_GLOBAL": 2, "BINPERSID": 1}
_MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"})


def _too_deep() -> CheckpointError:
    return CheckpointError(
        f"data.pkl nests objects deeper than {MAX_PICKLE_NESTING} levels: refusing"
    )


def _never_put(idx: int) -> ValueError:
    return ValueError(f"pickle GET of memo index {idx}, which no PUT filled")


def _prescan(data: bytes) -> None:
    """Walk data.pkl's opcodes without building anything; refuse what would crash CPython.

    Tracks how deeply each stack item nests (at construction) and refuses nesting over
    :data:`MAX_PICKLE_NESTING`; refuses memo indices beyond the opcodes read so far (the
    C unpickler sizes its memo by the largest index). Raises ValueError (or
    UnicodeDecodeError) for malformed pickles; the caller turns those into CheckpointError.
    The rule in full is described above.
    """
    try:
        _walk(data)
    except (IndexError, struct.error) as e:  # an argument or opcode past the end, or a pop
        raise ValueError("pickle exhausted before seeing STOP, or its stack underflows"
                         f" ({_describe(e)})") from None


def _walk(data: bytes) -> None:
    stack: list[int] = []
    push = stack.append
    pop = stack.pop
    marks: list[int] = []
    md = bytearray()  # memo index -> depth, _UNDEFINED where no PUT has been
    memo = _Memo()  # what the fast paths never need
    good = {b""}  # GET opcodes (with argument) known to fetch a depth-0 entry; b"": no GET
    n_puts = 0  # memo-storing opcodes so far: a lower bound of the current opcode's ordinal
    record = _tensor_record_pattern().match
    record_depths = _TENSOR_RECORD_DEPTHS
    put_run = _PUT_RUN
    covered = _put_run_covers(put_run) - 9  # a record from below here fills slots in put_run
    no_run_before = 0
    u32 = _u32
    end = len(data)
    deepest = MAX_PICKLE_NESTING
    i = 0
    # Ordered by how often they occur in torch checkpoints; each branch leaves i at the next opcode.
    while True:
        op = data[i]
        if op == 0x72:  # r LONG_BINPUT
            idx = u32(data, i + 1)[0]
            if idx == len(md) and idx <= n_puts:
                md.append(stack[-1])
            else:
                memo.put(data, i, idx, md, n_puts, stack, good)
            n_puts += 1
            i += 5
        elif op == 0x58:  # X BINUNICODE
            j = i + 5 + u32(data, i + 1)[0]
            if j > end:
                raise ValueError("pickle exhausted before seeing STOP (truncated BINUNICODE)")
            k = data[j]  # (peeks stay within the bytes: the rule may refuse the PUT first)
            if (k == 0x72 and j + 5 < end and data[j + 5] == 0x7D
                    or k == 0x71 and j + 2 < end and data[j + 2] == 0x7D) \
                    and i >= no_run_before:  # X PUT } PUT: {name: {"version": n}} entries?
                n = len(md)
                k = _dict_entries(data, i, md, n_puts, good, stack)
                if k > 0:
                    n_puts += len(md) - n
                    i = k
                    continue
                no_run_before = -k  # (a run that does not qualify: not again within it)
            str(data[i + 5:j], "utf-8", "surrogatepass")  # as genops decodes it
            push(0)
            i = j
            if data[i] == 0x72 and u32(data, i + 1)[0] == len(md) <= n_puts:  # and its PUT
                md.append(0)
                n_puts += 1
                i += 5
        elif op == 0x4B:  # K BININT1
            push(0)
            i += 2
        elif op == 0x68 or op == 0x6A:  # h BINGET, j LONG_BINGET
            j = i + 2 if op == 0x68 else i + 5
            if data[j] == 0x28 and data[j + 1] == 0x28:  # GET MARK MARK: a tensor record?
                m = record(data, i)
                at_get = i
                while m is not None:  # this record, and the named ones right after it
                    name_put, fn, storage, stype, key_put, key_get, location, pid, size, \
                        stride, hooks_fn, hooks, args, tensor = m.groups(b"")
                    first = len(md)
                    if first > n_puts or not (
                            good.issuperset((fn, storage, stype, key_get, location, hooks_fn))
                            or _depth0_gets(md, good, fn, storage, stype, key_get, location,
                                            hooks_fn)):
                        break
                    puts = b"".join((name_put, key_put, pid, size, stride, hooks, args, tensor))
                    if first < covered:
                        if not put_run.startswith(puts, _put_offset(first)):
                            break
                    elif _sequential_puts(first, puts):
                        put_run = _PUT_RUN  # (grown)
                        covered = _put_run_covers(put_run) - 9
                    else:
                        break
                    if name_put:
                        md.append(0)
                        push(0)
                    depths = record_depths[(key_put != b"") + 2 * (size != b"")
                                           + 4 * (stride != b"")]
                    md += depths
                    n_puts = len(md) - first + n_puts
                    push(2)
                    i = m.end()
                    m = record(data, i) if data[i] == 0x58 else None
                if i != at_get:
                    continue
            idx = data[i + 1] if op == 0x68 else u32(data, i + 1)[0]
            if idx >= len(md) or md[idx] == _UNDEFINED:
                raise _never_put(idx)
            push(md[idx])
            i = j
        elif op == 0x7D or op == 0x29 or op == 0x5D:  # EMPTY_DICT, EMPTY_TUPLE, EMPTY_LIST
            push(1)
            i += 1
            if data[i] == 0x72 and u32(data, i + 1)[0] == len(md) <= n_puts:  # and its PUT
                md.append(1)
                n_puts += 1
                i += 5
        elif op == 0x73:  # s SETITEM
            v = pop()
            k = pop()
            d = stack[-1]
            if k >= d:
                d = k + 1
            if v >= d:
                d = v + 1
            if d > deepest:
                raise _too_deep()
            stack[-1] = d
            i += 1
        elif op == 0x28:  # ( MARK
            marks.append(len(stack))
            i += 1
        elif op == 0x74:  # t TUPLE
            start = marks.pop()
            if start > len(stack):
                raise ValueError("pickle mark beyond the stack")
            d = max(stack[start:], default=0) + 1
            if d > deepest:
                raise _too_deep()
            stack[start:] = (d,)
            i += 1
        elif op == 0x52:  # R REDUCE
            v = pop()
            if v > stack[-1]:
                stack[-1] = v
            i += 1
        elif op == 0x4D:  # M BININT2
            push(0)
            i += 3
        elif op == 0x85:  # TUPLE1
            d = stack[-1] + 1
            if d > deepest:
                raise _too_deep()
            stack[-1] = d
            i += 1
        elif op == 0x86:  # TUPLE2
            v = pop()
            d = stack[-1]
            d = (v if v > d else d) + 1
            if d > deepest:
                raise _too_deep()
            stack[-1] = d
            i += 1
        elif op == 0x65 or op == 0x75:  # e APPENDS, u SETITEMS
            start = marks.pop()
            if start > len(stack):
                raise ValueError("pickle mark beyond the stack")
            d = max(stack[start:], default=0) + 1
            del stack[start:]
            if d > stack[-1]:
                if d > deepest:
                    raise _too_deep()
                stack[-1] = d
            i += 1
        elif op == 0x47 or op == 0x4A:  # G BINFLOAT, J BININT
            push(0)
            i += 9 if op == 0x47 else 5
        elif op == 0x71:  # q BINPUT
            idx = data[i + 1]
            if idx == len(md) and idx <= n_puts:
                md.append(stack[-1])
            else:
                memo.put(data, i, idx, md, n_puts, stack, good)
            n_puts += 1
            i += 2
        elif op == 0x89 or op == 0x88 or op == 0x4E:  # NEWFALSE, NEWTRUE, NONE
            push(0)
            i += 1
        elif op == 0x51:  # Q BINPERSID
            stack[-1] = 0
            i += 1
        elif op == 0x2E:  # . STOP
            return
        elif op == 0x70 or op == 0x94:  # p PUT, MEMOIZE
            if op == 0x94:
                idx, j = memo.size(md), i + 1
            else:
                idx, j = _text_arg(data, i)
            memo.put(data, i, idx, md, n_puts, stack, good)
            n_puts += 1
            i = j
        elif op == 0x67:  # g GET
            idx, i = _text_arg(data, i)
            push(memo.get(idx, md))
        else:
            i = _scan_other(data, i, op, stack, marks)


def _text_arg(data: bytes, i: int) -> tuple[int, int]:
    """The decimal argument of PUT / GET at *i*, read as genops reads it; the next position."""
    f = io.BytesIO(data)
    f.seek(i + 1)
    return int(pickletools.read_decimalnl_short(f)), f.tell()


class _Memo:
    """The walk's memo beyond the common case: out-of-order and negative indices, ordinals."""

    __slots__ = ("negative", "holes", "ordinal_at")

    def __init__(self) -> None:
        self.negative: dict[int, int] = {}  # text PUT takes any integer, also a negative one
        self.holes = 0  # _UNDEFINED slots below len(md)
        self.ordinal_at = (0, 0)  # (position, ordinal) of an opcode counted already

    def size(self, md: bytearray) -> int:
        """How many indices are filled: MEMOIZE's index."""
        return len(md) - self.holes + len(self.negative)

    def get(self, idx: int, md: bytearray) -> int:
        if idx < 0 and idx in self.negative:
            return self.negative[idx]
        if idx < 0 or idx >= len(md) or md[idx] == _UNDEFINED:
            raise _never_put(idx)
        return md[idx]

    def put(self, data: bytes, pos: int, idx: int, md: bytearray, n_puts: int,
            stack: list[int], good: set[bytes]) -> None:
        if idx > n_puts and idx > self.ordinal(data, pos):
            raise ValueError(f"pickle memo index {idx} out of range")
        depth = stack[-1]
        good.clear()  # an entry may change: forget which GETs fetch depth 0
        good.add(b"")
        if idx < 0:
            self.negative[idx] = depth
            return
        if idx >= len(md):  # bounded: idx <= ordinal < len(data)
            self.holes += idx - len(md)
            md.extend(b"\xff" * (idx - len(md)))
            md.append(depth)
        else:
            if md[idx] == _UNDEFINED:
                self.holes -= 1
            md[idx] = depth

    def ordinal(self, data: bytes, pos: int) -> int:
        """How many opcodes precede the one at *pos* (counted once per walk, left to right)."""
        start, n = self.ordinal_at
        if pos < start:  # pragma: no cover - the walk only moves forward
            start, n = 0, 0
        f = io.BytesIO(data)
        f.seek(start)
        for k, (_, _, at) in enumerate(pickletools.genops(f)):
            if at == pos:
                self.ordinal_at = (pos, n + k)
                return n + k
            if at > pos:  # pragma: no cover - the walker reads opcodes as genops does
                break
        raise ValueError("pickle opcodes out of step")  # pragma: no cover


def _scan_other(data: bytes, i: int, op: int, stack: list[int], marks: list[int]) -> int:
    """The rule for one opcode the walker's fast branches leave out; the next position."""
    info = _OPCODES.get(op)
    if info is None:
        raise ValueError(f"at position {i}, opcode {bytes([op])!r} unknown")
    name = info.name
    if name in _MEMO_OPS:  # pragma: no cover - the walker handles every memo opcode
        raise AssertionError(name)
    arg = info.arg
    if arg is None:
        i += 1
    elif arg.n >= 0:  # fixed size: genops checks only that the bytes are there
        i += 1 + arg.n
        if i > len(data):
            raise ValueError(f"pickle exhausted before seeing STOP (truncated {name})")
    else:
        f = io.BytesIO(data)
        f.seek(i + 1)
        arg.reader(f)  # the exact checks genops makes: lengths, newlines, decoding
        i = f.tell()

    def push(depth: int) -> None:
        if depth > MAX_PICKLE_NESTING:
            raise _too_deep()
        stack.append(depth)

    if name in _PUSH_LEAF:
        push(0)
    elif name in _PUSH_EMPTY:
        push(1)
    elif name in _POP_N_PUSH:
        n = _POP_N_PUSH[name]
        if len(stack) < n:
            raise ValueError(f"pickle stack underflow at {name}")
        items = stack[-n:]
        del stack[-n:]
        push(0 if name in ("STACK_GLOBAL", "BINPERSID")
             else 1 + max(items) if name.startswith("TUPLE") else max(items))
    elif name in _FROM_MARK_BUILD:
        push(1 + max(_pop_mark(stack, marks), default=0))
    elif name in _FROM_MARK_EXTEND:
        items = _pop_mark(stack, marks)
        stack[-1] = max(stack[-1], 1 + max(items, default=0))
        push(stack.pop())
    elif name == "APPEND":
        v = stack.pop()
        push(max(stack.pop(), v + 1))
    elif name == "SETITEM":
        v, k = stack.pop(), stack.pop()
        push(max(stack.pop(), k + 1, v + 1))
    elif name == "BUILD":
        state = stack.pop()
        push(max(stack.pop(), state))
    elif name == "MARK":
        marks.append(len(stack))
    elif name == "POP":
        stack.pop()
    elif name == "POP_MARK":
        _pop_mark(stack, marks)
    elif name == "DUP":
        push(stack[-1])
    # PROTO, FRAME, READONLY_BUFFER, READWRITE_BUFFER, STOP: no effect on nesting (STOP
    # itself ends the walk before it gets here)
    return i


def _pop_mark(stack: list[int], marks: list[int]) -> list[int]:
    start = marks.pop()
    if start > len(stack):
        raise ValueError("pickle mark beyond the stack")
    items = stack[start:]
    del stack[start:]
    return items


# A tensor as torch.save pickles it (protocol 2): _rebuild_tensor_v2(storage, offset, size,
# stride, requires_grad, OrderedDict()) with a persistent storage reference --
#   GET fn ( ( GET "storage" GET FloatStorage X"key" PUT|GET key GET "cpu" INT t PUT Q
#   INT size stride NEWFALSE GET OrderedDict ) R PUT t PUT R PUT
# where size and stride are ( ), INT TUPLE1 PUT, ..., or ( INT ... t PUT ); in a state_dict
# the tensor's name comes first: X"name" PUT. By the rule, with every GET fetching depth 0,
# that pushes the name (0) and one item of depth 2, and fills memo slots, in order, with:
# the name 0, the key 0 (when new), the storage tuple 1, size 1 and stride 1 (when not
# empty), OrderedDict() 1, the argument tuple 2, the tensor 2.
_ANY = rb"[\x00-\xff]"
_GET = rb"(h" + _ANY + rb"|j" + _ANY + rb"{4})"
_PUT = rb"(q" + _ANY + rb"|r" + _ANY + rb"{4})"
_INT = rb"(?:K" + _ANY + rb"|M" + _ANY + rb"{2}|J" + _ANY + rb"{4})"
#: BINUNICODE of an ASCII string of at most 127 bytes: its length needs no decoding, its
#: bytes no UTF-8 check (what torch writes for module and parameter names).
_NAME = rb"X(?:" + rb"|".join(re.escape(bytes([n, 0, 0, 0])) + rb"[\x00-\x7f]{%d}" % n
                              for n in range(128)) + rb")"
_KEY = rb"X(?:" + rb"|".join(bytes([n]) + rb"\x00\x00\x00[0-9]{%d}" % n for n in range(1, 20)) + rb")"
_SHAPE = (rb"(?:\)|(?:" + _INT + rb"\x85|" + _INT + rb"{2}\x86|" + _INT + rb"{3}\x87|\("
          + _INT + rb"*t)" + _PUT + rb")")


@functools.lru_cache(maxsize=None)
def _tensor_record_pattern() -> re.Pattern[bytes]:
    """A tensor record, with or without its name; compiled on first use (~4 ms)."""
    return re.compile(
        rb"(?:" + _NAME + _PUT + rb")?" + _GET + rb"\(\(" + _GET + _GET + rb"(?:" + _KEY + _PUT
        + rb"|" + _GET + rb")" + _GET + _INT + rb"t" + _PUT + rb"Q" + _INT + _SHAPE + _SHAPE
        + rb"[\x88\x89]" + _GET + rb"\)R" + _PUT + rb"t" + _PUT + rb"R" + _PUT
    )


#: Memo depths a tensor record fills, indexed by new key + 2 * (size not empty) + 4 * (stride
#: not empty): the key 0, the storage tuple 1, size 1, stride 1, OrderedDict() 1, the
#: argument tuple 2, the tensor 2.
_TENSOR_RECORD_DEPTHS = tuple(
    bytes([0] * (v & 1) + [1] + [1] * (v >> 1 & 1) + [1] * (v >> 2 & 1) + [1, 2, 2])
    for v in range(8)
)


def _depth0_gets(md: bytearray, good: set[bytes], *gets: bytes) -> bool:
    """Whether each GET opcode (with its argument) fetches a depth-0 entry; remembers those."""
    for get in gets:
        if get and get not in good:  # (b"": an optional GET that is not there)
            idx = get[1] if get[0] == 0x68 else _u32(get, 1)[0]
            if idx >= len(md) or md[idx] != 0:
                return False
            good.add(get)
    return True


# A run of entries {"name": {"version": n}, ...} -- the _metadata torch keeps with every
# state_dict, one entry per module:
#   X"name" PUT } PUT GET "version" INT s   X"name" PUT } PUT GET "version" INT s ...
# By the rule, with the GET fetching depth 0, each entry pushes the name (0) and the dict (1)
# and fills two memo slots: the name 0, the (then empty) dict 1.


@functools.lru_cache(maxsize=None)
def _dict_entry_patterns() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """(a run of entries, one entry capturing its two PUTs); compiled on first use (~5 ms)."""
    name = _NAME
    put = rb"(?:q" + _ANY + rb"|r" + _ANY + rb"{4})"
    get = rb"(?:h" + _ANY + rb"|j" + _ANY + rb"{4})"
    run = re.compile(name + put + rb"\}" + put + rb"(" + get + rb")" + _INT + rb"s(?:"
                     + name + put + rb"\}" + put + rb"\1" + _INT + rb"s)*")
    entry = re.compile(name + rb"(" + put + rb")\}(" + put + rb")" + get + _INT + rb"s")
    return run, entry


def _dict_entries(data: bytes, i: int, md: bytearray, n_puts: int, good: set[bytes],
                  stack: list[int]) -> int:
    """Apply the run of {name: {"version": n}} entries at *i* as a whole: its end; or minus
    its end when it cannot be applied (so that the walker does not try again within it)."""
    run, entry = _dict_entry_patterns()
    m = run.match(data, i)
    if m is None:
        return -i
    first = len(md)  # the PUTs must fill the next free slots, each within the rule
    if first > n_puts or not _depth0_gets(md, good, m.group(1)):  # one GET, in every entry
        return -m.end()
    entries = entry.findall(data, i, m.end())  # the same entries: each parses one way only
    puts = b"".join(itertools.chain.from_iterable(entries))
    if not _sequential_puts(first, puts):
        return -m.end()
    md += b"\x00\x01" * len(entries)
    stack += (0, 1) * len(entries)
    return m.end()


def _put_offset(idx: int) -> int:
    """Where the PUT of *idx* starts in :func:`_expected_puts` ``(0, ...)``."""
    return 2 * idx if idx <= 256 else 5 * idx - 768


def _expected_puts(first: int, stop: int) -> bytes:
    """The PUTs picklers write for indices first .. stop-1: BINPUT below 256, LONG_BINPUT
    from there on."""
    out = bytearray()
    if first < 256:
        n = min(stop, 256) - first
        short = bytearray(2 * n)
        short[0::2] = b"q" * n
        short[1::2] = bytes(range(first, first + n))
        out += short
        first += n
    if first < stop:
        n = stop - first
        indices = array.array("I", range(first, stop))
        if sys.byteorder == "big":
            indices.byteswap()
        raw = indices.tobytes()
        longs = bytearray(5 * n)
        longs[0::5] = b"r" * n
        for k in range(4):  # the little-endian bytes of each index
            longs[1 + k::5] = raw[k::4]
        out += longs
    return bytes(out)


#: The PUTs of indices 0, 1, ... as picklers write them: built as far as walks needed, up to
#: _PUT_RUN_INDICES (640 kB); past that, each check builds its own.
_PUT_RUN_INDICES = 1 << 17
_PUT_RUN = b""
assert array.array("I").itemsize == 4


def _put_run(stop: int) -> bytes:
    """:data:`_PUT_RUN` covering indices up to *stop*; b"" if *stop* is past the cap."""
    global _PUT_RUN
    if stop > _PUT_RUN_INDICES:
        return b""
    if _put_run_covers(_PUT_RUN) < stop:
        _PUT_RUN = _expected_puts(0, min(max(2 * stop, 4096), _PUT_RUN_INDICES))
    return _PUT_RUN


def _put_run_covers(run: bytes) -> int:
    """How many indices *run* (a :data:`_PUT_RUN`, b"" or at least 256 PUTs) has the PUTs of."""
    return (len(run) - 512) // 5 + 256 if run else 0


def _sequential_puts(first: int, puts: bytes) -> bool:
    """Whether *puts* are the PUTs of first, first + 1, ... as picklers write them."""
    stop = first + len(puts) // 2 + 1  # (each PUT takes 2 bytes or more)
    run = _put_run(stop)
    if run:
        return run.startswith(puts, _put_offset(first))
    return _expected_puts(first, stop).startswith(puts)


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

    def to_record(name: str, stub: Any) -> TensorRecord:
        storage = stub.storage
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

    return _build_checkpoint(path, "torch-zip", top, lambda o: type(o) is _TensorStub,
                             to_record, leaf)


def _read_data_pkl(path: str) -> bytes:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise _err(f"damaged zip archive (truncated or corrupt): {_one_line(e)}", path) from e
    except Exception as e:
        raise _err(f"cannot open the zip archive ({_describe(e)})", path) from e
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
    )


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


# --------------------------------------------------------------------------- shared


def _is_state_dict(obj: object, is_tensor: Callable[[object], bool]) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and is_tensor(v) for k, v in obj.items())
    )


def _first_non_tensor(obj: Mapping[Any, Any], is_tensor: Callable[[object], bool]) -> str:
    for k, v in obj.items():
        if not isinstance(k, str):
            return f"it has a key of type {_type_name(k)}"
        if not is_tensor(v):
            return f"entry {_one_line(k, 80)!r} is of type {_type_name(v)}, not a tensor"
    return "it is empty"


def _select_state_dict(
    top: object, is_tensor: Callable[[object], bool], path: str
) -> tuple[str | None, Mapping[str, Any]]:
    """The state_dict inside *top*, and the key it was found under (None: *top* itself)."""
    if not isinstance(top, Mapping):
        raise _err(f"top-level object is a {_type_name(top)}, not a state_dict or checkpoint dict",
                   path)
    for key in CONTAINER_KEYS:
        if key in top and _is_state_dict(top[key], is_tensor):
            return key, top[key]
    if _is_state_dict(top, is_tensor):
        return None, top
    found = [k for k, v in top.items() if isinstance(k, str) and _is_state_dict(v, is_tensor)]
    if len(found) == 1:
        return found[0], top[found[0]]
    for key in CONTAINER_KEYS:
        if key in top and isinstance(top[key], Mapping):
            raise _err(f"{key} is not a state_dict: {_first_non_tensor(top[key], is_tensor)}",
                       path)
    shown = ", ".join(_one_line(k, 40) for k in list(top)[:8]) + (", ..." if len(top) > 8 else "")
    what = f"{len(found)} candidates" if found else "none"
    raise _err(f"no state_dict (mapping of names to tensors) found, {what}; top-level keys: {shown}",
               path)


_Leaf = Callable[[object, Callable[[object], object]], tuple[bool, object]]
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy_plain(obj: object, leaf: _Leaf, path: str, what: str = "init_args") -> Any:
    """Deep copy of *obj* with internal records replaced by public values (bounded depth).

    *leaf(o, convert)* returns ``(True, replacement)`` for objects it handles; *convert*
    copies nested objects (numpy object arrays).
    """
    active: set[int] = set()

    def walk(o: object, depth: int) -> Any:
        if type(o) in _PLAIN_SCALARS and depth <= _MAX_DEPTH:  # what leaf() passes through
            return o
        handled, value = leaf(o, lambda item: walk(item, depth + 1))
        if handled:
            return value
        if depth > _MAX_DEPTH:
            raise _err(f"{what} nested deeper than {_MAX_DEPTH} levels", path)
        if isinstance(o, (dict, list, tuple, set, frozenset)):
            if id(o) in active:
                raise _err(f"{what} contains a reference cycle", path)
            active.add(id(o))
            try:
                if isinstance(o, dict):  # OrderedDict becomes a plain (ordered) dict
                    return {walk(k, depth + 1): walk(v, depth + 1) for k, v in o.items()}
                if isinstance(o, list):
                    return [walk(v, depth + 1) for v in o]
                items = [walk(v, depth + 1) for v in o]
                if isinstance(o, tuple):
                    return tuple(items)
                return frozenset(items) if isinstance(o, frozenset) else set(items)
            finally:
                active.discard(id(o))
        return o

    try:
        return walk(obj, 0)
    except CheckpointError as e:
        if e.path is None:
            raise _err(e.message, path) from e
        raise
    except Exception as e:  # unhashable keys after conversion, numpy errors, ...
        raise _err(f"{what} cannot be copied ({_describe(e)})", path) from e


def _build_checkpoint(
    path: str,
    fmt: str,
    top: object,
    is_tensor: Callable[[object], bool],
    to_record: Callable[[str, Any], TensorRecord],
    leaf: _Leaf,
) -> Checkpoint:
    container_key, raw = _select_state_dict(top, is_tensor, path)
    assert isinstance(top, Mapping)
    state_dict = {name: to_record(name, t) for name, t in raw.items()}

    init_args = top.get("init_args") if container_key is not None else None
    init_args = _copy_plain(init_args, leaf, path) if isinstance(init_args, dict) else None
    trainer_name = top.get("trainer_name") if container_key is not None else None
    current_epoch = top.get("current_epoch") if container_key is not None else None
    extras = {
        key: _copy_plain(top[key], leaf, path, what=key)
        for key in EXTRA_KEYS
        if container_key is not None and key in top
    }
    return Checkpoint(
        path=path,
        format=fmt,
        state_dict=MappingProxyType(state_dict),
        container_key=container_key,
        init_args=init_args,
        trainer_name=trainer_name if isinstance(trainer_name, str) else None,
        current_epoch=current_epoch if type(current_epoch) is int else None,
        top_level_keys=tuple(k if isinstance(k, str) else f"<{_type_name(k)} key>" for k in top),
        extras=MappingProxyType(extras),
    )

