"""``plancheck trainers``: the fine-tuning trainers, and how the installed nnU-Net finds them. Never imports torch."""

from __future__ import annotations

import json

import click

from plancheck.cli.options import output_options
from plancheck.errors import ExitCode, UsageError

__all__ = ["trainers_command"]


@click.command("trainers")
@click.option("--path", "path_only", is_flag=True,
              help="Print only the folder for nnUNet_extTrainer, e.g. nnUNet_extTrainer=$(plancheck trainers --path) "
                   "(nnunetv2 >= 2.8).")
@click.option("--install", "do_install", is_flag=True,
              help="nnunetv2 2.6/2.7 (no nnUNet_extTrainer): write one module into nnU-Net's trainer folder that "
                   "re-exports the trainers, so nnUNetv2_train -tr finds them. Idempotent.")
@click.option("--uninstall", "do_uninstall", is_flag=True, help="Remove the module --install wrote (only that file).")
@click.option("--force", is_flag=True, help="With --install: replace a file of that name plancheck did not write.")
@output_options
def trainers_command(path_only: bool, do_install: bool, do_uninstall: bool, force: bool, fmt: str) -> int:
    """The fine-tuning trainers that stock nnUNetv2_train runs, and how the installed nnU-Net finds them.

    \b
    nnunetv2 >= 2.8 (its lookup reads nnUNet_extTrainer):
      nnUNet_extTrainer=$(plancheck trainers --path) nnUNetv2_train DATASET CONFIGURATION FOLD \\
          -tr nnUNetTrainerFinetune -p PLANS -pretrained_weights OUT.pth
    nnunetv2 2.6 and 2.7 (the lookup searches nnU-Net's own trainer folder only):
      plancheck trainers --install
      nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerFinetune -p PLANS -pretrained_weights OUT.pth
    with PLANS and OUT.pth from plancheck transfer --schedule carried|encoder.
    """
    from plancheck.finetune import TRAINERS, trainers_folder
    from plancheck.finetune.lookup import install, lookup, uninstall

    if sum((path_only, do_install, do_uninstall)) > 1:
        raise UsageError("choose one of --path, --install, --uninstall")
    if force and not do_install:
        raise UsageError("--force applies to --install only")
    folder = trainers_folder()
    if path_only:
        found = lookup()
        if not found.ext_trainer:
            click.echo(f"plancheck: warning: {found.describe()}; nnUNet_extTrainer is ignored there", err=True)
        click.echo(folder)
        return int(ExitCode.OK)
    if do_install or do_uninstall:
        found, changed = install(force=force) if do_install else uninstall()
        if fmt == "json":
            click.echo(json.dumps({"changed": changed, "module": found.shim_path,
                                   "installed": found.shim_installed, "nnunetv2": found.nnunet_version}, indent=2))
        elif do_install:
            click.echo(f"{'Wrote' if changed else 'Already installed:'} {found.shim_path} (read back); "
                       f"nnUNetv2_train -tr now finds the fine-tuning trainers in nnunetv2 {found.nnunet_version}.")
        else:
            click.echo(f"Removed {found.shim_path}." if changed else f"Nothing to remove: no {found.shim_path}.")
        return int(ExitCode.OK)
    found = lookup()
    if fmt == "json":
        click.echo(json.dumps({"folder": folder, "nnunetv2": found.nnunet_version,
                               "ext_trainer": found.ext_trainer, "installed_module": found.shim_path,
                               "installed": found.shim_installed, "trainers": [
                                   {"name": n, "epochs": e, "frozen_epochs": f, "warmup_epochs": w, "optimizer": o}
                                   for n, (e, f, w, o) in TRAINERS.items()]}, indent=2))
        return int(ExitCode.OK)
    from tabulate import tabulate

    rows = [(n, e, f"0-{f - 1}", f"{f}-{f + w - 1}", f"{f + w}-{e - 1}", o) for n, (e, f, w, o) in TRAINERS.items()]
    table = tabulate(rows, headers=["trainer", "epochs", "frozen", "warm-up", "poly decay", "optimizer"],
                     tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True)
    click.echo(f"{table}\n\nnnUNet_extTrainer folder: {folder}\n{found.describe()}.")
    return int(ExitCode.OK)
