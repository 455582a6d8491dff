"""Imports the ``plancheck`` command defers: nnU-Net's image I/O, which checking plans never calls.

nnU-Net's ``plans_handler`` imports its image reader/writer registry, which imports
SimpleITK, scikit-image, nibabel and tifffile; its label handling imports acvl_utils'
bounding boxes, which import blosc2. Together that is more than half a second, for
functions a check never calls (``PlansManager.image_reader_writer_class``, cropping).

:func:`defer` puts a finder first on ``sys.meta_path`` (it imports nothing itself). When
nnU-Net imports a module in :data:`DEFERRED`, the finder hands out a stand-in instead:
nnU-Net's ``from M import f`` gets a forwarder for each function it imports by name. The
first call of a forwarder, or any other use of the module (another attribute, ``dir()``),
imports the real module, which from then on replaces the stand-in in ``sys.modules`` and
on its parent package. So a code path that does need image I/O (``--fix`` choosing a
reader/writer for a dataset.json's ``file_ending``) gets nnU-Net's real code, just later.

When it hands out a stand-in, nnU-Net is importing its plans or label code, so torch and
numpy have been imported; the finder then calls :func:`gc.freeze`, so that the cyclic
collector, which a check keeps busy (a built nn.Module graph is cyclic garbage), no longer walks
the ~170k objects those imports leave for the life of the process: a full collection over
them costs about half a second, and a first check triggers one (the interpreter's exit
another, ~0.3 s, which ``python -c "import torch"`` pays too).

Only :func:`plancheck.cli.main.main` calls :func:`defer`, in the ``plancheck`` process. The
Python API and the pytest plugin never do: there, the user's imports are the user's.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery  # importlib.abc would cost an import of its own: the protocols are duck-typed
import importlib.util
import sys
import types
import typing as t

__all__ = ["DEFERRED", "defer", "is_deferred"]

#: module -> the functions nnU-Net imports from it by name (``from M import f``).
DEFERRED: dict[str, tuple[str, ...]] = {
    # plans_handler, the experiment planners (--fix memory estimate), fix.py's _reader_writer
    "nnunetv2.imageio.reader_writer_registry": (
        "recursive_find_reader_writer_by_name",
        "determine_reader_writer_from_dataset_json",
        "determine_reader_writer_from_file_ending",
    ),
    # label_handling, and the data loader, cropping and export that trainer modules import
    "acvl_utils.cropping_and_padding.bounding_boxes": (
        "insert_crop_into_image",
        "crop_and_pad_nd",
        "get_bbox_from_mask",
        "bounding_box_to_slice",
    ),
}


#: Dunder attributes that are the module's content, not a probe of what kind of module it is: these import it.
_LOADING_DUNDERS = frozenset({"__all__", "__version__"})


class _Deferred(types.ModuleType):
    """A stand-in for a module not imported yet: forwards its functions, imports the real one on any other use."""

    def __init__(self, name: str, functions: t.Iterable[str], real_spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(name)
        # what code that walks sys.modules reads (inspect.getmodule asks every module for __file__)
        self.__dict__.update(__file__=real_spec.origin, __cached__=real_spec.cached, _plancheck_real=None)
        for function in functions:
            self.__dict__[function] = _forwarder(self, function)

    def _plancheck_load(self) -> types.ModuleType:
        real = self.__dict__["_plancheck_real"]
        if real is None:
            name = self.__name__
            _FINDER.released.add(name)
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)  # also sets the parent package's attribute
            self.__dict__["_plancheck_real"] = real
        return real

    def __getattr__(self, name: str) -> t.Any:  # only for what the stand-in does not hold
        if name.startswith("__") and name.endswith("__") and name not in _LOADING_DUNDERS:
            # a probe (__path__, __wrapped__, ...) by code that walks sys.modules; a plain module lacks them
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(self._plancheck_load(), name)

    def __dir__(self) -> list[str]:
        return dir(self._plancheck_load())


def _forwarder(module: _Deferred, name: str) -> t.Callable[..., t.Any]:
    def forward(*args: t.Any, **kwargs: t.Any) -> t.Any:
        return getattr(module._plancheck_load(), name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__module__ = module.__name__
    forward.__doc__ = f"Imports {module.__name__} (deferred by plancheck's command line) and calls its {name}."
    return forward


class _StandInLoader:
    def __init__(self, real_spec: importlib.machinery.ModuleSpec) -> None:
        self.real_spec = real_spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        # nnU-Net's plans or label code is being imported, after torch and numpy. What their imports left lives
        # as long as the process; frozen, the collector stops walking it (a full collection costs ~0.5 s).
        gc.freeze()
        return _Deferred(spec.name, DEFERRED[spec.name], self.real_spec)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Finder:
    """Answers the import of a :data:`DEFERRED` module with a stand-in, until the stand-in is used."""

    def __init__(self) -> None:
        self.released: set[str] = set()

    def find_spec(self, fullname: str, path: t.Any, target: t.Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in DEFERRED or fullname in self.released:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None:  # not installed: the import fails as it would have
            return None
        return importlib.util.spec_from_loader(fullname, _StandInLoader(real), origin=real.origin)


_FINDER = _Finder()


def defer() -> None:
    """Answer imports of :data:`DEFERRED` modules with stand-ins, in this process (idempotent; imports nothing)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def is_deferred(name: str) -> bool:
    """True while ``name`` is a stand-in whose real module has not been imported."""
    module = sys.modules.get(name)
    return isinstance(module, _Deferred) and module.__dict__["_plancheck_real"] is None
