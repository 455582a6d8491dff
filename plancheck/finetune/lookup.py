"""How the installed nnU-Net finds plancheck's fine-tuning trainers, and the one-file install where it cannot.

nnU-Net finds a trainer by name (``-tr``) with a lookup that differs between releases:

- **2.8 and later**: ``nnunetv2.utilities.find_objects.recursive_find_trainer_class_by_name``
  searches nnU-Net's own trainer folder, then every folder in ``nnUNet_extTrainer``. plancheck's
  folder (:func:`plancheck.finetune.trainers_folder`) is named there; nothing is installed.
- **2.6 and 2.7**: ``recursive_find_python_class`` searches nnU-Net's own trainer folder only
  (``nnunetv2/training/nnUNetTrainer``); ``nnUNet_extTrainer`` is ignored. nnU-Net's own
  documentation asks for custom trainers to be put in that folder, so :func:`install` writes one
  module there, :data:`SHIM_NAME`, that only re-exports plancheck's trainers (nnU-Net's lookup
  imports every module of the folder and takes the class by name). :func:`uninstall` removes it,
  and only it.

The same lookup runs when nnU-Net predicts with a model these trainers trained
(``nnUNetv2_predict`` builds the trainer named in the checkpoint), so the environment variable,
or the installed module, is needed there too.

Nothing here imports torch or nnU-Net: the release is told from nnU-Net's files.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os

from plancheck.atomic import atomic_write_text
from plancheck.errors import InputError, OutputExists, ReadBackError

__all__ = ["SHIM_NAME", "Lookup", "install", "lookup", "shim_text", "uninstall"]

#: The module :func:`install` writes into nnU-Net's trainer folder.
SHIM_NAME = "plancheck_finetune_trainers.py"
_MARKER = "# written by `plancheck trainers --install`; removed by `plancheck trainers --uninstall`"


@dataclasses.dataclass(frozen=True)
class Lookup:
    """How the nnU-Net installed beside plancheck finds trainers."""

    nnunet_version: str
    ext_trainer: bool  #: the lookup reads nnUNet_extTrainer (2.8+)
    trainer_folder: str  #: nnU-Net's own trainer folder (nnunetv2/training/nnUNetTrainer)
    shim_path: str  #: where :func:`install` writes its module
    shim_installed: bool  #: that module is there and is plancheck's (current text)

    def describe(self) -> str:
        if self.ext_trainer:
            how = "finds them through nnUNet_extTrainer"
            if self.shim_installed:
                how += f" (and through {self.shim_path}, installed)"
        elif self.shim_installed:
            how = f"has no nnUNet_extTrainer; finds them through {self.shim_path} (installed)"
        else:
            how = ("has no nnUNet_extTrainer and does not find them yet: run `plancheck trainers --install` once "
                   f"(writes {self.shim_path}, one module that re-exports them)")
        return f"nnunetv2 {self.nnunet_version} {how}"


def _nnunet_dir() -> str:
    spec = importlib.util.find_spec("nnunetv2")  # a top-level spec: imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise InputError("nnunetv2 is not installed in this environment: the fine-tuning trainers need it")
    return list(spec.submodule_search_locations)[0]


def shim_text() -> str:
    """The module :func:`install` writes: plancheck's trainers, re-exported for nnU-Net's lookup."""
    from plancheck.finetune import TRAINERS

    names = "".join(f"    {name},\n" for name in TRAINERS)
    return (f"{_MARKER}\n"
            '"""plancheck\'s fine-tuning trainers, found by name by nnU-Net\'s lookup (plancheck trainers)."""\n'
            f"from plancheck.finetune.trainer import (  # noqa: F401\n{names})\n")


def lookup() -> Lookup:
    """How the installed nnU-Net finds trainers, and whether the module of :func:`install` is in place."""
    root = _nnunet_dir()
    folder = os.path.join(root, "training", "nnUNetTrainer")
    shim = os.path.join(folder, SHIM_NAME)
    try:
        version = importlib.metadata.version("nnunetv2")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    installed = False
    if os.path.isfile(shim):
        with open(shim, encoding="utf-8", errors="replace") as fh:
            installed = fh.read() == shim_text()
    return Lookup(nnunet_version=version,
                  ext_trainer=os.path.isfile(os.path.join(root, "utilities", "find_objects.py")),
                  trainer_folder=folder, shim_path=shim, shim_installed=installed)


def _is_ours(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline().rstrip("\n") == _MARKER


def install(*, force: bool = False) -> tuple[Lookup, bool]:
    """Write :data:`SHIM_NAME` into nnU-Net's trainer folder; return the lookup after and whether anything changed.

    A file of that name that plancheck did not write is kept unless ``force``; an older
    plancheck module is replaced. The module is read back before it takes its name.
    """
    before = lookup()
    if before.shim_installed:
        return before, False
    path = before.shim_path
    if os.path.lexists(path) and not force and not _is_ours(path):
        raise OutputExists("exists and was not written by plancheck; not overwritten (pass `force` to replace it)",
                           path=path)
    text = shim_text()

    def check(tmp: str) -> None:
        with open(tmp, encoding="utf-8") as fh:
            if fh.read() != text:
                raise ReadBackError("the module read back differs from what was written", path=path)

    try:
        atomic_write_text(path, text, overwrite=True, check=check)
    except PermissionError as e:
        raise InputError(f"{before.trainer_folder}: not writable ({e.strerror}); install into an environment you "
                         "own (a venv), or use nnunetv2 >= 2.8 with nnUNet_extTrainer") from None
    after = lookup()
    if not after.shim_installed:
        raise ReadBackError("the installed module is not the one written", path=path)
    return after, True


def uninstall() -> tuple[Lookup, bool]:
    """Remove the module :func:`install` wrote (only a file plancheck wrote); whether anything was removed."""
    before = lookup()
    path = before.shim_path
    if not os.path.lexists(path):
        return before, False
    if not _is_ours(path):
        raise OutputExists("was not written by plancheck; not removed", path=path)
    os.remove(path)
    return lookup(), True
