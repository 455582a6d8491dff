"""``plancheck check``: will SOURCE's weights load into TARGET's network; with --fix, new target plans that do."""

from __future__ import annotations

import typing as t

import click

from plancheck.cli.options import (
    FIX_STRATEGIES,
    TRANSFER_STRATEGIES,
    allow_import_option,
    force_option,
    html_option,
    output_options,
    source_options,
    target_options,
    write_html,
)
from plancheck.errors import ExitCode, UsageError

__all__ = ["check_command"]


def _one_configuration(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> str | None:
    """check's -c: one configuration (given twice with different names, it would silently check the last)."""
    names = list(dict.fromkeys(values))
    if len(names) > 1:
        raise click.UsageError(
            f"check takes one -c/--configuration, got {', '.join(names)}: to check (and --fix) several "
            f"configurations of a target into one plans file, run plancheck matrix SOURCE TARGET "
            + " ".join(f"-c {n}" for n in names)
        )
    return names[0] if names else None


@click.command("check")
@click.argument("source")
@click.argument("target")
@click.option(
    "-c",
    "--configuration",
    multiple=True,
    callback=_one_configuration,
    metavar="NAME",
    help="Configuration to check.  [default: a checkpoint's own configuration, else 3d_fullres]",
)
@source_options(described=True)
@click.option(
    "--problems-only", is_flag=True, help="List only tensors that do not load (text and markdown formats)."
)
@click.option("--fix", is_flag=True, help="Write new target plans that load the SOURCE weights, then check again.")
@click.option("-o", "--out", default=None, metavar="PATH",
              help="With --fix: file or folder for the new plans.  [default: next to TARGET's plans]")
@click.option("--plans-name", default=None, metavar="NAME",
              help="With --fix: the new plans identifier.  [default: <target plans>_from_<source dataset>]")
@click.option("--strategy", type=click.Choice(FIX_STRATEGIES), default=None,
              help="With --fix: carry only the architecture (default), or copy everything as "
              "nnUNetv2_move_plans_between_datasets does.")
@click.option("--schedule", type=click.Choice(("carried", "encoder")), default=None,
              help="With --fix: also write fine-tuning plans (the new plans with a freezing schedule: freeze what "
                   "nnU-Net loads, or its stem and encoder) and print the command with plancheck's fine-tuning "
                   "trainer (plancheck trainers).")
@click.option("--carried-lr-ratio", default=1.0, show_default=True, type=float, metavar="R",
              help="With --schedule: the loaded tensors train at R times the learning rate after the frozen phase.")
@click.option("--schedule-plans", default=None, metavar="PLANS_IDENTIFIER",
              help="With --schedule: the identifier of the fine-tuning plans.  [default: <new plans>_finetune]")
@force_option("With --fix: overwrite an existing plans file (and the fine-tuning plans of --schedule).")
@click.option("--dry-run", is_flag=True, help="With --fix: print the changes as a diff; write nothing.")
@html_option
@click.option("--transfer", "transfer_strategy", type=click.Choice(TRANSFER_STRATEGIES), default=None,
              help="Also show the share of parameters, per part, that plancheck transfer would carry over "
              "with this strategy (writes nothing).")
@click.option("--channel-map", default=None, metavar="MAP", help="With --transfer adapt: as for transfer.")
@target_options
@allow_import_option
@output_options
def check_command(
    source: str,
    target: str,
    configuration: str | None,
    target_configuration: str | None,
    source_dataset_json: str | None,
    target_dataset_json: str | None,
    plans_identifier: str,
    target_plans_identifier: str | None,
    trainer: str | None,
    target_trainer: str | None,
    fold: str | None,
    source_plans: str | None,
    trust_checkpoint: bool,
    ignore_trainer: bool,
    problems_only: bool,
    fix: bool,
    out: str | None,
    plans_name: str | None,
    strategy: str | None,
    schedule: str | None,
    carried_lr_ratio: float,
    schedule_plans: str | None,
    force: bool,
    dry_run: bool,
    html: str | None,
    transfer_strategy: str | None,
    channel_map: str | None,
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
    from plancheck.check import check_target, prepare_source
    from plancheck.render import render

    fix_only = {"--out": out, "--plans-name": plans_name, "--strategy": strategy, "--force": force,
                "--dry-run": dry_run, "--schedule": schedule, "--carried-lr-ratio": carried_lr_ratio != 1.0,
                "--schedule-plans": schedule_plans}
    given = [name for name, value in fix_only.items() if value]
    if given and not fix:
        raise UsageError(f"{', '.join(given)} only make sense with --fix")
    if transfer_strategy and fix:
        raise UsageError("--transfer and --fix answer different questions: use one at a time")
    if channel_map and not transfer_strategy:
        raise UsageError("--channel-map only makes sense with --transfer (or plancheck transfer)")
    prepared = prepare_source(
        source,
        configuration=configuration,
        source_dataset_json=source_dataset_json,
        allow_import=allow_import,
        fold=fold,
        trainer=trainer,
        plans_identifier=plans_identifier,
        source_plans=source_plans,
        trust_checkpoint=trust_checkpoint,
        ignore_trainer=ignore_trainer,
    )
    target_options: dict[str, t.Any] = {"plans_identifier": plans_identifier,
                                        "target_plans_identifier": target_plans_identifier,
                                        "target_trainer": target_trainer}
    result = check_target(prepared, target, target_configuration=target_configuration,
                          target_dataset_json=target_dataset_json, **target_options)
    report = result.report
    write_html(html, report)
    if transfer_strategy:
        return _check_transfer(prepared, result, transfer_strategy, channel_map, fmt=fmt, problems_only=problems_only)
    if fix and schedule and report.compatible:
        raise UsageError("--schedule with --fix: the weights already load, so there is nothing to fix; for a "
                         "fine-tuning schedule on the target's own plans use plancheck transfer --schedule")
    if not fix or report.compatible:
        click.echo(render(report, fmt, verbose=not problems_only), nl=False)
        if fix and fmt == "text":
            click.echo("\nNothing to fix: the weights already load.")
        return int(ExitCode.OK if report.compatible else ExitCode.INCOMPATIBLE)
    return _fix(prepared, result, fmt=fmt, out=out, plans_name=plans_name, strategy=strategy or "architecture",
                force=force, dry_run=dry_run, target_options=target_options,
                schedule={"schedule": schedule, "carried_lr_ratio": carried_lr_ratio,
                          "schedule_plans": schedule_plans})


def _fix(prepared: t.Any, result: t.Any, *, fmt: str, out: str | None, plans_name: str | None, strategy: str,
         force: bool, dry_run: bool, target_options: dict[str, t.Any], schedule: dict[str, t.Any]) -> int:
    """--fix: plan the new plans, write them atomically (unless --dry-run), check again (:func:`plancheck.fix.fix`)."""
    from plancheck.fix import fix
    from plancheck.render import render

    outcome = fix(prepared, result, out=out, plans_name=plans_name, strategy=strategy, force=force, dry_run=dry_run,
                  target_options=target_options, **schedule)
    click.echo(render(outcome, fmt), nl=False)
    return outcome.exit_code


def _check_transfer(prepared: t.Any, result: t.Any, strategy: str, channel_map: str | None, *, fmt: str,
                    problems_only: bool) -> int:
    """check --transfer: the usual report, plus the per-part shares a transfer would reach."""
    import json

    from plancheck.render import render
    from plancheck.render.transfer import plan_markdown, plan_text
    from plancheck.transfer import plan_for
    from plancheck.remedies.transfer_plan import parse_channel_map

    plan = plan_for(prepared, result.target, strategy, parse_channel_map(channel_map),
                    master_verdict=result.report.pretrained_trainer)
    report = result.report
    if fmt == "json":
        click.echo(json.dumps({**report.to_dict(), "transfer": plan.to_dict()}, indent=2))
    else:
        click.echo(render(report, fmt, verbose=not problems_only), nl=False)
        click.echo("")
        click.echo(plan_text(plan) if fmt == "text" else plan_markdown(plan), nl=False)
    return int(ExitCode.OK if report.compatible else ExitCode.INCOMPATIBLE)
