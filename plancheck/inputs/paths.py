"""Field paths: structured while plancheck works, strings only when rendered.

A :data:`FieldPath` is a tuple of dict keys (``str``) and list indices (``int``), as
:func:`plancheck.compare.jsondiff.differences` gives it. :func:`format_path` writes one
the way a user reads a plans file (``configurations.3d_fullres.architecture.arch_kwargs.strides[4]``),
:func:`parse_path` reads it back, and :func:`locate` turns a path in a *resolved*
configuration into the path as it stands in the user's file: an inherited key under the
configuration that defines it, a converted old-format field under its old name.

Nothing here imports torch or nnU-Net.
"""

from __future__ import annotations

import json
import re
import typing as t

from plancheck.errors import PathSyntaxError

if t.TYPE_CHECKING:
    from plancheck.inputs.plans import PlansFile, ResolvedConfiguration

__all__ = ["DATASET_JSON", "FieldPath", "PathSyntaxError", "format_path", "locate", "parse_path"]

FieldPath = tuple[t.Union[str, int], ...]

#: First element of a path into the dataset.json (rendered ``dataset.json:labels.liver``).
DATASET_JSON = "dataset.json"
_DATASET_PREFIX = DATASET_JSON + ":"

# A key is written bare when it cannot be misread: no separators, quotes, backslashes or control characters.
_BARE_KEY = re.compile(r'[^.\[\]"\\\x00-\x1f\x7f]+')
_INDEX = re.compile(r"-?[0-9]+")


def _key(key: str, first: bool) -> str:
    if _BARE_KEY.fullmatch(key):
        return key if first else "." + key
    return "[" + json.dumps(key, ensure_ascii=False) + "]"


def format_path(path: t.Sequence[str | int]) -> str:
    """``("configurations", "3d_fullres", "patch_size", 0)`` -> ``configurations.3d_fullres.patch_size[0]``.

    List indices are written ``[i]``, keys are joined by dots, and a key that contains a
    dot, a bracket or a quote is written ``["a.b"]``. A path that starts with
    :data:`DATASET_JSON` names a dataset.json field: ``dataset.json:labels.liver``.
    """
    out: list[str] = []
    items = list(path)
    if items and items[0] == DATASET_JSON:
        out.append(_DATASET_PREFIX)
        items = items[1:]
    first = True
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise TypeError(f"path elements are str or int, not {type(item).__name__}: {item!r}")
        if isinstance(item, int):
            out.append(f"[{item}]")
        else:
            out.append(_key(item, first))
        first = False
    return "".join(out)


def parse_path(text: str) -> FieldPath:
    """The inverse of :func:`format_path`: ``strides[4]`` -> ``("strides", 4)``."""
    items: list[str | int] = []
    pos = 0
    if text.startswith(_DATASET_PREFIX):
        items.append(DATASET_JSON)
        pos = len(_DATASET_PREFIX)
    start = pos
    decoder = json.JSONDecoder()
    while pos < len(text):
        ch = text[pos]
        if ch == "[":
            if text.startswith('["', pos):
                try:
                    key, end = decoder.raw_decode(text, pos + 1)
                except json.JSONDecodeError as e:
                    raise PathSyntaxError(f"bad quoted key at {pos} in {text!r}: {e.msg}") from e
                items.append(key)
            else:
                close = text.find("]", pos)
                number = text[pos + 1 : close] if close >= 0 else ""
                if not _INDEX.fullmatch(number):
                    raise PathSyntaxError(f"expected an index or a quoted key at {pos} in {text!r}")
                items.append(int(number))
                end = close
            if end >= len(text) or text[end] != "]":
                raise PathSyntaxError(f"missing ']' at {end} in {text!r}")
            pos = end + 1
            continue
        if ch == ".":
            if pos == start:
                raise PathSyntaxError(f"path starts with '.': {text!r}")
            pos += 1
        elif pos != start:
            raise PathSyntaxError(f"expected '.' or '[' at {pos} in {text!r}")
        match = _BARE_KEY.match(text, pos)
        if match is None:
            raise PathSyntaxError(f"expected a key at {pos} in {text!r}")
        items.append(match.group())
        pos = match.end()
    return tuple(items)


