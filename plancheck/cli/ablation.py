"""``plancheck ablation``: the arms of a fine-tuning ablation against nnU-Net's baseline, prepared to run."""

from __future__ import annotations

import click

from plancheck.cli.options import (
    allow_import_option,
    force_option,
    output_options,
    source_options,
    target_options,
)

__all__ = ["ablation_command"]

ARM_CHOICES = ("baseline", "unified", "unified_pretrained", "transfer", "transfer_schedule")


@click.command("ablation")
@click.argument("source")
@click.argument("target")
@click.option("-c", "--configuration", default=None, metavar="NAME",
              help="Configuration.  [default: a checkpoint's own, else 3d_fullres]")
@click.option("--folds", multiple=True, default=("0", "1", "2", "3", "4"), show_default=True, metavar="FOLD",
              help="Folds every arm trains; repeatable.")
@click.option("--arms", multiple=True, type=click.Choice(ARM_CHOICES), metavar="ARM",
              help="Arms to prepare; repeatable (the baseline always).  [default: all: " + ", ".join(ARM_CHOICES)
              + "]")
@click.option("-o", "--out", required=True, metavar="DIR",
              help="Folder for the manifest (ablation.json), the script (ablation.sh) and the transferred weights.")
@click.option("--arm-trainer", "arm_trainer", default="nnUNetTrainer", show_default=True, metavar="NAME",
              help="Every arm's trainer (the schedule arm: plancheck's fine-tuning trainer of the same length).")
@click.option("--schedule", type=click.Choice(("encoder", "carried")), default="encoder", show_default=True,
              help="The schedule arm's freezing.")
@click.option("--schedule-trainer", default=None, metavar="NAME",
              help="The schedule arm's trainer, if not plancheck's of the same length.")
@force_option("Overwrite existing files.")
@click.option("--dry-run", is_flag=True, help="Plan every arm; write nothing.")
@source_options()
@target_options
@allow_import_option
@output_options
def ablation_command(source: str, target: str, configuration: str | None, folds: tuple[str, ...],
                     arms: tuple[str, ...], out: str, arm_trainer: str, schedule: str,
                     schedule_trainer: str | None, force: bool, dry_run: bool, fmt: str, **options: object) -> int:
    """Prepare an ablation of SOURCE's weights on TARGET against nnU-Net's standard baseline.

    \b
    Arms (same folds, trainers of the same length, each its own results folder):
      baseline            the target's own plans, from scratch
      unified             check --fix's plans, from scratch
      unified_pretrained  check --fix's plans, -pretrained_weights SOURCE
      transfer            the target's own plans, plancheck transfer's weights
      transfer_schedule   as transfer, with plancheck's fine-tuning trainer
    Writes the plans (next to TARGET's), the weights, ablation.json (read by plancheck compare
    --manifest) and ablation.sh. Exit 0 when every arm was made, 1 when one was not (its reason
    is printed).
    """
    from plancheck.ablation import ablation
    from plancheck.render import render

    result = ablation(source, target, out, configuration=configuration, folds=folds, arms=arms or ARM_CHOICES,
                      trainer=arm_trainer, schedule=schedule, schedule_trainer=schedule_trainer, force=force,
                      dry_run=dry_run, **{k: v for k, v in options.items() if v not in (None, (), False)})
    click.echo(render(result, fmt), nl=False)
    return result.exit_code
