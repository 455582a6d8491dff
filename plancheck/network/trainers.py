"""Find nnU-Net trainer classes by name, and build networks through their ``build_network_architecture``.

A checkpoint names the trainer that produced it (``trainer_name``), and a custom trainer
may build another network than the plans describe. nnU-Net finds a trainer with
``recursive_find_python_class``, which imports every module under
``nnunetv2/training/nnUNetTrainer`` until one has the name; that pulls in the Primus
trainers and with them timm and torchvision. plancheck instead reads those source files
with :mod:`ast` (in nnU-Net's search order: a folder's modules, then its subpackages) and
imports only the module that defines the class, and only when the class, or a trainer it
derives from, overrides ``build_network_architecture``. A trainer that does not (most
variants change epochs, losses or augmentation) builds exactly the network of
``get_network_from_plans``, which plancheck builds without importing any trainer.

Trainers outside nnunetv2 are searched only in modules the user names with
``--allow-import`` (imported, then looked up by name), or given as a dotted path inside
such a module. Nothing here imports torch at module level.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
import typing as t
from dataclasses import dataclass

from plancheck._nnunet import captured_warnings, quiet
from plancheck.errors import BuildError, TrainerError

__all__ = [
    "DEFAULT_TRAINER",
    "TrainerError",
    "TrainerRef",
    "build_with_trainer",
    "load_trainer_class",
    "resolve_trainer",
]

#: nnU-Net's default trainer; its network is get_network_from_plans' (plancheck's fast path).
DEFAULT_TRAINER = "nnUNetTrainer"
_DEFAULT_TRAINER_PATH = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer.nnUNetTrainer"
#: The package nnU-Net searches for trainers (``recursive_find_trainer_class_by_name``).
TRAINER_PACKAGE = "nnunetv2.training.nnUNetTrainer"
_BUILD = "build_network_architecture"


@dataclass(frozen=True)
class TrainerRef:
    """A trainer found by name: where it lives, and whether it builds its own network."""

    name: str
    class_path: str
    overrides_build: bool  #: False: its network is exactly get_network_from_plans'
    origin: str  #: "nnunetv2" or "--allow-import <module>"

    @property
    def build_path(self) -> str | None:
        """The class to build through, or None when the plans-only build is exact."""
        return self.class_path if self.overrides_build else None


# --------------------------------------------------------------------------- lookup


@dataclass(frozen=True)
class _ClassInfo:
    module: str
    bases: tuple[str, ...]
    defines_build: bool


@functools.lru_cache(maxsize=1)
def _trainer_index() -> dict[str, _ClassInfo]:
    """Top-level classes under nnunetv2/training/nnUNetTrainer, first definition per name in nnU-Net's order."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - nnunetv2 is a dependency
        return {}
    root = os.path.join(spec.submodule_search_locations[0], *TRAINER_PACKAGE.split(".")[1:])
    index: dict[str, _ClassInfo] = {}

    def visit(folder: str, module: str) -> None:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            return
        packages = []
        for entry in entries:
            path = os.path.join(folder, entry)
            if entry.endswith(".py") and entry != "__init__.py" and os.path.isfile(path):
                _index_file(path, f"{module}.{entry[:-3]}", index)
            elif os.path.isfile(os.path.join(path, "__init__.py")) and entry.isidentifier():
                packages.append(entry)
        for package in packages:
            visit(os.path.join(folder, package), f"{module}.{package}")

    visit(root, TRAINER_PACKAGE)
    return index


def _index_file(path: str, module: str, index: dict[str, _ClassInfo]) -> None:
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name in index:
            continue
        bases = tuple(_base_name(b) for b in node.bases)
        defines = any(
            isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == _BUILD for item in node.body
        ) or any(
            isinstance(item, ast.Assign) and any(isinstance(tg, ast.Name) and tg.id == _BUILD for tg in item.targets)
            for item in node.body
        )
        index[node.name] = _ClassInfo(module=module, bases=bases, defines_build=defines)


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return "?"


