"""The command line: parse options, call the core, render, and map errors to exit codes.

This is the only module that knows click. Errors become one line on stderr and an exit
code here, in :func:`_run`, and nowhere else.
"""

from __future__ import annotations

import functools
import sys
import typing as t

import click

from plancheck import __version__
from plancheck.errors import ExitCode, PlancheckError

__all__ = ["main"]

FORMATS = ("text", "json", "markdown")
INTERNAL_ERROR = 4


def _run(fn: t.Callable[..., int]) -> t.Callable[..., None]:
    """Run a command body; turn its result or error into plancheck's exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: t.Any, traceback: bool = False, **kwargs: t.Any) -> None:
        try:
            code = fn(*args, **kwargs)
        except PlancheckError as e:
            if traceback:
                raise
            click.echo(f"plancheck: error: {e}", err=True)
            code = int(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug in plancheck, not the user's input
            if traceback:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(
                f"plancheck: internal error: {type(e).__name__}: {first} (rerun with --traceback and report it)",
                err=True,
            )
            code = INTERNAL_ERROR
        sys.stdout.flush()
        raise SystemExit(code)

    return wrapper


def _common(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    fn = click.option(
        "--traceback", is_flag=True, help="Show the full traceback of an error instead of one line."
    )(fn)
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="Output format.",
    )(fn)
    return fn


def _allow_import(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    return click.option(
        "--allow-import",
        "allow_import",
        multiple=True,
        metavar="MODULE",
        help="Also resolve class paths inside MODULE (trust its code). Repeatable.",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="plancheck")
def cli() -> None:
    """Will nnU-Net pretrained weights load into a fine-tuning plan? Checked before any GPU time is spent.

    \b
    Exit codes: 0 compatible, 1 incompatible, 2 usage error,
                3 input that cannot be checked, 4 internal error.
    """


@cli.command("check")
@click.argument("source")
@click.argument("target")
@click.option("-c", "--configuration", default="3d_fullres", show_default=True, help="Configuration to check.")
@click.option(
    "--target-configuration", default=None, metavar="NAME", help="Target configuration, if not the same name."
)
@click.option("--source-dataset-json", default=None, metavar="FILE", help="Default: dataset.json next to SOURCE.")
@click.option("--target-dataset-json", default=None, metavar="FILE", help="Default: dataset.json next to TARGET.")
@click.option(
    "--problems-only", is_flag=True, help="List only tensors that do not load (text and markdown formats)."
)
@_allow_import
@_common
@_run
def check_command(
    source: str,
    target: str,
    configuration: str,
    target_configuration: str | None,
    source_dataset_json: str | None,
    target_dataset_json: str | None,
    problems_only: bool,
    allow_import: tuple[str, ...],
    fmt: str,
) -> int:
    """Check whether weights trained with SOURCE plans load into the network of TARGET plans."""
    from plancheck.check import check
    from plancheck.render import render

    report = check(
        source,
        target,
        configuration=configuration,
        target_configuration=target_configuration,
        source_dataset_json=source_dataset_json,
        target_dataset_json=target_dataset_json,
        allow_import=allow_import,
    )
    click.echo(render(report, fmt, verbose=not problems_only), nl=False)
    return int(ExitCode.OK if report.compatible else ExitCode.INCOMPATIBLE)


@cli.command("diff")
@click.argument("plans_a", metavar="PLANS_A")
@click.argument("plans_b", metavar="PLANS_B")
@click.option(
    "-c",
    "--configuration",
    "configurations",
    multiple=True,
    metavar="NAME",
    help="Configuration to compare; repeatable.  [default: every configuration both files have]",
)
@click.option(
    "--target-configuration",
    default=None,
    metavar="NAME",
    help="Compare the one -c configuration of PLANS_A with this configuration of PLANS_B.",
)
@click.option("--dataset-json-a", default=None, metavar="FILE", help="Default: dataset.json next to PLANS_A.")
@click.option("--dataset-json-b", default=None, metavar="FILE", help="Default: dataset.json next to PLANS_B.")
@_common
@_run
def diff_command(
    plans_a: str,
    plans_b: str,
    configurations: tuple[str, ...],
    target_configuration: str | None,
    dataset_json_a: str | None,
    dataset_json_b: str | None,
    fmt: str,
) -> int:
    """Compare two plans files, each difference in one category. Never imports torch.

    Configurations are compared resolved (inherits_from applied, the old plans format
    converted); paths are printed as they stand in each file.

    \b
    Categories: architecture (weight shapes or keys), io (channels, labels, regions),
                preprocessing, training, identity.
    Exit codes: 0 no architecture or io difference, 1 otherwise, 2 usage error,
                3 input that cannot be read.
    """
    from plancheck.plansdiff import diff
    from plancheck.render import render

    result = diff(
        plans_a,
        plans_b,
        configurations or None,
        target_configuration=target_configuration,
        dataset_json_a=dataset_json_a,
        dataset_json_b=dataset_json_b,
    )
    click.echo(render(result, fmt), nl=False)
    return int(ExitCode.INCOMPATIBLE if result.has_blocking else ExitCode.OK)


def main(argv: t.Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="plancheck")
