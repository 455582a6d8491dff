"""Every error kind plancheck raises, and the one exit-code table they map to.

Every error a user can cause is a :class:`PlancheckError`. Each subclass carries the
exit code the command line uses for it; the message is one line that names the file
(or parameter) and what is wrong with it. A parameter is named as a Python caller passes
it, in backticks (`` `channel_map` ``); the command line shows its own flag there instead
(:func:`plancheck.cli.main.with_flags`: ``--channel-map``). Only :mod:`plancheck.cli.main`
turns these into exit codes; the core raises them and never prints. The modules that
raise them re-export them under their old names (``plancheck.remedies.fix.Unfixable`` is
:class:`Unfixable`).
"""

from __future__ import annotations

import enum
import typing as t

__all__ = [
    "BuildError", "CheckpointError", "ClassRefused", "ConfigError", "ConfigurationNotFound", "ExitCode", "FixError",
    "InputError", "OutputExists", "PathSyntaxError", "PlancheckError", "PlansError", "ReadBackError", "RunRefused",
    "TrainerError", "Unfixable", "UnknownOption", "UsageError",
]


class ExitCode(enum.IntEnum):
    """Exit codes of every plancheck command (documented in the README)."""

    OK = 0  #: compatible / no architectural or io difference
    INCOMPATIBLE = 1  #: weights would not load (or: a difference that matters)
    USAGE = 2  #: bad command-line usage
    INPUT = 3  #: input that cannot be checked
    INTERNAL = 4  #: a bug in plancheck (any exception that is not a PlancheckError)
    READ_BACK = 5  #: a file plancheck wrote failed its read-back check (removed: nothing was written)


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


class Unfixable(FixError):
    """Plans alone cannot make these weights load (exit 1); ``reasons`` and ``options`` say why and what to do."""

    def __init__(
        self, message: str, *, reasons: "t.Sequence[str]", options: "t.Sequence[str]", path: object | None = None
    ) -> None:
        super().__init__(message, path=path)
        self.reasons = tuple(reasons)
        self.options = tuple(options)

    @property
    def explanation(self) -> str:
        """The reasons and the options, one per line, for the command line to print under the message."""
        lines = [f"- {r}" for r in self.reasons]
        lines.append("Options:")
        lines += [f"- {o}" for o in self.options]
        lines.append("Nothing was written.")
        return "\n".join(lines)


class OutputExists(UsageError):
    """An output file (fixed plans, a transfer checkpoint) exists and ``force`` was not given (exit 2)."""


class ReadBackError(PlancheckError):
    """A file plancheck wrote, read back, does not do what it was written for (exit 5).

    The file never takes its name (the temporary file is removed; an existing file is intact).
    """

    exit_code = ExitCode.READ_BACK


class UnknownOption(UsageError, TypeError):
    """A keyword option :func:`plancheck.check` (or ``transfer``, ``verify``) does not take (exit 2; also a
    ``TypeError``, as Python raises for unknown keywords)."""


class RunRefused(PlancheckError):
    """``verify``: a CPU run larger than the limits, without ``force`` (exit 2)."""

    exit_code = ExitCode.USAGE


class TrainerError(InputError):
    """A trainer that cannot be found or imported (exit 3; ``ignore_trainer`` builds from plans instead)."""


class ConfigError(UsageError):
    """A declarative check (``[tool.plancheck]``, plancheck.toml) that cannot be collected: bad TOML, a bad entry,
    a missing file (exit 2)."""


class PathSyntaxError(ValueError):
    """A string that is not a field path as :func:`plancheck.inputs.paths.format_path` writes them (a ``ValueError``
    for Python callers; never reaches the command line)."""