def _overrides_by_source(name: str, index: dict[str, _ClassInfo]) -> bool | None:
    """Whether ``name`` (or a base) overrides build_network_architecture; None when the source cannot tell."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        info = index.get(current)
        if info is None:
            return None  # a base defined outside the trainer package (or by assignment): import to know
        if current == DEFAULT_TRAINER and info.module == _DEFAULT_TRAINER_PATH.rsplit(".", 1)[0]:
            continue
        if info.defines_build:
            return True
        stack.extend(b for b in info.bases if b != "object")
    return False


def _overrides_by_class(cls: type) -> bool:
    """Whether the first class in the MRO that defines build_network_architecture is not nnUNetTrainer."""
    for klass in inspect.getmro(cls):
        if _BUILD in vars(klass):
            return f"{klass.__module__}.{klass.__qualname__}" != _DEFAULT_TRAINER_PATH
    return True  # no build_network_architecture anywhere: not a trainer we can build through


def _import(module_name: str, what: str) -> t.Any:
    try:
        with quiet(), captured_warnings():
            return importlib.import_module(module_name)
    except Exception as e:  # e.g. timm/torchvision missing for the Primus trainers
        from plancheck.network.torchenv import diagnose

        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        why = diagnose(e) or f"{type(e).__name__}: {first}"
        raise TrainerError(f"cannot import {module_name} for {what}: {why}") from e


def load_trainer_class(class_path: str) -> type:
    """Import the module of ``class_path`` (already vetted by :func:`resolve_trainer`) and return the class."""
    module_name, _, class_name = class_path.rpartition(".")
    obj = getattr(_import(module_name, f"trainer {class_name}"), class_name, None)
    if not inspect.isclass(obj):
        raise TrainerError(f"trainer {class_path} is not a class")
    return obj


def resolve_trainer(name: str, *, allow: t.Iterable[str] = (), requested_by: str = "--trainer") -> TrainerRef:
    """Find trainer ``name`` in nnunetv2 (by source), then in the ``allow`` modules (by import).

    ``name`` may also be a dotted ``module.Class`` inside nnunetv2 or an allowed module.
    Raises :class:`TrainerError` when it is not found or cannot be imported.
    """
    allow = tuple(allow)
    if name == DEFAULT_TRAINER:
        return TrainerRef(name, _DEFAULT_TRAINER_PATH, False, "nnunetv2")
    if "." in name:
        return _resolve_dotted(name, allow, requested_by)
    if not name.isidentifier():
        raise TrainerError(f"trainer name {name!r} ({requested_by}) is not a Python class name")
    index = _trainer_index()
    info = index.get(name)
    if info is not None:
        class_path = f"{info.module}.{name}"
        overrides = _overrides_by_source(name, index)
        if overrides is None:
            overrides = _overrides_by_class(load_trainer_class(class_path))
        elif overrides:
            load_trainer_class(class_path)  # fail now (exit 3) rather than while building
        return TrainerRef(name, class_path, overrides, "nnunetv2")
    from plancheck.finetune import TRAINERS as FINETUNE_TRAINERS

    if name in FINETUNE_TRAINERS:  # plancheck's own fine-tuning trainers: they build the plans' network
        return TrainerRef(name, f"plancheck.finetune.trainer.{name}", False, "plancheck")
    for module_name in allow:
        module = _import(module_name, f"trainer {name} (--allow-import {module_name})")
        obj = getattr(module, name, None)
        if inspect.isclass(obj):
            return TrainerRef(name, f"{module_name}.{name}", _overrides_by_class(obj), f"--allow-import {module_name}")
    searched = TRAINER_PACKAGE + "".join(f", {m}" for m in allow)
    raise TrainerError(
        f"trainer '{name}' ({requested_by}) not found in {searched}; plancheck does not import trainers from "
        "nnUNet_extTrainer folders: name the module that defines it with `allow_import` MODULE, "
        "or pass `ignore_trainer` to build from the plans alone"
    )


def _resolve_dotted(path: str, allow: tuple[str, ...], requested_by: str) -> TrainerRef:
    from plancheck.network.classpath import is_allowed

    if not is_allowed(path, allow):
        raise TrainerError(
            f"refusing to import trainer '{path}' ({requested_by}): only trainers in nnunetv2 or a module named "
            "with `allow_import` MODULE are imported"
        )
    cls = load_trainer_class(path)
    module = getattr(cls, "__module__", "") or ""
    if not is_allowed(module, allow):
        raise TrainerError(f"trainer '{path}' resolves to {module}.{cls.__qualname__}, outside the allowed packages")
    origin = "nnunetv2" if module.startswith("nnunetv2") else f"--allow-import {module}"
    return TrainerRef(path.rsplit(".", 1)[1], path, _overrides_by_class(cls), origin)


# --------------------------------------------------------------------------- build


def trainer_signature(trainer_cls: type) -> str:
    """``"new"`` (plans_manager, configuration_manager, ...; nnU-Net >= 2.7) or ``"old"`` (class name, kwargs, ...)."""
    fn = inspect.getattr_static(trainer_cls, _BUILD, None)
    if fn is None:
        raise BuildError(f"trainer {trainer_cls.__qualname__} has no {_BUILD}")
    if not isinstance(fn, (staticmethod, classmethod)):
        raise BuildError(
            f"trainer {trainer_cls.__qualname__}.{_BUILD} is an instance method; nnU-Net calls it as a staticmethod"
        )
    params = list(inspect.signature(getattr(trainer_cls, _BUILD)).parameters)
    if "architecture_class_name" in params or "arch_init_kwargs" in params:
        return "old"
    if "dataset_json" in params:
        raise BuildError(
            f"trainer {trainer_cls.__qualname__}.{_BUILD}{inspect.signature(getattr(trainer_cls, _BUILD))} has the "
            "nnU-Net < 2.4 signature (with dataset_json), which plancheck does not build"
        )
    if "plans_manager" in params or "configuration_manager" in params:
        return "new"
    return "old" if len(params) >= 6 else "new"


def build_with_trainer(
    trainer_cls: type,
    plans_manager: t.Any,
    configuration_manager: t.Any,
    num_input_channels: int,
    num_output_channels: int,
    enable_deep_supervision: bool = True,
    *,
    device: str = "meta",
) -> t.Any:
    """Call the trainer's ``build_network_architecture`` (either signature) on ``device`` (meta: shapes only)."""
    import torch

    style = trainer_signature(trainer_cls)
    build = getattr(trainer_cls, _BUILD)
    with torch.device(device):
        if style == "new":
            return build(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                         enable_deep_supervision)
        return build(
            configuration_manager.network_arch_class_name,
            configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import,
            num_input_channels,
            num_output_channels,
            enable_deep_supervision,
        )
