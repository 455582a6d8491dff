"""Error kinds and the exit codes they map to.

Every error a user can cause is a :class:`PlancheckError`. Each subclass carries the
exit code the command line uses for it; the message is one line that names the file
(or option) and what is wrong with it. Only :mod:`plancheck.cli` turns these into exit
codes; the core raises them and never prints.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of every plancheck command (documented in the README)."""

    OK = 0  #: compatible / no architectural or io difference
    INCOMPATIBLE = 1  #: weights would not load (or: a difference that matters)
    USAGE = 2  #: bad command-line usage
    INPUT = 3  #: input that cannot be checked


class PlancheckError(Exception):
    """Base class of all errors plancheck reports to a user."""

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UsageError(PlancheckError):
    """Options that contradict each other or name nothing (exit 2)."""

    exit_code = ExitCode.USAGE


class InputError(PlancheckError):
    """An input that cannot be checked (exit 3)."""


class PlansError(InputError):
    """A plans.json or dataset.json that cannot be read or is not valid."""


class ConfigurationNotFound(PlansError):
    """The requested configuration does not exist in the plans."""


class ClassRefused(InputError):
    """A class path outside the allowed packages, or one that cannot be resolved."""


class BuildError(InputError):
    """nnU-Net could not build the network described by the plans."""


class CheckpointError(InputError):
    """A checkpoint that cannot be read safely."""


class FixError(PlancheckError):
    """``--fix`` cannot produce plans that load the weights (exit 1)."""

    exit_code = ExitCode.INCOMPATIBLE
