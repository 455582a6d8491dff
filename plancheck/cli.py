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
        help="Also resolve class paths and trainers inside MODULE (trust its code). Repeatable.",
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
@click.option(
    "-c",
    "--configuration",
    default=None,
    metavar="NAME",
    help="Configuration to check.  [default: a checkpoint's own configuration, else 3d_fullres]",
)
@click.option(
    "--target-configuration", default=None, metavar="NAME", help="Target configuration, if not the source's."
)
@click.option("--source-dataset-json", default=None, metavar="FILE",
              help="Default: the checkpoint's own, or dataset.json next to SOURCE.")
@click.option("--target-dataset-json", default=None, metavar="FILE", help="Default: dataset.json next to TARGET.")
@click.option(
    "-p",
    "--plans",
    "plans_identifier",
    default="nnUNetPlans",
    show_default=True,
    metavar="PLANS_IDENTIFIER",
    help="Plans of a dataset ID or preprocessed folder (<PLANS_IDENTIFIER>.json), as nnUNetv2_train -p.",
)
@click.option(
    "-tr",
    "--trainer",
    default=None,
    metavar="NAME",
    help="Trainer whose build_network_architecture builds the networks, and the model folder of a source "
    "dataset ID.  [default: the checkpoint's trainer_name, else nnUNetTrainer]",
)
@click.option("--target-trainer", default=None, metavar="NAME",
              help="Trainer of the fine-tuning run, if not the source's.")
@click.option("--fold", default=None, metavar="FOLD",
              help="Fold of a trained-model folder (0-4, all).  [default: the first with a checkpoint]")
@click.option(
    "--source-plans",
    default=None,
    metavar="FILE",
    help="Plans of a bare state_dict or safetensors SOURCE (replaces a checkpoint's embedded plans).",
)
@click.option(
    "--trust-checkpoint",
    is_flag=True,
    help="Read SOURCE with torch.load(weights_only=False): runs code from the file. Only for files you trust.",
)
@click.option(
    "--ignore-trainer",
    is_flag=True,
    help="Build from the plans alone when a trainer cannot be found or imported (default: exit 3).",
)
@click.option(
    "--problems-only", is_flag=True, help="List only tensors that do not load (text and markdown formats)."
)
@_allow_import
@_common
@_run
def check_command(
    source: str,
    target: str,
    configuration: str | None,
    target_configuration: str | None,
    source_dataset_json: str | None,
    target_dataset_json: str | None,
    plans_identifier: str,
    trainer: str | None,
    target_trainer: str | None,
    fold: str | None,
    source_plans: str | None,
    trust_checkpoint: bool,
    ignore_trainer: bool,
    problems_only: bool,
    allow_import: tuple[str, ...],
    fmt: str,
) -> int:
    """Check whether the weights of SOURCE load into the network of TARGET.

    \b
    SOURCE: a plans.json; an nnU-Net checkpoint (.pth, read without running its code);
            a trained-model folder (TRAINER__PLANS__CONFIGURATION, --fold); a bare
            state_dict or .safetensors file (with --source-plans); or a dataset ID
            (999, Dataset999_Name) under $nnUNet_results (with -tr, -p, -c).
    TARGET: a plans.json; a preprocessed dataset folder; or a dataset ID under
            $nnUNet_preprocessed (with -p).
    """
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
        fold=fold,
        trainer=trainer,
        target_trainer=target_trainer,
        plans_identifier=plans_identifier,
        source_plans=source_plans,
        trust_checkpoint=trust_checkpoint,
        ignore_trainer=ignore_trainer,
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
