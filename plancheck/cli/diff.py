"""``plancheck diff``: compare two plans, each difference in one category. Never imports torch."""

from __future__ import annotations

import click

from plancheck.cli.options import html_option, output_options, plans_option, write_html
from plancheck.errors import ExitCode

__all__ = ["diff_command"]


@click.command("diff")
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
@html_option
@plans_option("Plans of a dataset ID or preprocessed folder (<PLANS_IDENTIFIER>.json), as for check.")
@output_options
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
    write_html(html, result)
    click.echo(render(result, fmt), nl=False)
    return int(ExitCode.INCOMPATIBLE if result.has_blocking else ExitCode.OK)
