"""The check page (``plancheck check --html``): will the source's weights load into the target's network?

:func:`check_section` is a :class:`~plancheck.records.report.Report` as HTML: the verdict, both
sides, the share that would load per part, both networks drawn as U-Nets and coloured by what
nnU-Net's loader does with each block, the root causes (selecting one highlights its blocks and
tensors), warnings, notes and every tensor by block. :func:`check_page` puts it on a page; the
matrix, verify and pytest plugin pages hold sections of their own (``prefix`` keeps ids apart).
"""

from __future__ import annotations

import json
import typing as t

from plancheck.records.report import Report, Status, TensorRow
from plancheck.render.html.page import (
    Json,
    block_tensors,
    depth_note,
    esc,
    legend,
    page,
    shape_text,
    share_bar,
    side_card,
    side_titles,
    tensors_outside_blocks,
)
from plancheck.render.registry import HTML, register
from plancheck.render.report import short_parameter
from plancheck.render.vocabulary import UNKNOWN, BlockStatus, block_status, rows_by_key

if t.TYPE_CHECKING:
    from plancheck.records.layout import Block, NetworkLayout

__all__ = ["check_page", "check_section"]


def _value(value: Json) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def _verdict(report: Report) -> str:
    ff = report.first_failure
    if report.compatible:
        return ('<div class="verdict good"><b>✓ Compatible.</b> nnU-Net\'s <code>load_pretrained_weights</code> '
                "would load the source's weights into the target's network (the segmentation head is always "
                "trained anew).</div>")
    assert ff is not None
    if ff.reason == "container":
        why = ("it would fail before comparing any key: the file has no <code>network_weights</code> "
               "(see the root causes)")
    elif ff.reason == "missing":
        why = f"it would stop at <code>{esc(ff.key)}</code>: this tensor is missing in the source"
    else:
        why = (f"it would stop at <code>{esc(ff.key)}</code>: the source has shape "
               f"<code>{shape_text(ff.source_shape)}</code>, the target needs "
               f"<code>{shape_text(ff.target_shape)}</code>")
    return (f'<div class="verdict bad"><b>✗ Incompatible.</b> nnU-Net\'s <code>load_pretrained_weights</code> '
            f"would refuse these weights: {why}.</div>")


