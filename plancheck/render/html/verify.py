"""The verify page (``plancheck verify --html``): does nnU-Net's fine-tuning step run on these weights?

The verdict of the run (device, configuration, trainer, batch, patch, AMP), whether nnU-Net's
``load_pretrained_weights`` loaded the weights, one row per training iteration with its loss and
time, memory measured, predicted and estimated by nnU-Net, whether it fits ``--gpu-memory``,
warnings and notes; then the check that came first
(:func:`plancheck.render.html.check.check_section`). A pair that does not load is not run.
"""

from __future__ import annotations

import math
import typing as t

from plancheck.records.verify import VerifyResult
from plancheck.render.html.check import check_section
from plancheck.render.html.page import esc, page
from plancheck.render.registry import HTML, register

__all__ = ["verify_page"]


@register(VerifyResult, HTML)
def verify_page(result: t.Any, verbose: bool = True) -> str:
    """The page of a verify run (its ``html`` renderer; ``verbose`` changes nothing)."""
    from plancheck.render.verify import memory_rows
    from plancheck.records.units import GiB, bytes_text, seconds_text

    report = result.report
    out = ["<h1>Does the fine-tuning step run?</h1>",
           '<p class="muted"><code>plancheck verify</code> checks the pair, then loads the weights with nnU-Net\'s '
           "<code>load_pretrained_weights</code> and runs training steps of nnU-Net's trainer on synthetic batches, "
           "measuring their memory and time.</p>"]
    if not report.compatible:
        out.append('<div class="verdict bad"><b>✗ Not run.</b> The weights do not load into the target\'s network; '
                   "nothing was built on a device. The check follows.</div>")
    else:
        what = "predicted" if result.device == "meta" else "verified"
        cls, mark = ("good", "✓ OK") if result.ok else ("bad", "✗ Failed")
        out.append(f'<div class="verdict {cls}"><b>{mark}:</b> {what} on <code>{esc(result.device)}</code> '
                   f"({esc(result.configuration)}, {esc(result.trainer)}, batch {esc(result.batch_size)}, patch "
                   f"{esc(list(result.patch_size or ()))}, AMP {'on' if result.amp else 'off'}).</div>")
        w = result.weights
        if w is not None:
            if w.loaded:
                text = (f"Loaded by nnU-Net's <code>load_pretrained_weights</code>; {w.tensors_equal} of "
                        f"{w.tensors_checked} tensors hold the source's values after loading (heads excluded).")
            else:
                text = f"<b>Not loaded:</b> {esc(w.message)}"
            out.append(f"<p><b>Weights.</b> {text} <span class=\"muted small\">From {esc(w.weights_from)}."
                       "</span></p>")
        m = result.measurement
        if m is not None:
            out.append("<h2>Training steps</h2>")
            if m.out_of_memory:
                out.append(f'<div class="verdict bad"><b>Out of memory</b> after {m.iterations} iteration(s): '
                           f"{esc(m.out_of_memory)}</div>")
            if m.losses:
                trend = {True: "falls", False: "does not fall", None: "has one value, so no trend"}[m.loss_fell]
                rows = []
                for i, loss in enumerate(m.losses):
                    if i == 0:
                        secs = (f'<td class="num">{seconds_text(m.first_iteration_seconds)} '
                                '<span class="muted small">(the first, warm-up)</span></td>')
                    elif i == 1:
                        secs = (f'<td class="num" rowspan="{len(m.losses) - 1}">'
                                f'{seconds_text(m.seconds_per_iteration)} '
                                '<span class="muted small">each (their mean)</span></td>')
                    else:
                        secs = ""
                    bad = "" if math.isfinite(loss) else ' class="tx-fails"'
                    rows.append(f'<tr><td class="num">{i + 1}</td><td class="num"{bad}>{loss:.4f}</td>{secs}</tr>')
                out.append('<table style="width:auto"><thead><tr><th class="num">iteration</th>'
                           '<th class="num">loss</th><th class="num">time</th></tr></thead><tbody>'
                           + "".join(rows) + "</tbody></table>")
                finite = "finite" if m.losses_finite else "<b>not finite</b>"
                out.append(f'<p class="small">The loss is {finite}; it {trend}. Device: {esc(m.device_name)}.'
                           "</p>")
        if result.expected_seconds is not None:
            out.append(f'<p class="small">Expected before the run: about {seconds_text(result.expected_seconds)}.</p>')
        mem = memory_rows(result)
        if mem:
            out.append("<h2>Memory: measured, predicted, nnU-Net's estimate</h2>")
            out.append("<table><thead><tr><th>what</th><th>value</th></tr></thead><tbody>"
                       + "".join(f"<tr><td>{esc(k)}</td><td class=\"mono\">{esc(v)}</td></tr>" for k, v in mem)
                       + "</tbody></table>")
            if result.nnunet_estimate is not None and result.nnunet_estimate.estimate is not None:
                out.append('<p class="small muted">nnU-Net\'s estimate is not in bytes: its planner compares '
                           "<code>compute_conv_feature_map_size</code> (feature-map elements) with a reference that "
                           "stands for its GPU memory target; <i>implied</i> turns it into bytes by that same "
                           "proportion.</p>")
        if result.gpu_memory is not None:
            fits = {True: "yes", False: "no", None: "unknown"}[result.fits]
            out.append(f"<p><b>Fits in --gpu-memory {result.gpu_memory / GiB:g} GiB: {fits}</b> (compared: "
                       f"{esc(bytes_text(result.memory_compared))}).</p>")
        if result.warnings:
            out.append("<h2>Warnings</h2>")
            out.append('<ul class="plain">' + "".join(f"<li>{esc(x)}</li>" for x in result.warnings) + "</ul>")
        notes = [*result.notes, *(result.prediction.notes if result.prediction else ()),
                 *(result.nnunet_estimate.notes if result.nnunet_estimate else ())]
        if notes:
            out.append("<h2>Notes</h2>")
            out.append('<ul class="plain small">' + "".join(f"<li>{esc(x)}</li>" for x in notes) + "</ul>")
    out.append('<h2>The check that came first</h2>')
    out.append(check_section(report, heading="h3"))
    title = "plancheck verify: " + ("not run" if not report.compatible else "ok" if result.ok else "failed")
    return page(title, "\n".join(out))
