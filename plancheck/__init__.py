"""plancheck: will nnU-Net pretrained weights load into a fine-tuning plan? Answered on the meta device.

Importing plancheck does not import torch or nnU-Net; :func:`check` does, when called.
"""

from __future__ import annotations

import typing as t

__version__ = "0.1.0"

__all__ = ["Report", "__version__", "check", "diff", "transfer", "verify"]

# None of these import torch or nnU-Net; they do so only when a network is built.
# `check` the function is bound after `plancheck.check` the module is imported, so the
# package attribute is the function (the module stays reachable in sys.modules).
from plancheck.check import check as check  # noqa: E402
from plancheck.records.report import Report as Report  # noqa: E402
from plancheck.verify import verify as verify  # noqa: E402  (the same: the function, not the module)
from plancheck.transfer import transfer as transfer  # noqa: E402


def __getattr__(name: str) -> t.Any:
    if name == "diff":
        from plancheck.compare.plansdiff import diff

        return diff
    raise AttributeError(f"module 'plancheck' has no attribute {name!r}")