def _shares(report: Report) -> str:
    s = report.summary
    rows = [("all (head excluded)", s.tensors_loadable, s.tensors_total, s.parameters_loadable, s.parameters_total)]
    rows += [(p.name, p.tensors_loadable, p.tensors_total, p.parameters_loadable, p.parameters_total)
             for p in s.parts]
    body = []
    for name, tl, tt, pl, pt in rows:
        body.append(
            f"<tr><td>{esc(name)}</td><td>{share_bar(pl, pt)}</td>"
            f"<td class=\"num\">{pl:,} / {pt:,}</td><td class=\"num\">{tl} / {tt}</td></tr>"
        )
    heads = s.counts.get(Status.HEAD.value, 0)
    note = (f'<p class="small muted">The segmentation head ({heads} tensors) is never loaded: nnU-Net skips it and '
            "trains it anew.</p>") if heads else ""
    return ("<table><thead><tr><th>part</th><th>share that would load</th><th class=\"num\">parameters</th>"
            "<th class=\"num\">tensors</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note)


def _row_cause(row: TensorRow) -> str:
    names = [short_parameter(c.parameter) for c in row.causes]
    if not names:
        return ""
    return ", ".join(esc(n) for n in names[:2]) + (f" (+{len(names) - 2} more)" if len(names) > 2 else "")


def _row_html(row: TensorRow, index: int) -> str:
    st = row.status.value
    alias = f' <span class="muted small">(+{row.aliases} alias{"es" if row.aliases != 1 else ""})</span>' \
        if row.aliases else ""
    return (f'<tr data-t="{index}"><td class="tx-{_row_status_class(row)}"><b>{esc(st)}</b></td>'
            f"<td><code>{esc(row.key)}</code>{alias}</td><td class=\"mono\">{shape_text(row.source_shape)}</td>"
            f"<td class=\"mono\">{shape_text(row.target_shape)}</td><td class=\"small\">{_row_cause(row)}</td></tr>")


def _row_status_class(row: TensorRow) -> str:
    return {Status.OK: "loads", Status.MISMATCH: "fails", Status.MISSING: "missing", Status.UNUSED: "unused",
            Status.HEAD: "head"}[row.status]


_TENSOR_HEAD = ("<thead><tr><th>status</th><th>key</th><th>source shape</th><th>target shape</th><th>cause</th>"
                "</tr></thead>")


class _CheckView:
    """What one check's section needs: the block statuses, the rows of each block, the causes' blocks."""

    def __init__(self, report: Report, prefix: str) -> None:
        self.report = report
        self.prefix = prefix
        self.rows = rows_by_key(report)
        self.index = {id(r): i for i, r in enumerate(report.tensors)}
        layout = report.layout
        self.layouts: dict[str, NetworkLayout | None] = {
            "source": None if layout is None else layout.source,
            "target": None if layout is None else layout.target,
        }
        self.status: dict[str, BlockStatus] = {}
        self.block_rows: dict[str, list[TensorRow]] = {}
        for role, lay in self.layouts.items():
            if lay is None:
                continue
            for b in lay.blocks:
                gid = self.gid(role, b)
                self.status[gid] = block_status(b, self.rows, role)
                seen: list[TensorRow] = []
                for k in b.keys:
                    r = self.rows.get(k)
                    if r is not None and all(r is not s for s in seen):
                        seen.append(r)
                self.block_rows[gid] = seen

    def gid(self, role: str, block: Block) -> str:
        return f"{self.prefix}{role}-{block.id}"

    def status_of(self, role: str, block: Block) -> BlockStatus:
        return self.status.get(self.gid(role, block), UNKNOWN)

    def blocks_of_rows(self, rows: t.Sequence[TensorRow]) -> list[str]:
        wanted = {id(r) for r in rows}
        return [gid for gid, rs in self.block_rows.items() if any(id(r) in wanted for r in rs)]

    def unplaced(self) -> list[TensorRow]:
        placed = {id(r) for rs in self.block_rows.values() for r in rs}
        return [r for r in self.report.tensors if id(r) not in placed]


def check_section(report: Report, *, prefix: str = "", heading: str = "h2") -> str:
    """The body of a check's page; ``prefix`` keeps ids unique when one page holds several checks."""
    from plancheck.render.svg import Side, unet_pair_svg

    view = _CheckView(report, prefix)
    h = heading
    out = [f'<div data-scope="{esc(prefix or "check")}">', _verdict(report)]
    out.append(f'<div class="sides">{side_card("source", report.source)}{side_card("target", report.target)}</div>')

    out.append(f"<{h}>What would load</{h}>")
    out.append(_shares(report))

    out.append(f"<{h}>The two networks, level by level</{h}>")
    out.append(
        '<p class="small">Each network is drawn as a U: the encoder goes down the left (each stage halves the '
        "resolution by its stride <b>s</b>), the deepest stage sits at the bottom, the decoder comes back up the "
        "right through transposed convolutions (<b>up</b>), the dashed arrows are the skip connections, and the "
        "heads on the right produce the segmentation. <b>ch</b> = output channels, <b>k</b> = kernel size, "
        "<b>cl</b> = output classes. "
        "Values that differ between the two networks are <b><u>bold and underlined</u></b>. Colours say what "
        "nnU-Net's loader does with each block's tensors (it matches them by name: enc&nbsp;3 with enc&nbsp;3):</p>"
    )
    roles_present = {s.name for s in view.status.values()}
    out.append(legend(names=roles_present or None))
    lays = view.layouts
    left = Side("source", *side_titles(report, lays, "source"), lays["source"], report.source.input_channels)
    right = Side("target", *side_titles(report, lays, "target"), lays["target"], report.target.input_channels)
    if left.layout is None and right.layout is None:
        out.append('<p class="muted">Neither network has an nnU-Net encoder/decoder to draw; every tensor is listed '
                   "below.</p>")
    else:
        out.append(f'<div class="figure">{unet_pair_svg(left, right, view.status_of, prefix=prefix)}</div>')
        out.append(depth_note(left.layout, right.layout, "the source", "the target"))
        out.append('<p class="hint noprint">Select a block to list its tensors'
                   + ("; select a root cause below to highlight the blocks and tensors it explains" if
                      report.root_causes else "") + ".</p>")

    if report.root_causes:
        out.append(f"<{h}>Root causes</{h}>")
        out.append('<p class="small muted">The plans or dataset.json fields behind the failures: changing the '
                   "target's value to the source's would make these tensors load.</p>")
        out.append("<table><thead><tr><th>field</th><th>source</th><th>target</th><th class=\"num\">tensors</th>"
                   "<th class=\"num\">parameters</th><th>note</th></tr></thead><tbody>")
        for n, rc in enumerate(report.root_causes):
            explained = [r for r in report.tensors if rc.cause in r.causes]
            blocks = view.blocks_of_rows(explained)
            rows_attr = " ".join(str(view.index[id(r)]) for r in explained)
            out.append(
                f'<tr class="cause" id="{esc(prefix)}cause-{n}" tabindex="0" data-blocks="{esc(" ".join(blocks))}" '
                f'data-rows="{rows_attr}"><td><code>{esc(short_parameter(rc.cause.parameter))}</code>'
                f'<div class="muted small">{esc(rc.cause.parameter)}</div></td>'
                f"<td class=\"mono\">{esc(_value(rc.cause.source))}</td><td class=\"mono\">"
                f"{esc(_value(rc.cause.target))}</td><td class=\"num\">{rc.tensors}</td>"
                f"<td class=\"num\">{rc.parameters:,}</td><td class=\"small\">{esc(rc.note)}</td></tr>"
            )
        out.append("</tbody></table>")

    if report.warnings:
        out.append(f"<{h}>Warnings</{h}>")
        out.append('<ul class="plain">' + "".join(f"<li>{esc(w)}</li>" for w in report.warnings) + "</ul>")
    notes = [*report.source.notes, *report.target.notes, *report.notes]
    if notes:
        out.append(f"<{h}>Notes</{h}>")
        out.append('<ul class="plain small">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")

    out.append(f"<{h}>Tensors by block</{h}>")
    out.append('<p class="small muted">Every tensor of each block, with its shape on both sides. Blocks that do '
               "not load fully are open.</p>")
    for role in ("target", "source"):
        lay = view.layouts[role]
        if lay is None:
            continue
        for b in lay.blocks:
            gid = view.gid(role, b)
            rows = view.block_rows.get(gid, [])
            if not rows:
                continue
            st = view.status[gid]
            bad = sum(1 for r in rows if r.status not in (Status.OK, Status.HEAD))
            what = f"{bad} of {len(rows)} tensors do not load" if bad else f"{len(rows)} tensors"
            body = "".join(_row_html(r, view.index[id(r)]) for r in rows)
            table = f"<table>{_TENSOR_HEAD}<tbody>{body}</tbody></table>"
            out.append(block_tensors(gid, role, b, st, st.label, what, table, opened=st.name in ("fails", "missing")))
    rest = view.unplaced()
    if rest:
        out.append(tensors_outside_blocks(_TENSOR_HEAD, [_row_html(r, view.index[id(r)]) for r in rest],
                                          drawn=bool(view.status)))
    out.append("</div>")
    return "\n".join(out)


@register(Report, HTML)
def check_page(report: Report, verbose: bool = True) -> str:
    """The page of a check (its ``html`` renderer; a page always shows everything, whatever ``verbose``)."""
    title = "plancheck: " + ("compatible" if report.compatible else "incompatible")
    body = ('<h1>Will the source\'s pretrained weights load into the target\'s network?</h1>'
            '<p class="muted">A check by plancheck of what nnU-Net v2\'s <code>load_pretrained_weights</code> does '
            "with these weights, shape by shape, before any GPU time is spent.</p>\n" + check_section(report))
    return page(title, body)

