"""``plancheck verify``: check, then load the weights with nnU-Net and run training steps on a device."""

from __future__ import annotations

import click

from plancheck.cli.options import (
    allow_import_option,
    check_html,
    force_option,
    html_option,
    output_options,
    source_options,
    target_options,
    write_html,
)

__all__ = ["verify_command"]


@click.command("verify")
@click.argument("source")
@click.argument("target")
@click.option("-c", "--configuration", default=None, metavar="NAME",
              help="Configuration.  [default: a checkpoint's own configuration, else 3d_fullres]")
@source_options(trust_checkpoint=False, helps={"--trainer": "As for check; also the trainer that is run."})
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N|meta",
              help="Where to run; meta: predict the CUDA memory of a step, nothing allocated.")
@click.option("--iterations", type=click.IntRange(min=1), default=3, show_default=True,
              help="Training iterations to run.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Instead of the plans' batch size.")
@click.option("--patch-size", type=click.IntRange(min=0), nargs=3, default=None, metavar="Z Y X",
              help="Instead of the plans' patch size (2d: 0 Y X).")
@click.option("--gpu-memory", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GiB",
              help="Exit 1 unless the step fits in this much GPU memory (measured reserved; predicted with meta).")
@click.option("--amp/--no-amp", default=None, help="Autocast + GradScaler.  [default: on for cuda and meta]")
@click.option("--phase", type=click.Choice(("frozen", "warmup", "train")), default=None,
              help="With a fine-tuning trainer (plancheck trainers): the phase the steps run in.  [default: frozen]")
@force_option("Run on the CPU even above the expected time or memory limit.")
@html_option
@target_options
@allow_import_option
@output_options
def verify_command(
    source: str,
    target: str,
    configuration: str | None,
    target_configuration: str | None,
    source_dataset_json: str | None,
    target_dataset_json: str | None,
    plans_identifier: str,
    trainer: str | None,
    target_trainer: str | None,
    target_plans_identifier: str | None,
    fold: str | None,
    source_plans: str | None,
    ignore_trainer: bool,
    device: str,
    iterations: int,
    batch_size: int | None,
    patch_size: tuple[int, ...] | None,
    gpu_memory: float | None,
    amp: bool | None,
    phase: str | None,
    force: bool,
    html: str | None,
    allow_import: tuple[str, ...],
    fmt: str,
) -> int:
    """Check, then load the weights with nnU-Net and run training steps on a device.

    \b
    The pair is checked on the meta device first (incompatible: exit 1, nothing run).
    Then nnU-Net's trainer builds the target network, its optimizer and loss; the
    step's memory is predicted with fake tensors and set against nnU-Net's planner
    estimate; on cpu/cuda the source weights are loaded by load_pretrained_weights and
    N steps run on synthetic batches of the plan's patch and batch size.
    Exit codes: 0 loaded, ran and fits; 1 incompatible, not loaded, out of memory or
    over --gpu-memory; 2 usage error or a CPU run over the limits without --force;
    3 input that cannot be read.
    """
    from plancheck.render import render
    from plancheck.verify import verify

    check_html(html)
    patch: tuple[int, ...] | None = None
    if patch_size:
        patch = tuple(patch_size)
    result = verify(
        source, target, configuration, device=device, iterations=iterations, batch_size=batch_size,
        patch_size=patch, gpu_memory=gpu_memory, amp=amp, phase=phase, force=force,
        progress=lambda message: click.echo(f"plancheck: {message}", err=True),
        target_configuration=target_configuration, source_dataset_json=source_dataset_json,
        target_dataset_json=target_dataset_json, plans_identifier=plans_identifier, trainer=trainer,
        target_trainer=target_trainer, target_plans_identifier=target_plans_identifier, fold=fold,
        source_plans=source_plans, ignore_trainer=ignore_trainer,
        allow_import=allow_import,
    )
    write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    return result.exit_code
