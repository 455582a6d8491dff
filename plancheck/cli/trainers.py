"""``plancheck trainers``: the fine-tuning trainers, and the folder nnU-Net finds them in. Never imports torch."""

from __future__ import annotations

import json

import click

from plancheck.cli.options import output_options
from plancheck.errors import ExitCode

__all__ = ["trainers_command"]


@click.command("trainers")
@click.option("--path", "path_only", is_flag=True,
              help="Print only the folder for nnUNet_extTrainer, e.g. nnUNet_extTrainer=$(plancheck trainers --path).")
@output_options
def trainers_command(path_only: bool, fmt: str) -> int:
    """The fine-tuning trainers that stock nnUNetv2_train runs, found through nnUNet_extTrainer.

    \b
    nnUNet_extTrainer=$(plancheck trainers --path) nnUNetv2_train DATASET CONFIGURATION FOLD \\
        -tr nnUNetTrainerFinetune -p PLANS -pretrained_weights OUT.pth
    with PLANS and OUT.pth from plancheck transfer --schedule carried|encoder.
    """
    from plancheck.finetune import TRAINERS, trainers_folder

    folder = trainers_folder()
    if path_only:
        click.echo(folder)
        return int(ExitCode.OK)
    if fmt == "json":
        click.echo(json.dumps({"folder": folder, "trainers": [
            {"name": n, "epochs": e, "frozen_epochs": f, "warmup_epochs": w, "optimizer": o}
            for n, (e, f, w, o) in TRAINERS.items()]}, indent=2))
        return int(ExitCode.OK)
    from tabulate import tabulate

    rows = [(n, e, f"0-{f - 1}", f"{f}-{f + w - 1}", f"{f + w}-{e - 1}", o) for n, (e, f, w, o) in TRAINERS.items()]
    table = tabulate(rows, headers=["trainer", "epochs", "frozen", "warm-up", "poly decay", "optimizer"],
                     tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    click.echo(f"{table}\n\nnnUNet_extTrainer folder: {folder}")
    return int(ExitCode.OK)
