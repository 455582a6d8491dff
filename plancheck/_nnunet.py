"""The one door to nnU-Net: lazy imports, with nnU-Net's console chatter kept off stdout.

nnU-Net prints to stdout when it is imported without its environment variables set, and
when a plans file names no label manager. plancheck's stdout carries reports (JSON too),
so every call into nnU-Net goes through :func:`quiet`, which sends that chatter to
stderr only when ``PLANCHECK_DEBUG`` is set, and drops it otherwise.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import typing as t
import warnings

__all__ = ["quiet", "captured_warnings"]


@contextlib.contextmanager
def quiet() -> t.Iterator[None]:
    """Run nnU-Net code with its prints kept out of plancheck's stdout."""
    sink: t.TextIO = sys.stderr if os.environ.get("PLANCHECK_DEBUG") else io.StringIO()
    with contextlib.redirect_stdout(sink):
        yield


@contextlib.contextmanager
def captured_warnings() -> t.Iterator[list[str]]:
    """Collect the warnings nnU-Net raises (old plans format, moved classes) as text."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages.extend(str(w.message).splitlines()[0] for w in caught)
