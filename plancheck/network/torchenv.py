"""Why an architecture module cannot be imported, when the reason is the torch/torchvision pair.

The transformer architectures (Primus, via timm) import ``torchvision.ops``. A torchvision
wheel is built against one torch build: PyPI's is a CUDA build, whose compiled operators
need ``libtorch_cuda.so``; beside a CPU-only torch it fails at import with
``RuntimeError: operator torchvision::nms does not exist``. :func:`diagnose` turns that into
one line naming both builds and what to install. It reads torchvision's ``version.py`` as
text (importing torchvision is what fails) and never imports anything new.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys

__all__ = ["diagnose", "torchvision_build"]

_SIGNS = ("torchvision::", "torchvision/_C", "torchvision._C", "libtorch_cuda", "libc10_cuda", "torchvision.ops")


def torchvision_build() -> str | None:
    """torchvision's full version (``0.28.0+cu130``) from its version.py, without importing it."""
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
    try:
        with open(path, encoding="utf-8") as fh:
            m = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", fh.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def _torch_build() -> tuple[str, str | None] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return str(getattr(torch, "__version__", "?")), getattr(getattr(torch, "version", None), "cuda", None)


def _describe(version: str, cuda: str | None = None, *, is_torch: bool = False) -> str:
    local = version.partition("+")[2]
    if local.startswith("cu") and local[2:].isdigit():
        digits = local[2:]
        return f"CUDA {digits[:-1]}.{digits[-1]} build"
    if cuda:
        return f"CUDA {cuda} build"
    if local == "cpu" or is_torch:  # torch.version.cuda is None: no CUDA in this torch
        return "CPU-only build"
    return f"{local} build" if local else "build"


def diagnose(error: BaseException) -> str | None:
    """One line for an import error caused by a torchvision that does not match torch; None otherwise."""
    text = f"{type(error).__name__}: {error}"
    chain = error.__cause__ or error.__context__
    while chain is not None and len(text) < 4000:
        text += f" {chain}"
        chain = chain.__cause__ or chain.__context__
    if not any(sign in text for sign in _SIGNS):
        return None
    vision = torchvision_build()
    torch = _torch_build()
    if vision is None or torch is None:
        return None
    torch_version, torch_cuda = torch
    torch_base = torch_version.partition("+")[0]
    parts = torch_base.split(".")
    wanted = f"0.{int(parts[1]) + 15}.{parts[2]}" if len(parts) >= 3 and parts[1].isdigit() else "the matching release"
    if torch_cuda is None:
        remedy = (f"install the CPU build of torchvision for this torch: pip install torchvision=={wanted} "
                  "--index-url https://download.pytorch.org/whl/cpu (or the CUDA builds of both from PyPI: "
                  f"pip install torch=={torch_base} torchvision=={wanted})")
    else:
        remedy = (f"install the torchvision built for this torch: pip install torchvision=={wanted} "
                  "(same index as torch)")
    return (
        f"torchvision {vision} ({_describe(vision)}) cannot load beside torch {torch_version} "
        f"({_describe(torch_version, torch_cuda, is_torch=True)}), and timm, which the transformer architectures "
        "(Primus) use, "
        f"imports it; {remedy}"
    )
