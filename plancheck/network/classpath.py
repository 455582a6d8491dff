"""Resolve the class paths that plans name, without running code that plans did not ask for.

A plans file from the internet names Python classes (``network_class_name``, the
``_kw_requires_import`` entries). nnU-Net hands those strings to ``pydoc.locate``, which
imports whatever module they name. plancheck resolves them itself first, and only inside
``torch.nn``, ``dynamic_network_architectures`` and ``nnunetv2`` (plus modules the user
names with ``--allow-import``). Any other path is refused before anything is imported.

Classes that moved between versions of dynamic_network_architectures (old plans name
``...architectures.residual_unet.ResidualEncoderUNet``, now in ``...architectures.unet``)
are found by reading the package's source files with :mod:`ast`, then importing only
the one module that defines the class. nnU-Net's own fallback imports every
architecture module, which drags in timm and torchvision for the transformer models.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import typing as t
from dataclasses import dataclass

from plancheck._nnunet import quiet
from plancheck.errors import ClassRefused

__all__ = ["ALLOWED_ROOTS", "ResolvedClass", "find_defining_module", "is_allowed", "resolve_class"]

#: Packages whose classes a plans file may name.
ALLOWED_ROOTS: tuple[str, ...] = ("torch.nn", "dynamic_network_architectures", "nnunetv2")

# Packages searched (by source, not by import) for a class whose module moved.
_MOVED_SEARCH_PACKAGES = ("dynamic_network_architectures.architectures",)

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class ResolvedClass:
    """A class path as written in the plans, and where the class actually lives."""

    declared: str
    canonical: str
    obj: type

    @property
    def moved(self) -> bool:
        return self.declared != self.canonical


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + ".")


def is_allowed(path: str, extra: t.Iterable[str] = ()) -> bool:
    """Whether ``path`` lies inside a package plancheck may import from."""
    return any(_under(path, root) for root in (*ALLOWED_ROOTS, *extra))


def resolve_class(path: object, *, field: str, source: str, allow: t.Iterable[str] = ()) -> ResolvedClass:
    """Resolve ``path`` (the value of plans field ``field`` in ``source``) to a class.

    Raises :class:`ClassRefused` when the path lies outside the allowed packages, cannot
    be found, or does not name a class defined in an allowed package.
    """
    allow = tuple(allow)
    if not isinstance(path, str) or not _DOTTED.match(path):
        raise ClassRefused(f"{field} must be a dotted class path, got {path!r}", path=source)
    if not is_allowed(path, allow):
        raise ClassRefused(
            f"refusing to import {field} '{path}': only classes in "
            f"{', '.join((*ALLOWED_ROOTS, *allow))} are resolved (use `allow_import` MODULE to trust another)",
            path=source,
        )
    obj = _locate(path, field=field, source=source)
    canonical = path
    if obj is None:
        found = _find_moved(path.rsplit(".", 1)[1])
        if found is None:
            raise ClassRefused(f"{field} '{path}' not found (no such module or class)", path=source)
        canonical = found
        obj = _locate(found, field=field, source=source)
        if obj is None:  # pragma: no cover - the source scan found a definition that import did not
            raise ClassRefused(f"{field} '{path}' not found", path=source)
    if not inspect.isclass(obj):
        raise ClassRefused(f"{field} '{path}' is not a class", path=source)
    module = getattr(obj, "__module__", "") or ""
    if not is_allowed(module, allow):
        raise ClassRefused(
            f"{field} '{path}' resolves to {module}.{obj.__qualname__}, outside the allowed packages", path=source
        )
    return ResolvedClass(declared=path, canonical=canonical, obj=obj)


def _locate(path: str, *, field: str, source: str) -> t.Any | None:
    """Import the longest module prefix of ``path`` and walk the rest as attributes."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            with quiet():
                spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        except Exception as e:  # a parent package failed to import
            raise ClassRefused(
                f"cannot import {module_name} for {field} '{path}': {type(e).__name__}: {_first_line(e)}",
                path=source,
            ) from e
        if spec is None:
            continue
        try:
            with quiet():
                obj: t.Any = importlib.import_module(module_name)
        except Exception as e:  # e.g. timm/torchvision missing or broken for the transformer models
            from plancheck.network.torchenv import diagnose

            why = diagnose(e) or f"{type(e).__name__}: {_first_line(e)}"
            raise ClassRefused(f"cannot import {module_name} for {field} '{path}': {why}", path=source) from e
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""


def _find_moved(class_name: str) -> str | None:
    """Find the module that defines ``class_name`` by parsing source files, importing nothing."""
    for package in _MOVED_SEARCH_PACKAGES:
        module = find_defining_module(package, class_name)
        if module is not None:
            return f"{module}.{class_name}"
    return None


def find_defining_module(package: str, class_name: str) -> str | None:
    """The module under ``package`` whose source defines ``class_name`` at top level; imports nothing.

    Reading the files with :mod:`ast` lets plancheck import only that one module, where a
    search by import (nnU-Net's ``recursive_find_python_class``) would import them all.
    """
    root_name = package.split(".")[0]
    spec = importlib.util.find_spec(root_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = os.path.join(spec.submodule_search_locations[0], *package.split(".")[1:])
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            file_path = os.path.join(dirpath, filename)
            try:
                with open(file_path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read(), filename=file_path)
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            if any(isinstance(node, ast.ClassDef) and node.name == class_name for node in tree.body):
                rel = os.path.relpath(file_path[: -len(".py")], base).replace(os.sep, ".")
                return f"{package}.{rel}".removesuffix(".__init__")
    return None
