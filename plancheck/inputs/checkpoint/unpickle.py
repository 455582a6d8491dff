"""The restricted unpickler: the allowlist of globals a checkpoint's data.pkl may name, the
harmless stand-ins they resolve to, and :class:`_SafeUnpickler`, which builds tensor stubs
(shape, dtype, storage) and never reads tensor data."""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from plancheck.errors import CheckpointError
from plancheck.inputs.checkpoint.records import _is_uint, _one_line, _type_name, _uint_tuple


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
