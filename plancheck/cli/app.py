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
from plancheck.errors import ExitCode, PlancheckError, UsageError

__all__ = ["main"]

FORMATS = ("text", "json", "markdown")
TRANSFER_STRATEGIES = ("exact", "encoder", "adapt")
INTERNAL_ERROR = int(ExitCode.INTERNAL)


def _run(fn: t.Callable[..., int]) -> t.Callable[..., None]:
    """Run a command body; turn its result or error into plancheck's exit codes.

    ``--traceback`` adds the traceback on stderr before the one-line message; the exit
    code and everything else stay as they are without it.
    """

    @functools.wraps(fn)
    def wrapper(*args: t.Any, traceback: bool = False, **kwargs: t.Any) -> None:
        try:
            code = fn(*args, **kwargs)
        except PlancheckError as e:
            _print_traceback(traceback)
            click.echo(f"plancheck: error: {e}", err=True)
            code = int(e.exit_code)
        except BrokenPipeError:  # `plancheck ... | head`: the reader left; say nothing more
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug in plancheck, not the user's input
            _print_traceback(traceback)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(
                f"plancheck: internal error: {type(e).__name__}: {first}"
                + ("" if traceback else " (rerun with --traceback and report it)"),
                err=True,
            )
            code = INTERNAL_ERROR
        sys.stdout.flush()
        raise SystemExit(code)

    return wrapper


def _print_traceback(wanted: bool) -> None:
    """With --traceback: the current exception's traceback on stderr (call inside ``except``)."""
    if wanted:
        import traceback as tb

        sys.stdout.flush()
        click.echo(tb.format_exc().rstrip("\n"), err=True)


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


