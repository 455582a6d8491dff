"""The matrix page (``plancheck matrix --html``): one pretrained model against many fine-tuning targets.

One sortable row per target and configuration (the verdict, the shares of the encoder, the
decoder and the whole network that would load, coloured from green to red, the main root cause,
whether ``--fix`` makes it load), then each target's check section
(:func:`plancheck.render.html.check.check_section`) below the table.
"""

from __future__ import annotations

import os
import typing as t

from plancheck.records.matrix import Matrix
from plancheck.render.html.check import check_section
from plancheck.render.html.page import esc, page, percent_floor, share_class
from plancheck.render.registry import HTML, register

__all__ = ["matrix_page"]


def _share_cell(loadable: int | None, total: int | None) -> str:
    if loadable is None or total is None:
        return '<td class="num" data-v="-1">—</td>'
    share = loadable / total if total else 1.0
    return f'<td class="num {share_class(share)}" data-v="{share:.6f}">{percent_floor(share)}</td>'


@register(Matrix, HTML)
def matrix_page(m: t.Any, verbose: bool = True) -> str:
    """The page of a matrix (its ``html`` renderer; ``verbose`` changes nothing)."""
    ok = sum(r.ok for r in m.rows)
    verdict_text = (f"{ok} of {len(m.rows)} targets would load the source's weights"
                    f"{' after --fix' if m.fixed else ' as they are'}.")
    out = ["<h1>One pretrained model, many fine-tuning targets</h1>",
           f'<p class="muted">Source: <code>{esc(m.source)}</code>. One row per target and configuration: would '
           "nnU-Net's <code>load_pretrained_weights</code> load the source's weights, what share of the encoder, "
           "the decoder and the whole network would load, the main reason when not, and whether "
           "<code>plancheck check --fix</code> can make it load by rewriting the target's plans.</p>",
           f'<div class="verdict {"good" if ok == len(m.rows) else "bad"}"><b>{esc(verdict_text)}</b></div>',
           '<p class="hint noprint">Select a column header to sort; select a target to see its two networks and '
           "root causes.</p>",
           '<div class="wide"><table class="matrix"><thead><tr><th data-sort="text">verdict</th>'
           '<th data-sort="text">target [configuration]</th>'
           '<th data-sort="num" class="num" title="share of the encoder\'s parameters that would load">encoder</th>'
           '<th data-sort="num" class="num" title="share of the decoder\'s parameters that would load">decoder</th>'
           '<th data-sort="num" class="num" title="share of all parameters (head excluded) that would load">total'
           '</th><th data-sort="text">main root cause</th><th data-sort="text">fixable by --fix</th></tr>'
           "</thead><tbody>"]
    details = []
    for i, r in enumerate(m.rows):
        anchor = f"pair-{i}"
        if r.error:
            verdict, cls = "error", "other"
        elif r.compatible:
            verdict, cls = "compatible", "good"
        elif r.fixed_compatible:
            verdict, cls = "fixed", "good"
        else:
            verdict, cls = "incompatible", "bad"
        report = getattr(r, "report", None)
        parts = {} if report is None else {p.name: p for p in report.summary.parts}
        enc, dec = parts.get("encoder"), parts.get("decoder")
        fix = "—" if r.fixable is None else ("yes" if r.fixable else "no")
        name = esc(_short_path(r.target))
        target = (f'<a href="#{anchor}" title="{esc(r.target)}">{name}</a>' if report is not None
                  else f'<span title="{esc(r.target)}">{name}</span>')
        total = report.summary if report is not None else None
        note = r.error or r.fix_note or ""
        out.append(
            f'<tr><td data-v="{verdict}"><span class="pill {cls}">{verdict}</span></td>'
            f'<td data-v="{esc(r.target)}"><code>{target}</code> <span class="muted small">'
            f"[{esc(r.configuration)}]</span></td>"
            + _share_cell(enc and enc.parameters_loadable, enc and enc.parameters_total)
            + _share_cell(dec and dec.parameters_loadable, dec and dec.parameters_total)
            + (_share_cell(total.parameters_loadable, total.parameters_total) if total is not None else
               _share_cell(None, None))
            + f"<td>{esc(r.main_cause or '—')}"
            + (f'<div class="muted small">{esc(note)}</div>' if note else "")
            + f"</td><td>{fix}</td></tr>"
        )
        if report is not None:
            details.append(f'<section class="pair" id="{anchor}"><h2>{i + 1}. <code>{esc(r.target)}</code> '
                           f"[{esc(r.configuration)}]</h2>{check_section(report, prefix=f'p{i}-', heading='h3')}"
                           '<p class="small noprint"><a href="#top">back to the table</a></p></section>')
    out.append("</tbody></table></div>")
    out.append('<p class="small muted">Shares are of the parameters that would load, the segmentation head '
               "excluded, rounded down. Cell colours: green at 100%, then yellow to red as less of the part would "
               "load.</p>")
    if m.notes:
        out.append('<ul class="plain small">' + "".join(f"<li>{esc(n)}</li>" for n in m.notes) + "</ul>")
    out.extend(details)
    return page("plancheck matrix", '<a id="top"></a>' + "\n".join(out))


def _short_path(path: str) -> str:
    """``…/Dataset902_CTAnisotropic/nnUNetPlans.json`` for a table cell (the full path is in its title)."""
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else path


