"""The compare page (``plancheck compare --html``): the arms side by side, and each against the baseline.

The arms' table (folds, cases, foreground Dice per fold and pooled, per class), a bar chart of
the per-class Dice of every arm, and per arm against the baseline a strip of the paired
per-case differences (one dot per case, zero marked), with the Wilcoxon test beside it. Inline
SVG, colours from the page's own variables (light and dark schemes).
"""

from __future__ import annotations

import math
import typing as t

from plancheck.records.results import Comparison
from plancheck.render.html.page import esc, page
from plancheck.render.registry import HTML, register
from plancheck.render.results import ARM_HEADERS, arm_row, headline, labels_of, p_text, signed

__all__ = ["compare_page"]

#: one colour per arm, as CSS custom properties fall back on (readable on light and dark backgrounds)
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f")


def _bars(c: Comparison) -> str:
    labels = labels_of(c)
    arms = c.arms
    if not labels or not arms:
        return ""
    bar, gap, height, left = 14, 18, 180, 40
    group = bar * len(arms) + gap
    width = left + group * len(labels) + 10
    out = [f'<svg class="bars" role="img" aria-label="Dice per class and arm" width="{width}" height="{height + 40}"'
           f' viewBox="0 0 {width} {height + 40}">']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = 10 + height * (1 - tick)
        out.append(f'<line x1="{left}" x2="{width - 5}" y1="{y:.1f}" y2="{y:.1f}" style="stroke:var(--border)"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" style="fill:var(--muted)">'
                   f"{tick:g}</text>")
    for i, label in enumerate(labels):
        x0 = left + i * group + gap / 2
        for j, arm in enumerate(arms):
            value = arm.classes.get(label, {}).get("Dice", math.nan)
            if math.isnan(value):
                continue
            h = height * value
            out.append(f'<rect class="bar-arm" x="{x0 + j * bar:.1f}" y="{10 + height - h:.1f}" width="{bar - 2}" '
                       f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}"><title>{esc(arm.name)}, class '
                       f"{esc(label)}: Dice {value:.4f}</title></rect>")
        out.append(f'<text x="{x0 + bar * len(arms) / 2:.1f}" y="{height + 28}" text-anchor="middle" font-size="12" '
                   f'style="fill:var(--fg)">class {esc(label)}</text>')
    out.append("</svg>")
    key = "".join(f'<span class="small"><svg width="12" height="12"><rect width="12" height="12" '
                  f'fill="{PALETTE[j % len(PALETTE)]}"/></svg> {esc(a.name)}</span> ' for j, a in enumerate(arms))
    return "".join(out) + f"<p>{key}</p>"


def _strip(p: t.Any) -> str:
    """One dot per case: the arm's foreground Dice minus the baseline's, zero in the middle."""
    values = list(p.diffs.items())
    if not values:
        return '<p class="muted">no paired case</p>'
    span = max(0.01, max(abs(v) for _, v in values))
    width, height, pad = 520, 46, 20
    mid = width / 2

    def x(v: float) -> float:
        return mid + (width / 2 - pad) * v / span

    out = [f'<svg class="strip" role="img" aria-label="paired differences, {esc(p.arm)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">',
           f'<line x1="{pad}" x2="{width - pad}" y1="22" y2="22" style="stroke:var(--border)"/>',
           f'<line x1="{mid}" x2="{mid}" y1="6" y2="38" style="stroke:var(--muted)" stroke-dasharray="3 3"/>',
           f'<text x="{pad}" y="44" font-size="11" style="fill:var(--muted)">{-span:+.3f}</text>',
           f'<text x="{width - pad}" y="44" font-size="11" text-anchor="end" style="fill:var(--muted)">{span:+.3f}</text>']
    for case, v in sorted(values, key=lambda kv: kv[1]):
        colour = "var(--good)" if v > 0 else "var(--bad)" if v < 0 else "var(--muted)"
        out.append(f'<circle class="case" cx="{x(v):.1f}" cy="22" r="5" style="fill:{colour}" fill-opacity="0.75">'
                   f"<title>{esc(case)}: {v:+.4f}</title></circle>")
    out.append("</svg>")
    return "".join(out)


@register(Comparison, HTML)
def compare_page(c: t.Any, verbose: bool = True) -> str:
    """The page of a comparison (its ``html`` renderer; ``verbose`` changes nothing)."""
    labels = labels_of(c)
    ok = c.exit_code == 0
    head = "".join(f"<th>{esc(h)}</th>" for h in [*ARM_HEADERS, *(f"class {lb}" for lb in labels)])
    rows = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in arm_row(a, labels)) + "</tr>" for a in c.arms)
    out = ["<h1>Results side by side: every arm against the baseline</h1>",
           f'<div class="verdict {"good" if ok else "bad"}"><b>{esc(headline(c))}</b></div>',
           '<p class="muted">Foreground Dice: per case the mean over the foreground classes that have a Dice; per '
           "class the mean over every validation case of the folds found (nnU-Net's nanmean); per fold its own "
           "foreground mean, then mean ± sd over the folds.</p>",
           f'<div class="wide"><table class="matrix"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
           "</div>", "<h2>Dice per class</h2>", _bars(c)]
    if c.paired:
        out.append(f"<h2>Against {esc(c.baseline)}, paired by case</h2>")
        for p in c.paired:
            if p.refusal:
                out.append(f'<section class="pair"><h3>{esc(p.arm)}</h3><p><span class="pill bad">refused</span> '
                           f"{esc(p.refusal)}</p></section>")
                continue
            out.append(f'<section class="pair"><h3>{esc(p.arm)}</h3><p>{len(p.diffs)} cases: mean difference '
                       f"{esc(signed(p.mean_diff))}, median {esc(signed(p.median_diff))}; better {p.better}, worse "
                       f"{p.worse}, equal {p.equal}; Wilcoxon signed-rank p = {esc(p_text(p))}"
                       + (f"; {len(p.left_out)} left out (no Dice)" if p.left_out else "")
                       + f"</p>{_strip(p)}</section>")
    if c.notes:
        out.append('<ul class="plain small">' + "".join(f"<li>{esc(n)}</li>" for n in c.notes) + "</ul>")
    return page("plancheck compare", "\n".join(out))