# --- where a resolved value stands in the user's file -------------------------------------------------------------

_ARCH_KWARGS = ("architecture", "arch_kwargs")


def _defining(plans: PlansFile, resolved: ResolvedConfiguration, key: str) -> str:
    """The configuration of the inheritance chain (child first) whose own dict holds ``key``."""
    configs = plans.data["configurations"]
    for name in resolved.chain or (resolved.name,):
        if key in configs.get(name, {}):
            return name
    return resolved.defined_in.get(key, resolved.name)


def _legacy_location(plans: PlansFile, resolved: ResolvedConfiguration, path: FieldPath) -> FieldPath:
    """Where a field that nnU-Net converted from the old plans format stands in the file."""
    old: str
    rest: FieldPath = ()
    if len(path) >= 2 and path[1] == "network_class_name":
        old = "UNet_class_name"
    elif len(path) >= 3 and path[:2] == _ARCH_KWARGS and isinstance(path[2], str):
        field = path[2]
        tail = path[3:]
        mapped = resolved.legacy_fields.get(field)
        if field == "features_per_stage":
            old = "UNet_base_num_features"
            if tail and isinstance(tail[0], int):
                old = _features_field(plans, resolved, tail[0])
        elif field in ("n_stages", "conv_op", "norm_op") and mapped:
            old = mapped  # derived from a list's length / the patch size's length: no index into it
        elif mapped:
            old, rest = mapped, tail
        else:
            # conv_bias, norm_op_kwargs, nonlin, ...: constants of nnU-Net's converter, fixed by the class
            old = "UNet_class_name"
    else:
        old = "UNet_class_name"
    return ("configurations", _defining(plans, resolved, old), old, *rest)


def _features_field(plans: PlansFile, resolved: ResolvedConfiguration, stage: int) -> str:
    """``features_per_stage[i] = min(UNet_base_num_features * 2**i, unet_max_num_features)``: which one set it."""
    configs = plans.data["configurations"]
    base = configs[_defining(plans, resolved, "UNet_base_num_features")].get("UNet_base_num_features")
    cap = configs[_defining(plans, resolved, "unet_max_num_features")].get("unet_max_num_features")
    if isinstance(base, (int, float)) and isinstance(cap, (int, float)) and base * 2**stage > cap:
        return "unet_max_num_features"
    return "UNet_base_num_features"


def locate(
    plans: PlansFile, resolved: ResolvedConfiguration, path_in_resolved_configuration: t.Sequence[str | int]
) -> FieldPath:
    """The path, in the user's file, of a field of a resolved configuration.

    ``path_in_resolved_configuration`` starts inside the configuration (``("batch_size",)``,
    ``("architecture", "arch_kwargs", "strides", 4)``). The answer starts at the file's
    root: ``("configurations", <the configuration that defines the key>, ...)``, with a
    converted old-format field under its old name (``strides[4]`` ->
    ``pool_op_kernel_sizes[4]``; ``n_stages`` -> ``n_conv_per_stage_encoder``;
    ``features_per_stage[i]`` -> ``UNet_base_num_features``, or ``unet_max_num_features``
    when that caps stage ``i``; ``conv_op`` -> ``patch_size``, whose length sets it).
    """
    path = tuple(path_in_resolved_configuration)
    if not path:
        return ("configurations", resolved.name)
    top = path[0]
    if top == "architecture" and resolved.is_legacy:
        return _legacy_location(plans, resolved, path)
    if not isinstance(top, str):
        return ("configurations", resolved.name, *path)
    return ("configurations", _defining(plans, resolved, top), *path)
