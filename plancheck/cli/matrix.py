"""``plancheck matrix``: one SOURCE against many TARGETs, one row per target and configuration."""

from __future__ import annotations

import sys

import click

from plancheck.cli.options import (
    FIX_STRATEGIES,
    SOURCE_HELP,
    allow_import_option,
    force_option,
    html_option,
    output_options,
    source_options,
    target_options,
    write_html,
)
from plancheck.errors import UsageError

__all__ = ["matrix_command"]


@click.command("matrix")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("-c", "--configuration", "configurations", multiple=True, metavar="NAME",
              help="Configuration to check; repeatable.  [default: a checkpoint's own, else 3d_fullres]")
@source_options(helps={"--source-dataset-json": SOURCE_HELP["--source-dataset-json"],
                       "--plans": "Plans of dataset IDs and preprocessed folders (both sides)."})
@click.option("--fix", is_flag=True, help="Write fixed plans for every fixable target, and check them again.")
@click.option("--strategy", type=click.Choice(FIX_STRATEGIES), default="architecture",
              show_default=True, help="With --fix: as for check.")
@force_option("With --fix: overwrite existing plans files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@html_option
@target_options
@allow_import_option
@output_options
def matrix_command(
    source: str,
    targets: tuple[str, ...],
    configurations: tuple[str, ...],
    source_dataset_json: str | None,
    plans_identifier: str,
    target_plans_identifier: str | None,
    trainer: str | None,
    target_trainer: str | None,
    target_configuration: str | None,
    target_dataset_json: str | None,
    fold: str | None,
    source_plans: str | None,
    trust_checkpoint: bool,
    ignore_trainer: bool,
    fix: bool,
    strategy: str,
    force: bool,
    quiet: bool,
    html: str | None,
    allow_import: tuple[str, ...],
    fmt: str,
) -> int:
    """Check one SOURCE against many TARGETs: one row per target and configuration.

    \b
    Each row: the verdict, the share of parameters that would load, the main root
    cause, and whether --fix can make the pair load. The source is resolved once.
    Exit 0 only if every row loads (after fixing, with --fix); 3 if a row cannot
    be checked.
    """
    from plancheck.matrix import matrix
    from plancheck.render import render

    if (force or strategy != "architecture") and not fix:
        raise UsageError("--force and --strategy only make sense with --fix")
    def show_progress(done: int, total: int, name: str) -> None:
        click.echo(f"\r[{done}/{total}] {name[-60:]:<60}", err=True, nl=done == total)

    rows = len(targets) * max(1, len(configurations))
    progress = show_progress if not quiet and rows > 3 and sys.stderr.isatty() else None

    result = matrix(
        source,
        list(targets),
        list(configurations) or None,
        fix=fix,
        force=force,
        strategy=strategy,
        progress=progress,
        source_dataset_json=source_dataset_json,
        allow_import=allow_import,
        fold=fold,
        trainer=trainer,
        target_trainer=target_trainer,
        target_configuration=target_configuration,
        target_dataset_json=target_dataset_json,
        plans_identifier=plans_identifier,
        target_plans_identifier=target_plans_identifier,
        source_plans=source_plans,
        trust_checkpoint=trust_checkpoint,
        ignore_trainer=ignore_trainer,
    )
    write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    if result.rows and not result.applicable_rows:
        click.echo("plancheck: error: nothing to check: every combination is not applicable (a side lacks the "
                   "configuration)", err=True)
    return result.exit_code