def _html(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    return click.option(
        "--html", "html", default=None, metavar="FILE",
        help="Also write a self-contained HTML page (pictures of both networks) to FILE; "
        "replaces only a page plancheck wrote.",
    )(fn)


def _check_html(path: str | None) -> None:
    """Refuse an --html FILE that could not be written before a command writes or runs anything else."""
    if path:
        from plancheck.render.html import check_html_path

        check_html_path(path)


def _write_html(path: str | None, result: t.Any) -> None:
    if path:
        from plancheck.render.html import write_html

        write_html(path, result)


def _allow_import(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    return click.option(
        "--allow-import",
        "allow_import",
        multiple=True,
        metavar="MODULE",
        help="Also resolve class paths and trainers inside MODULE (trust its code). Repeatable.",
    )(fn)


def _target_options(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """The options that shape the TARGET side, the same on every command that takes a TARGET."""
    for option in reversed((
        click.option("--target-configuration", default=None, metavar="NAME",
                     help="Target configuration, if not the source's."),
        click.option("--target-dataset-json", default=None, metavar="FILE",
                     help="Default: dataset.json next to TARGET."),
        click.option("--target-plans", "target_plans_identifier", default=None, metavar="PLANS_IDENTIFIER",
                     help="Plans of a target dataset ID or preprocessed folder, if not -p's (e.g. the plans --fix "
                     "wrote)."),
        click.option("--target-trainer", default=None, metavar="NAME",
                     help="Trainer of the fine-tuning run, if not the source's."),
    )):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="plancheck")
def cli() -> None:
    """Will nnU-Net pretrained weights load into a fine-tuning plan? Checked before any GPU time is spent.

    \b
    Exit codes: 0 compatible, 1 incompatible, 2 usage error,
                3 input that cannot be checked, 4 internal error,
                5 a file plancheck wrote failed its read-back check (nothing written).
    """


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


@cli.command("check")
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
@click.option("--source-dataset-json", default=None, metavar="FILE",
              help="Default: the checkpoint's own, or dataset.json next to SOURCE.")
@click.option(
    "-p",
    "--plans",
    "plans_identifier",
    default="nnUNetPlans",
    show_default=True,
    metavar="PLANS_IDENTIFIER",
    help="Plans of a dataset ID or preprocessed folder (<PLANS_IDENTIFIER>.json), as nnUNetv2_train -p: "
    "of both sides, unless --target-plans names the target's.",
)
@click.option(
    "-tr",
    "--trainer",
    default=None,
    metavar="NAME",
    help="Trainer whose build_network_architecture builds the networks, and the model folder of a source "
    "dataset ID.  [default: the checkpoint's trainer_name, else nnUNetTrainer]",
)
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
@click.option("--fix", is_flag=True, help="Write new target plans that load the SOURCE weights, then check again.")
@click.option("-o", "--out", default=None, metavar="PATH",
              help="With --fix: file or folder for the new plans.  [default: next to TARGET's plans]")
@click.option("--plans-name", default=None, metavar="NAME",
              help="With --fix: the new plans identifier.  [default: <target plans>_from_<source dataset>]")
@click.option("--strategy", type=click.Choice(["architecture", "move"]), default=None,
              help="With --fix: carry only the architecture (default), or copy everything as "
              "nnUNetv2_move_plans_between_datasets does.")
@click.option("--force", is_flag=True, help="With --fix: overwrite an existing plans file.")
@click.option("--dry-run", is_flag=True, help="With --fix: print the changes as a diff; write nothing.")
@_html
@click.option("--transfer", "transfer_strategy", type=click.Choice(TRANSFER_STRATEGIES), default=None,
              help="Also show the share of parameters, per part, that plancheck transfer would carry over "
              "with this strategy (writes nothing).")
@click.option("--channel-map", default=None, metavar="MAP", help="With --transfer adapt: as for transfer.")
@_target_options
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
                "--dry-run": dry_run}
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
    target_options = {"plans_identifier": plans_identifier, "target_plans_identifier": target_plans_identifier,
                      "target_trainer": target_trainer}
    result = check_target(prepared, target, target_configuration=target_configuration,
                          target_dataset_json=target_dataset_json, **target_options)
    report = result.report
    _write_html(html, report)
    if transfer_strategy:
        return _check_transfer(prepared, result, transfer_strategy, channel_map, fmt=fmt, problems_only=problems_only)
    if not fix or report.compatible:
        click.echo(render(report, fmt, verbose=not problems_only), nl=False)
        if fix and fmt == "text":
            click.echo("\nNothing to fix: the weights already load.")
        return int(ExitCode.OK if report.compatible else ExitCode.INCOMPATIBLE)
    return _fix(prepared, result, fmt=fmt, out=out, plans_name=plans_name, strategy=strategy or "architecture",
                force=force, dry_run=dry_run, target_options=target_options)


def _fix(prepared: t.Any, result: t.Any, *, fmt: str, out: str | None, plans_name: str | None, strategy: str,
         force: bool, dry_run: bool, target_options: dict[str, t.Any]) -> int:
    """--fix: plan the new plans, write them atomically (unless --dry-run), check again (:func:`plancheck.fix.fix`)."""
    from plancheck.fix import fix
    from plancheck.render import render

    outcome = fix(prepared, result, out=out, plans_name=plans_name, strategy=strategy, force=force, dry_run=dry_run,
                  target_options=target_options)
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


@cli.command("transfer")
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
@click.option("--force", is_flag=True, help="Overwrite an existing OUT.")
@click.option("--dry-run", is_flag=True, help="Print the report; write nothing.")
@click.option("-v", "--verbose", is_flag=True, help="List every tensor (text and markdown), copied ones included.")
@click.option("--source-dataset-json", default=None, metavar="FILE", help="As for check.")
@click.option("-p", "--plans", "plans_identifier", default="nnUNetPlans", show_default=True,
              metavar="PLANS_IDENTIFIER", help="As for check.")
@click.option("-tr", "--trainer", default=None, metavar="NAME", help="As for check.")
@click.option("--fold", default=None, metavar="FOLD", help="As for check.")
@click.option("--source-plans", default=None, metavar="FILE", help="As for check.")
@click.option("--trust-checkpoint", is_flag=True, help="As for check: runs code from the file.")
@click.option("--ignore-trainer", is_flag=True, help="As for check.")
@_html
@_target_options
@_allow_import
@_common
@_run
def transfer_command(
    source: str,
    target: str,
    out: str | None,
    configuration: str | None,
    target_configuration: str | None,
    strategy: str,
    channel_map: str | None,
    seed: int,
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

    _check_html(html)
    result = transfer(
        source,
        target,
        out,
        configuration=configuration,
        target_configuration=target_configuration,
        strategy=strategy,
        channel_map=channel_map,
        seed=seed,
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
    _write_html(html, result)
    click.echo(render(result, fmt, verbose=verbose), nl=False)
    return result.exit_code


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
@_html
@click.option(
    "-p",
    "--plans",
    "plans_identifier",
    default="nnUNetPlans",
    show_default=True,
    metavar="PLANS_IDENTIFIER",
    help="Plans of a dataset ID or preprocessed folder (<PLANS_IDENTIFIER>.json), as for check.",
)
@_common
@_run
def diff_command(
    plans_a: str,
    plans_b: str,
    configurations: tuple[str, ...],
    target_configuration: str | None,
    dataset_json_a: str | None,
    dataset_json_b: str | None,
    html: str | None,
    plans_identifier: str,
    fmt: str,
) -> int:
    """Compare two plans, each difference in one category. Never imports torch.

    \b
    PLANS_A, PLANS_B: what check takes as TARGET: a plans.json, a preprocessed dataset
                      folder, or a dataset ID under $nnUNet_preprocessed (with -p).

    Configurations are compared resolved (inherits_from applied, the old plans format
    converted); paths are printed as they stand in each file.

    \b
    Categories: architecture (weight shapes or keys), io (channels, labels, regions),
                preprocessing, training, identity.
    Exit codes: 0 no architecture difference and the same number of input channels
                (labels may differ: nnU-Net never loads the head), 1 otherwise,
                2 usage error, 3 input that cannot be read.
    """
    from plancheck.compare.plansdiff import diff
    from plancheck.render import render
    from plancheck.inputs.sources import resolve_target

    a = resolve_target(plans_a, plans_identifier=plans_identifier, target_dataset_json=dataset_json_a)
    b = resolve_target(plans_b, plans_identifier=plans_identifier, target_dataset_json=dataset_json_b)
    result = diff(
        a.plans,
        b.plans,
        configurations or None,
        target_configuration=target_configuration,
        dataset_json_a=a.dataset_json,
        dataset_json_b=b.dataset_json,
    )
    _write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    return int(ExitCode.INCOMPATIBLE if result.has_blocking else ExitCode.OK)


@cli.command("matrix")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("-c", "--configuration", "configurations", multiple=True, metavar="NAME",
              help="Configuration to check; repeatable.  [default: a checkpoint's own, else 3d_fullres]")
@click.option("--source-dataset-json", default=None, metavar="FILE",
              help="Default: the checkpoint's own, or dataset.json next to SOURCE.")
@click.option("-p", "--plans", "plans_identifier", default="nnUNetPlans", show_default=True,
              metavar="PLANS_IDENTIFIER", help="Plans of dataset IDs and preprocessed folders (both sides).")
@click.option("-tr", "--trainer", default=None, metavar="NAME", help="As for check.")
@click.option("--fold", default=None, metavar="FOLD", help="As for check.")
@click.option("--source-plans", default=None, metavar="FILE", help="As for check.")
@click.option("--trust-checkpoint", is_flag=True, help="As for check: runs code from the file.")
@click.option("--ignore-trainer", is_flag=True, help="As for check.")
@click.option("--fix", is_flag=True, help="Write fixed plans for every fixable target, and check them again.")
@click.option("--strategy", type=click.Choice(["architecture", "move"]), default="architecture",
              show_default=True, help="With --fix: as for check.")
@click.option("--force", is_flag=True, help="With --fix: overwrite existing plans files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_html
@_target_options
@_allow_import
@_common
@_run
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
    _write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    if result.rows and not result.applicable_rows:
        click.echo("plancheck: error: nothing to check: every combination is not applicable (a side lacks the "
                   "configuration)", err=True)
    return result.exit_code


@cli.command("verify")
@click.argument("source")
@click.argument("target")
@click.option("-c", "--configuration", default=None, metavar="NAME",
              help="Configuration.  [default: a checkpoint's own configuration, else 3d_fullres]")
@click.option("--source-dataset-json", default=None, metavar="FILE", help="As for check.")
@click.option("-p", "--plans", "plans_identifier", default="nnUNetPlans", show_default=True,
              metavar="PLANS_IDENTIFIER", help="As for check.")
@click.option("-tr", "--trainer", default=None, metavar="NAME", help="As for check; also the trainer that is run.")
@click.option("--fold", default=None, metavar="FOLD", help="As for check.")
@click.option("--source-plans", default=None, metavar="FILE", help="As for check.")
@click.option("--ignore-trainer", is_flag=True, help="As for check.")
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
@click.option("--force", is_flag=True, help="Run on the CPU even above the expected time or memory limit.")
@_html
@_target_options
@_allow_import
@_common
@_run
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

    _check_html(html)
    patch: tuple[int, ...] | None = None
    if patch_size:
        patch = tuple(patch_size)
    result = verify(
        source, target, configuration, device=device, iterations=iterations, batch_size=batch_size,
        patch_size=patch, gpu_memory=gpu_memory, amp=amp, force=force,
        progress=lambda message: click.echo(f"plancheck: {message}", err=True),
        target_configuration=target_configuration, source_dataset_json=source_dataset_json,
        target_dataset_json=target_dataset_json, plans_identifier=plans_identifier, trainer=trainer,
        target_trainer=target_trainer, target_plans_identifier=target_plans_identifier, fold=fold,
        source_plans=source_plans, ignore_trainer=ignore_trainer,
        allow_import=allow_import,
    )
    _write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    return result.exit_code


def main(argv: t.Sequence[str] | None = None) -> None:
    """Console-script entry point (``python -m plancheck`` too); ``argv`` for a call from Python.

    As the program (``argv`` None: the arguments come from ``sys.argv``), the process is
    plancheck's own, so it defers the imports a check never uses (:mod:`plancheck.cli.defer`).
    Called with ``argv`` from someone's Python process, it changes nothing in that process.
    """
    if argv is None:
        from plancheck.cli.defer import defer

        defer()
    cli.main(args=list(argv) if argv is not None else None, prog_name="plancheck")
