"""The command line: option bundles, one module per command, and the error-to-exit-code mapping.

``plancheck.cli:main`` is the console script's entry point.
"""

from __future__ import annotations

from plancheck.cli.main import cli, main

__all__ = ["cli", "main"]
