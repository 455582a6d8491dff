"""The plan-pretraining page (``plancheck plan-pretraining --html``): the groups one pretraining serves each, and
every target's routes side by side.

One card per group (its network, the targets it serves, the targets merged into it and what
unifying them costs, the pretraining plans and their commands), then one sortable row per target:
its group, the pretraining dataset's own network as it is, ``transfer``'s share, and ``--fix``
towards that network.
"""

from __future__ import annotations

import typing as t

from plancheck.records.pretraining import PretrainingPlan
from plancheck.render.html.page import esc, page, percent_floor, share_class
from plancheck.render.pretraining import headline, pretraining_line, short
from plancheck.render.registry import HTML, register

__all__ = ["pretraining_page"]


def _share(share: float | None, prefix: str = "") -> str:
    if share is None:
        return '<td class="num" data-v="-1">—</td>'
    return f'<td class="num {share_class(share)}" data-v="{share:.6f}">{esc(prefix)}{percent_floor(share)}</td>'


@register(PretrainingPlan, HTML)
def pretraining_page(plan: t.Any, verbose: bool = True) -> str:
    """The page of a plan-pretraining result (its ``html`` renderer; ``verbose`` changes nothing)."""
    ok = plan.exit_code == 0
    out = ["<h1>Plan the pretraining: one pretrained model for as many fine-tuning datasets as possible</h1>",
           f'<p class="muted">Pretraining dataset: <code>{esc(plan.source)}</code>. Targets whose networks nnU-Net '
           "builds identically (every tensor but the segmentation heads) share one pretraining; its plans are the "
           "pretraining dataset's, given that network as <code>plancheck check --fix</code> does, and checked to "
           f"load into every target they serve. Preprocessing: {esc(plan.preprocessing)}'s.</p>",
           f'<div class="verdict {"good" if ok else "bad"}"><b>{esc(headline(plan))}</b></div>']
    for g in plan.groups:
        cls = "good" if g.refusal is None else "bad"
        out.append(f'<section class="pair" id="group-{esc(g.configuration)}-{g.number}"><h2>Group {g.number} '
                   f'<span class="muted small">[{esc(g.configuration)}]</span> <span class="pill {cls}">'
                   f'{len(g.served)} target{"s" if len(g.served) != 1 else ""}</span></h2>'
                   f"<p>{esc(g.architecture.describe())}</p>")
        out.append("<p>Serves: " + ", ".join(f'<code title="{esc(x)}">{esc(short(x))}</code>' for x in g.targets)
                   + "</p>")
        if g.merged:
            out.append('<p>Merged (unified to this network as <code>--fix</code> does):</p><ul class="plain">'
                       + "".join(f'<li><code title="{esc(m.target)}">{esc(short(m.target))}</code>: '
                                 f"{esc(m.unified.describe())}</li>" for m in g.merged) + "</ul>")
        out.append(f"<p>Pretraining plans: {esc(pretraining_line(g, plan.dry_run))}</p>")
        if g.commands:
            out.append('<pre style="white-space:pre-wrap;overflow-wrap:anywhere">' + esc("\n".join(g.commands))
                       + "</pre>")
        out.append("</section>")
    out.append('<h2>Targets</h2><p class="hint noprint">Select a column header to sort.</p>'
               '<div class="wide"><table class="matrix"><thead><tr><th data-sort="text">target [configuration]</th>'
               '<th data-sort="text">targeted pretraining</th>'
               '<th data-sort="num" class="num" title="share of the parameters (heads excluded) of the same key and '
               "shape in the pretraining dataset's own network\">source's network as is</th>"
               '<th data-sort="num" class="num" title="share plancheck transfer --strategy adapt carries into the '
               "target's own plans\">transfer (adapt)</th>"
               "<th data-sort=\"text\">unified to the source's network (--fix)</th></tr></thead><tbody>")
    for r in plan.rows:
        name = f'<code title="{esc(r.target)}">{esc(short(r.target))}</code> <span class="muted small">' \
               f"[{esc(r.configuration)}]</span>"
        if r.not_applicable or r.error:
            out.append(f'<tr><td data-v="{esc(r.target)}">{name}</td><td colspan="4">'
                       f"{esc(r.not_applicable or r.error)}</td></tr>")
            continue
        group = "—" if r.group is None else (f'<a href="#group-{esc(r.configuration)}-{r.group}">group {r.group}</a>'
                                              + (" (merged)" if r.merged else "")
                                              + ("" if r.targeted_share is not None else ": none"))
        out.append(f'<tr><td data-v="{esc(r.target)}">{name}</td><td data-v="{r.group or 0}">{group}</td>'
                   + (_share(r.as_is_share, "loads, ") if r.as_is_loads else
                      f'<td class="num" data-v="{r.as_is_share or 0:.6f}" title="nnU-Net\'s loader stops: some '
                      f'tensor differs">no ({percent_floor(r.as_is_share or 0)} same shape)</td>')
                   + _share(r.transfer_share)
                   + f"<td>{esc('—' if r.unified is None else r.unified.describe())}</td></tr>")
    out.append("</tbody></table></div>")
    out.append('<p class="small muted">Shares are of the parameters, the segmentation heads excluded, rounded down. '
               "Memory: nnU-Net's planner estimate of the unified network at its new patch size against the "
               "target's own network.</p>")
    if plan.notes:
        out.append('<ul class="plain small">' + "".join(f"<li>{esc(n)}</li>" for n in plan.notes) + "</ul>")
    if plan.dry_run:
        out.append('<p class="muted">(dry run: nothing written)</p>')
    return page("plancheck plan-pretraining", "\n".join(out))
