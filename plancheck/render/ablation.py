"""Renderers of ``plancheck ablation`` (:class:`plancheck.records.ablation.Ablation`): text, Markdown and JSON."""

from __future__ import annotations

import json

from plancheck.options import OutputFormat
from plancheck.records.ablation import ARM_DESCRIPTIONS, Ablation
from plancheck.render.registry import register

__all__: list[str] = []


def _lines(a: Ablation, code: str) -> list[str]:
    made = sum(x.made for x in a.arms)
    lines = [f"Ablation of {a.source} on {a.target} [{a.configuration}], folds {', '.join(a.folds)}: {made} of "
             f"{len(a.arms)} arms made", ""]
    for arm in a.arms:
        head = f"{arm.name}: {ARM_DESCRIPTIONS.get(arm.name, '')}"
        if not arm.made:
            lines += [head, f"  not made: {arm.reason}", ""]
            continue
        lines += [head, f"  plans {arm.plans} ({arm.plans_file}); trainer {arm.trainer}"
                  + (f" ({arm.epochs} epochs)" if arm.epochs else "")
                  + (f"; weights {arm.pretrained_weights}" if arm.pretrained_weights else "; from scratch"),
                  f"  results: $nnUNet_results/{arm.results_folder}"]
        lines += [f"  {code}{c}" for c in arm.prepare]
        lines += [f"  {code}{c}" for c in (arm.train or {}).values()]
        lines.append("")
    if a.notes:
        lines += ["Notes:", *(f"  - {n}" for n in a.notes), ""]
    if a.dry_run:
        lines.append("(dry run: nothing written)")
    else:
        lines.append(f"Wrote {len(a.written)} files, each read back, among them the manifest {a.manifest} and the "
                     f"script {a.script}.")
        lines.append(f"Run: EXTRA='-device cpu' bash {a.script} [ARM ...]   (EXTRA only on a machine without CUDA)")
        lines.append(f"Then: plancheck compare --manifest {a.manifest}")
    return lines


@register(Ablation, OutputFormat.TEXT)
def _text(a: Ablation, verbose: bool) -> str:
    return "\n".join(_lines(a, "")) + "\n"


@register(Ablation, OutputFormat.MARKDOWN)
def _markdown(a: Ablation, verbose: bool) -> str:
    return "## plancheck ablation\n\n" + "\n".join(_lines(a, "    ")) + "\n"


@register(Ablation, OutputFormat.JSON)
def _json(a: Ablation, verbose: bool) -> str:
    return json.dumps(a.to_dict(), indent=2) + "\n"
