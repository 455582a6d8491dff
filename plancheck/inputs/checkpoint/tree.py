"""Shared by every container: find the state_dict in the unpickled object and copy
``init_args`` out as plain data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from plancheck.errors import CheckpointError
from plancheck.inputs.checkpoint.records import (
    CONTAINER_KEYS,
    EXTRA_KEYS,
    Checkpoint,
    TensorRecord,
    _MAX_DEPTH,
    _describe,
    _err,
    _one_line,
    _type_name,
)


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
