"""Option bundles: the options several commands share, each written once.

A bundle is a decorator that applies a list of ``click.option`` decorators, so that the
options appear in the listed order in ``--help`` wherever the bundle stands in a command's
decorator stack (the pattern of check-jsonschema's ``cli/common_options.py``). The SOURCE
options (:func:`source_options`) are described in full on ``check`` and referred to
("As for check.") elsewhere; the TARGET options (:func:`target_options`) read the same on
every command that takes a TARGET.
"""

from __future__ import annotations

import typing as t

import click

__all__ = [
    "AS_FOR_CHECK",
    "FIX_STRATEGIES",
    "FORMATS",
    "SOURCE_HELP",
    "TRACEBACK",
    "TRANSFER_STRATEGIES",
    "allow_import_option",
    "bundle",
    "check_html",
    "force_option",
    "html_option",
    "output_options",
    "plans_option",
    "source_options",
    "target_options",
    "write_html",
]

FORMATS = ("text", "json", "markdown")
TRANSFER_STRATEGIES = ("exact", "encoder", "adapt")
FIX_STRATEGIES = ("architecture", "move")

#: ``click.Context.meta`` key under which --traceback is kept for the error handler in :mod:`plancheck.cli.main`.
TRACEBACK = "plancheck.traceback"

Decorator = t.Callable[[t.Callable[..., t.Any]], t.Callable[..., t.Any]]


def bundle(*options: Decorator) -> Decorator:
    """One decorator applying ``options``; they appear in ``--help`` in this order."""

    def apply(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


#: check's help for each SOURCE option; the other commands refer to it (:func:`source_options`).
SOURCE_HELP = {
    "--source-dataset-json": "Default: the checkpoint's own, or dataset.json next to SOURCE.",
    "--plans": "Plans of a dataset ID or preprocessed folder (<PLANS_IDENTIFIER>.json), as nnUNetv2_train -p: "
    "of both sides, unless --target-plans names the target's.",
    "--trainer": "Trainer whose build_network_architecture builds the networks, and the model folder of a source "
    "dataset ID.  [default: the checkpoint's trainer_name, else nnUNetTrainer]",
    "--fold": "Fold of a trained-model folder (0-4, all).  [default: the first with a checkpoint]",
    "--source-plans": "Plans of a bare state_dict or safetensors SOURCE (replaces a checkpoint's embedded plans).",
    "--trust-checkpoint": "Read SOURCE with torch.load(weights_only=False): runs code from the file. Only for files "
    "you trust.",
    "--ignore-trainer": "Build from the plans alone when a trainer cannot be found or imported (default: exit 3).",
}

#: What the other commands say instead of check's help.
AS_FOR_CHECK = {name: "As for check." for name in SOURCE_HELP} | {
    "--trust-checkpoint": "As for check: runs code from the file."
}


def plans_option(help: str) -> Decorator:
    """-p/--plans: the plans identifier of dataset IDs and preprocessed folders, as nnUNetv2_train -p."""
    return click.option("-p", "--plans", "plans_identifier", default="nnUNetPlans", show_default=True,
                        metavar="PLANS_IDENTIFIER", help=help)


def source_options(
    *, described: bool = False, trust_checkpoint: bool = True, helps: t.Mapping[str, str] | None = None
) -> Decorator:
    """The options that shape the SOURCE side (-c aside), in the same order on every command that takes a SOURCE.

    ``described``: each option's full help (check); otherwise "As for check.". ``helps``: a
    command's own help for some of them, by long option name. ``trust_checkpoint=False``
    leaves --trust-checkpoint out.
    """
    texts = {**(SOURCE_HELP if described else AS_FOR_CHECK), **(helps or {})}
    options: list[Decorator] = [
        click.option("--source-dataset-json", default=None, metavar="FILE", help=texts["--source-dataset-json"]),
        plans_option(texts["--plans"]),
        click.option("-tr", "--trainer", default=None, metavar="NAME", help=texts["--trainer"]),
        click.option("--fold", default=None, metavar="FOLD", help=texts["--fold"]),
        click.option("--source-plans", default=None, metavar="FILE", help=texts["--source-plans"]),
    ]
    if trust_checkpoint:
        options.append(click.option("--trust-checkpoint", is_flag=True, help=texts["--trust-checkpoint"]))
    options.append(click.option("--ignore-trainer", is_flag=True, help=texts["--ignore-trainer"]))
    return bundle(*options)


#: The options that shape the TARGET side, the same on every command that takes a TARGET.
target_options = bundle(
    click.option("--target-configuration", default=None, metavar="NAME",
                 help="Target configuration, if not the source's."),
    click.option("--target-dataset-json", default=None, metavar="FILE",
                 help="Default: dataset.json next to TARGET."),
    click.option("--target-plans", "target_plans_identifier", default=None, metavar="PLANS_IDENTIFIER",
                 help="Plans of a target dataset ID or preprocessed folder, if not -p's (e.g. the plans --fix "
                 "wrote)."),
    click.option("--target-trainer", default=None, metavar="NAME",
                 help="Trainer of the fine-tuning run, if not the source's."),
)

allow_import_option = click.option(
    "--allow-import",
    "allow_import",
    multiple=True,
    metavar="MODULE",
    help="Also resolve class paths and trainers inside MODULE (trust its code). Repeatable.",
)


def _keep_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[TRACEBACK] = value


#: The last options of every command: --format, and --traceback (kept for the error handler, not passed on).
output_options = bundle(
    click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="Output format.",
    ),
    click.option(
        "--traceback", is_flag=True, expose_value=False, callback=_keep_traceback,
        help="Show the full traceback of an error instead of one line.",
    ),
)

html_option = click.option(
    "--html", "html", default=None, metavar="FILE",
    help="Also write a self-contained HTML page (pictures of both networks) to FILE; "
    "replaces only a page plancheck wrote.",
)


def force_option(help: str) -> Decorator:
    """--force: each command says what it overrides."""
    return click.option("--force", is_flag=True, help=help)


def check_html(path: str | None) -> None:
    """Refuse an --html FILE that could not be written before a command writes or runs anything else."""
    if path:
        from plancheck.render.html import check_html_path

        check_html_path(path)


def write_html(path: str | None, result: t.Any) -> None:
    """With --html FILE: the page for ``result``."""
    if path:
        from plancheck.render.html import write_html as write

        write(path, result)
