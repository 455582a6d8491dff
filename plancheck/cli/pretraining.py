"""``plancheck plan-pretraining``: one pretraining for as many fine-tuning datasets as possible."""

from __future__ import annotations

import sys

import click

from plancheck.cli.options import (
    force_option,
    html_option,
    output_options,
    plans_option,
    target_options,
    write_html,
)

__all__ = ["plan_pretraining_command"]


@click.command("plan-pretraining")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("-c", "--configuration", "configurations", multiple=True, metavar="NAME",
              help="Configuration to plan; repeatable.  [default: 3d_fullres]")
@click.option("-o", "--out", default=None, metavar="DIR",
              help="Folder for the pretraining plans.  [default: next to SOURCE's plans, where -p finds them]")
@click.option("--max-pretrainings", default=None, type=click.IntRange(min=1), metavar="K",
              help="At most K pretrainings per configuration: the other groups' targets are unified (as --fix "
                   "does) to the kept group they are cheapest to move to.")
@click.option("--preprocessing", type=click.Choice(("source", "target")), default="source", show_default=True,
              help="The pretraining plans keep SOURCE's preprocessing (source), or copy the group's target's too, "
                   "as nnUNetv2_move_plans_between_datasets does (target).")
@click.option("--source-dataset-json", default=None, metavar="FILE", help="Default: dataset.json next to SOURCE.")
@plans_option("Plans of dataset IDs and preprocessed folders (both sides).")
@click.option("-tr", "--trainer", default="nnUNetTrainer", show_default=True, metavar="NAME",
              help="The pretraining trainer, as the printed nnUNetv2_train commands name it (and its results "
                   "folder); the fine-tuning commands name --target-trainer, else this one.")
@target_options
@force_option("Overwrite existing plans files.")
@click.option("--dry-run", is_flag=True, help="Plan and check everything; write nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@html_option
@output_options
def plan_pretraining_command(source: str, targets: tuple[str, ...], configurations: tuple[str, ...], out: str | None,
                             max_pretrainings: int | None, preprocessing: str, source_dataset_json: str | None,
                             plans_identifier: str, trainer: str, target_configuration: str | None,
                             target_dataset_json: str | None, target_plans_identifier: str | None,
                             target_trainer: str | None, force: bool, dry_run: bool,
                             quiet: bool, html: str | None, fmt: str) -> int:
    """Group the TARGETs by the network nnU-Net plans for them and plan one pretraining of SOURCE per group.

    \b
    SOURCE: the pretraining dataset (plans.json, preprocessed folder, or dataset ID under
            $nnUNet_preprocessed). TARGET: anything check takes as a target.
    Targets whose networks are identical (every tensor but the segmentation heads) share one
    pretraining. Per group, SOURCE's plans get that network (as --fix makes them), are checked
    to load into every target of the group, and are written atomically and read back.
    Exit 0 when every target is served by a verified pretraining; 1 when one is not (or
    --max-pretrainings cannot be met); 3 when a target cannot be read.
    """
    from plancheck.pretraining import plan_pretraining
    from plancheck.render import render

    def show_progress(done: int, total: int, name: str) -> None:
        click.echo(f"\r[{done}/{total}] {name[-60:]:<60}", err=True, nl=done == total)

    if html:  # refused before anything is written, not after the plans are
        from plancheck.render.html import check_html_path

        check_html_path(html)
    progress = show_progress if not quiet and len(targets) > 3 and sys.stderr.isatty() else None
    result = plan_pretraining(source, list(targets), list(configurations) or None, out=out,
                              max_pretrainings=max_pretrainings, preprocessing=preprocessing, force=force,
                              dry_run=dry_run, progress=progress, source_dataset_json=source_dataset_json,
                              plans_identifier=plans_identifier, target_plans_identifier=target_plans_identifier,
                              trainer=trainer, target_trainer=target_trainer,
                              target_configuration=target_configuration, target_dataset_json=target_dataset_json)
    write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    if not any(r.not_applicable is None for r in result.rows):
        click.echo("plancheck: error: nothing to plan: every target lacks the configuration (or the source does)",
                   err=True)
    return result.exit_code
