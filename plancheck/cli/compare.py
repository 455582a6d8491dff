"""``plancheck compare``: nnU-Net results of the arms side by side, each against the baseline. Never imports torch."""

from __future__ import annotations

import click

from plancheck.cli.options import html_option, output_options, write_html

__all__ = ["compare_command"]


@click.command("compare")
@click.argument("results", nargs=-1, metavar="[NAME=]RESULT...")
@click.option("--manifest", default=None, metavar="FILE", help="The arms of an ablation (plancheck ablation's "
              "manifest), found under $nnUNet_results (or --results).")
@click.option("--results", "results_folder", default=None, metavar="DIR",
              help="Where the manifest's arms are.  [default: $nnUNet_results]")
@click.option("--baseline", default=None, metavar="NAME",
              help="The arm the others are compared with.  [default: the manifest's, else the first RESULT]")
@click.option("--folds", multiple=True, metavar="FOLD",
              help="The folds every arm should have; repeatable.  [default: the manifest's, else those present]")
@click.option("-tr", "--trainer", default="nnUNetTrainer", show_default=True, metavar="NAME",
              help="For RESULTs given as dataset IDs.")
@click.option("-p", "--plans", "plans_identifier", default="nnUNetPlans", show_default=True,
              metavar="PLANS_IDENTIFIER", help="For RESULTs given as dataset IDs.")
@click.option("-c", "--configuration", default="3d_fullres", show_default=True, metavar="NAME",
              help="For RESULTs given as dataset IDs.")
@click.option("-v", "--verbose", is_flag=True, help="Every metric of summary.json per class, not only Dice.")
@html_option
@output_options
def compare_command(results: tuple[str, ...], manifest: str | None, results_folder: str | None,
                    baseline: str | None, folds: tuple[str, ...], trainer: str, plans_identifier: str,
                    configuration: str, verbose: bool, html: str | None, fmt: str) -> int:
    """Compare nnU-Net results: per arm the folds, per-class Dice and the foreground mean; per arm against the
    baseline the paired difference per case and a Wilcoxon signed-rank test.

    \b
    RESULT: a trained-model folder (TRAINER__PLANS__CONFIGURATION), a fold_N folder, a
            fold_N/validation/summary.json, or a dataset ID (with -tr, -p, -c) under
            $nnUNet_results. NAME=RESULT names the arm.
    Exit 0 when every arm has all its folds, finished, and pairs with the baseline; 1 when a
    fold is missing or unfinished or a pair is refused (other cases); 3 for unreadable input.
    """
    from plancheck.render import render
    from plancheck.results import compare_results

    if html:
        from plancheck.render.html import check_html_path

        check_html_path(html)
    result = compare_results(results, manifest=manifest, baseline=baseline, folds=folds or None,
                             results_folder=results_folder, trainer=trainer, plans_identifier=plans_identifier,
                             configuration=configuration)
    write_html(html, result)
    click.echo(render(result, fmt, verbose=verbose), nl=False)
    return result.exit_code
