"""``plancheck transfer``: write a checkpoint for TARGET's network from every SOURCE tensor that honestly fits."""

from __future__ import annotations

import click

from plancheck.cli.options import (
    TRANSFER_STRATEGIES,
    allow_import_option,
    check_html,
    force_option,
    html_option,
    output_options,
    source_options,
    target_options,
    write_html,
)

__all__ = ["transfer_command"]


@click.command("transfer")
@click.argument("source")
@click.argument("target")
@click.option("-o", "--out", default=None, metavar="OUT.pth", help="The checkpoint to write (not with --dry-run).")
@click.option("-c", "--configuration", default=None, metavar="NAME",
              help="Configuration of the source.  [default: a checkpoint's own configuration, else 3d_fullres]")
@click.option("--strategy", type=click.Choice(TRANSFER_STRATEGIES), default="adapt", show_default=True,
              help="exact: same key and shape; encoder: what nnU-Net master's pretrained trainers load (exact for the "
              "stem and encoder, a 1-channel stem repeated over the input channels and divided); adapt: exact, plus "
              "stages aligned by resolution level and the honest shape rules.")
@click.option("--channel-map", default=None, metavar="MAP",
              help="For each target input channel: a source channel index, mean or new (e.g. 0,new).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of nnU-Net's initialisation of the tensors that are not carried over.")
@click.option("--schedule", type=click.Choice(("carried", "encoder")), default=None,
              help="Also write fine-tuning plans for plancheck's fine-tuning trainers (plancheck trainers): freeze "
              "every tensor carried over, or the carried stem and encoder, then warm up, then train all.")
@click.option("--carried-lr-ratio", default=1.0, show_default=True, type=float, metavar="R",
              help="With --schedule: the carried tensors train at R times the learning rate after the frozen phase.")
@click.option("--schedule-plans", default=None, metavar="PLANS_IDENTIFIER",
              help="With --schedule: the identifier of the plans written next to TARGET's.  "
              "[default: <target plans identifier>_finetune]")
@force_option("Overwrite an existing OUT (and the fine-tuning plans of --schedule).")
@click.option("--dry-run", is_flag=True, help="Print the report; write nothing.")
@click.option("-v", "--verbose", is_flag=True, help="List every tensor (text and markdown), copied ones included.")
@source_options()
@html_option
@target_options
@allow_import_option
@output_options
def transfer_command(
    source: str,
    target: str,
    out: str | None,
    configuration: str | None,
    target_configuration: str | None,
    strategy: str,
    channel_map: str | None,
    seed: int,
    schedule: str | None,
    carried_lr_ratio: float,
    schedule_plans: str | None,
    force: bool,
    dry_run: bool,
    verbose: bool,
    source_dataset_json: str | None,
    target_dataset_json: str | None,
    plans_identifier: str,
    trainer: str | None,
    target_trainer: str | None,
    target_plans_identifier: str | None,
    fold: str | None,
    source_plans: str | None,
    trust_checkpoint: bool,
    ignore_trainer: bool,
    html: str | None,
    allow_import: tuple[str, ...],
    fmt: str,
) -> int:
    """Write a checkpoint for TARGET's own network, carrying every SOURCE tensor that honestly fits.

    \b
    SOURCE: anything check accepts that carries weights (a checkpoint, a trained-model
            folder, a dataset ID, a state_dict or .safetensors with --source-plans).
    TARGET: anything check accepts (its plans stay as they are).
    Exit codes: 0 written (or dry run) and verified, 1 nothing could be carried over,
                2 usage error or OUT exists, 3 input that cannot be read,
                4 internal error, 5 the written file failed the read-back check (removed).
    """
    from plancheck.render import render
    from plancheck.transfer import transfer

    check_html(html)
    result = transfer(
        source,
        target,
        out,
        configuration=configuration,
        target_configuration=target_configuration,
        strategy=strategy,
        channel_map=channel_map,
        seed=seed,
        schedule=schedule,
        carried_lr_ratio=carried_lr_ratio,
        schedule_plans=schedule_plans,
        force=force,
        dry_run=dry_run,
        source_dataset_json=source_dataset_json,
        target_dataset_json=target_dataset_json,
        plans_identifier=plans_identifier,
        trainer=trainer,
        target_trainer=target_trainer,
        target_plans_identifier=target_plans_identifier,
        fold=fold,
        source_plans=source_plans,
        trust_checkpoint=trust_checkpoint,
        ignore_trainer=ignore_trainer,
        allow_import=allow_import,
    )
    write_html(html, result)
    click.echo(render(result, fmt, verbose=verbose), nl=False)
    return result.exit_code
