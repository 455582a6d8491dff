"""The ``plancheck`` group, its entry point, and the one place errors become exit codes.

The commands (one module each) only parse options, call the core and render; they are
defined without the group and registered here, so nothing imports this module back.
Errors become one line on stderr and an exit code in :func:`_run`, and nowhere else.
"""

from __future__ import annotations

import functools
import re
import sys
import typing as t

import click

from plancheck import __version__
from plancheck.cli.ablation import ablation_command
from plancheck.cli.check import check_command
from plancheck.cli.compare import compare_command
from plancheck.cli.diff import diff_command
from plancheck.cli.matrix import matrix_command
from plancheck.cli.options import TRACEBACK
from plancheck.cli.pretraining import plan_pretraining_command
from plancheck.cli.trainers import trainers_command
from plancheck.cli.transfer import transfer_command
from plancheck.cli.verify import verify_command
from plancheck.errors import ExitCode, PlancheckError

__all__ = ["cli", "main", "with_flags"]

INTERNAL_ERROR = int(ExitCode.INTERNAL)


def _run(fn: t.Callable[..., int]) -> t.Callable[..., None]:
    """Run a command body; turn its result or error into plancheck's exit codes.

    ``--traceback`` adds the traceback on stderr before the one-line message; the exit
    code and everything else stay as they are without it.
    """

    @functools.wraps(fn)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> None:
        traceback = bool(click.get_current_context().meta.get(TRACEBACK, False))
        try:
            code = fn(*args, **kwargs)
        except PlancheckError as e:
            _print_traceback(traceback)
            click.echo(f"plancheck: error: {with_flags(str(e), _flags())}", err=True)
            code = int(e.exit_code)
        except BrokenPipeError:  # `plancheck ... | head`: the reader left; say nothing more
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug in plancheck, not the user's input
            _print_traceback(traceback)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(
                f"plancheck: internal error: {type(e).__name__}: {first}"
                + ("" if traceback else " (rerun with --traceback and report it)"),
                err=True,
            )
            code = INTERNAL_ERROR
        sys.stdout.flush()
        raise SystemExit(code)

    return wrapper


_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


def with_flags(message: str, flags: t.Mapping[str, str]) -> str:
    """``message`` with each backticked parameter name that ``flags`` maps replaced by its flag.

    The core names a parameter as a Python caller passes it (`` `channel_map` ``); ``flags``
    maps it to the option this command line spells it with (``--channel-map``). A name it
    does not map keeps its backticks.
    """
    return _PARAMETER.sub(lambda m: flags.get(m.group(1), m.group(0)), message)


def _flags() -> dict[str, str]:
    """The current command's flag for each of its parameters: the core names parameters, the user typed flags.

    A parameter's longest ``--`` spelling (``target_plans_identifier``: ``--target-plans``);
    a core parameter without an option of this command keeps its backticked name.
    """
    command = click.get_current_context().command
    flags = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name:
            long = [o for o in param.opts if o.startswith("--")]
            flags[param.name] = max(long, key=len) if long else param.opts[0]
    return flags


def _print_traceback(wanted: bool) -> None:
    """With --traceback: the current exception's traceback on stderr (call inside ``except``)."""
    if wanted:
        import traceback as tb

        sys.stdout.flush()
        click.echo(tb.format_exc().rstrip("\n"), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="plancheck")
def cli() -> None:
    """Will nnU-Net pretrained weights load into a fine-tuning plan? Checked before any GPU time is spent.

    \b
    Exit codes: 0 compatible, 1 incompatible, 2 usage error,
                3 input that cannot be checked, 4 internal error,
                5 a file plancheck wrote failed its read-back check (nothing written).
    """


for _command in (check_command, transfer_command, diff_command, matrix_command, verify_command,
                 trainers_command, plan_pretraining_command, ablation_command, compare_command):
    assert _command.callback is not None
    _command.callback = _run(_command.callback)  # the exit codes, for every command
    cli.add_command(_command)


def main(argv: t.Sequence[str] | None = None) -> None:
    """Console-script entry point (``python -m plancheck`` too); ``argv`` for a call from Python.

    As the program (``argv`` None: the arguments come from ``sys.argv``), the process is
    plancheck's own, so it defers the imports a check never uses (:mod:`plancheck.cli.defer`).
    Called with ``argv`` from someone's Python process, it changes nothing in that process.
    """
    if argv is None:
        from plancheck.cli.defer import defer

        defer()
    cli.main(args=list(argv) if argv is not None else None, prog_name="plancheck")
