"""Renderers of :class:`plancheck.records.verify.VerifyResult`: text, JSON and Markdown."""

from __future__ import annotations

import json

from plancheck.options import OutputFormat
from plancheck.records.units import GiB, bytes_text, seconds_text
from plancheck.records.verify import VerifyResult
from plancheck.render.registry import register, render

__all__ = ["memory_rows"]


def _rel(value: int | None, reference: int | None) -> str:
    if value is None or not reference:
        return ""
    return f" ({100.0 * (value - reference) / reference:+.1f}% vs measured)"


def memory_rows(result: VerifyResult) -> list[tuple[str, str]]:
    """(label, value) rows of the memory comparison, the same for every format."""
    rows: list[tuple[str, str]] = []
    m, p, e = result.measurement, result.prediction, result.nnunet_estimate
    measured: int | None = None
    if m is not None and m.peak_allocated is not None:
        measured = m.peak_allocated
        rows.append(("measured peak allocated (torch.cuda.max_memory_allocated)", bytes_text(m.peak_allocated)))
        rows.append(("measured peak reserved (torch.cuda.max_memory_reserved)", bytes_text(m.peak_reserved)))
    if m is not None and m.cpu_peak_delta is not None:
        measured = m.cpu_peak_delta
        rows.append(("measured CPU allocation delta of the steps (torch.profiler, PyTorch's CPU allocator)",
                     bytes_text(m.cpu_peak_delta)))
    if p is not None:
        where = p.device if p.simulated_on == p.device else f"{p.device}, simulated on {p.simulated_on}"
        if m is not None and m.cpu_peak_delta is not None:
            rows.append((f"predicted delta of the steps (fake tensors, MemTracker; {where})",
                         bytes_text(p.step_bytes) + _rel(p.step_bytes, measured)))
        rows.append((f"predicted peak (fake tensors, MemTracker; {where})",
                     bytes_text(p.peak_bytes) + ("" if m is None or m.cpu_peak_delta is not None
                                                 else _rel(p.peak_bytes, measured))))
    if e is not None:
        if e.estimate is None:
            rows.append((f"nnU-Net's estimate ({e.planner})", "none: the network has no compute_conv_feature_map_size"))
        else:
            implied = e.implied_bytes
            rows.append((
                f"nnU-Net's estimate ({e.planner}: compute_conv_feature_map_size)",
                f"{e.estimate:.4g} (reference {e.reference:.4g} at batch {e.reference_batch_size} = "
                f"{e.reference_gb:g} GB); implied {bytes_text(implied)} at batch {e.batch_size}"
                + ("" if m is None or m.peak_allocated is None else _rel(implied, measured)),
            ))
    return rows


def _phase_lines(result: VerifyResult) -> list[str]:
    """Which parameters the steps trained (a fine-tuning trainer's phase), and whether the others stayed fixed."""
    p, m = result.prediction, result.measurement
    if p is None or not p.parameters_total or (result.phase is None and p.parameters_trained == p.parameters_total):
        return []
    line = (f"Parameters trained: {p.parameters_trained:,} of {p.parameters_total:,}"
            + (f" (phase '{result.phase}')" if result.phase else ""))
    if m is not None and m.untrained_unchanged is not None:
        line += ("; the other " + f"{p.parameters_total - p.parameters_trained:,} bit-identical after the steps: "
                 + ("yes" if m.untrained_unchanged else "NO"))
    return [line]


@register(VerifyResult, OutputFormat.TEXT)
def _text(result: VerifyResult, verbose: bool) -> str:
    lines: list[str] = []
    report = result.report
    if not report.compatible:
        lines.append("NOT RUN: the weights do not load into the target network; the check:")
        lines.append("")
        lines.append(render(report, "text", verbose=False).rstrip("\n"))
        return "\n".join(lines) + "\n"
    verdict = "OK" if result.ok else "FAILED"
    what = "predicted" if result.device == "meta" else "verified"
    lines.append(f"{verdict}: {what} on {result.device} ({result.configuration}, {result.trainer}, batch "
                 f"{result.batch_size}, patch {list(result.patch_size or ())}, AMP {'on' if result.amp else 'off'})")
    lines += _phase_lines(result)
    w = result.weights
    if w is not None:
        if w.loaded:
            lines.append(f"Weights: loaded by nnU-Net's load_pretrained_weights; {w.tensors_equal} of "
                         f"{w.tensors_checked} tensors hold the source's values after loading (heads excluded)")
        else:
            lines.append(f"Weights: NOT loaded: {w.message}")
        lines.append(f"  from {w.weights_from}")
    m = result.measurement
    if m is not None:
        if m.out_of_memory:
            lines.append(f"Out of memory after {m.iterations} iteration(s): {m.out_of_memory}")
        if m.losses:
            trend = {True: "falls", False: "does not fall", None: ""}[m.loss_fell]
            finite = "" if m.losses_finite else " NOT FINITE"
            lines.append(f"Loss: {', '.join(f'{v:.4f}' for v in m.losses)}{finite}" + (f" ({trend})" if trend else ""))
            lines.append(f"Time per iteration after the first: {seconds_text(m.seconds_per_iteration)} "
                         f"(first {seconds_text(m.first_iteration_seconds)}; device {m.device_name})")
    if result.expected_seconds is not None:
        lines.append(f"Expected before the run: about {seconds_text(result.expected_seconds)}")
    rows = memory_rows(result)
    if rows:
        lines.append("Memory:")
        width = max(len(label) for label, _ in rows)
        lines.extend(f"  {label:<{width}}  {value}" for label, value in rows)
    if result.gpu_memory is not None:
        fits = {True: "yes", False: "NO", None: "unknown"}[result.fits]
        lines.append(f"Fits in --gpu-memory {result.gpu_memory / GiB:g} GiB: {fits} "
                     f"(compared: {bytes_text(result.memory_compared)})")
    notes = [*result.notes, *(result.prediction.notes if result.prediction else ()),
             *(result.nnunet_estimate.notes if result.nnunet_estimate else ())]
    if result.warnings:
        lines.extend(f"warning: {w}" for w in result.warnings)
    if verbose:
        lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines) + "\n"


@register(VerifyResult, OutputFormat.JSON)
def _json(result: VerifyResult, verbose: bool) -> str:
    return json.dumps(result.to_dict(), indent=2)


@register(VerifyResult, OutputFormat.MARKDOWN)
def _markdown(result: VerifyResult, verbose: bool) -> str:
    if not result.report.compatible:
        return "**Not run**: the weights do not load.\n\n" + render(result.report, "markdown", verbose=False)
    text = _text(result, verbose)
    head, _, rest = text.partition("\n")
    out: list[str] = [f"**{head}**", ""]
    rows = memory_rows(result)
    for line in rest.splitlines():
        if line.startswith("Memory:") or line.startswith("  "):
            continue
        out.append(f"- {line}")
    if rows:
        out += ["", "| memory | value |", "| --- | --- |"]
        out += [f"| {label} | {value} |" for label, value in rows]
    return "\n".join(out) + "\n"
