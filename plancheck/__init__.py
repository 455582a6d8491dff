"""plancheck: will nnU-Net pretrained weights load into a fine-tuning plan? Answered on the meta device.

Importing plancheck does not import torch or nnU-Net; :func:`check` does, when called.
"""

from __future__ import annotations

import typing as t

__version__ = "0.1.0"

__all__ = ["Report", "__version__", "check", "diff"]

if t.TYPE_CHECKING:
    from plancheck.check import check as check
    from plancheck.report import Report as Report


def __getattr__(name: str) -> t.Any:
    # Lazy re-exports keep `import plancheck` (and the pytest plugin's start-up) cheap.
    if name == "check":
        from plancheck.check import check

        return check
    if name == "Report":
        from plancheck.report import Report

        return Report
    if name == "diff":
        from plancheck.plansdiff import diff

        return diff
    raise AttributeError(f"module 'plancheck' has no attribute {name!r}")
