"""The transfer page (``plancheck transfer --html``): pretrained weights carried into the target's own network.

:func:`transfer_section` is a :class:`~plancheck.records.transfer.TransferResult` as HTML: the
verdict (the share carried over, where the checkpoint went), both sides, the shares per part, the
nnU-Net command that fine-tunes from it, both networks coloured by what the transfer did to each
block's tensors (target) or whether they were used (source), and every tensor with its action.
"""

from __future__ import annotations

import typing as t

from plancheck.records.transfer import TransferResult
from plancheck.render.html.page import (
    block_tensors,
    esc,
    legend,
    page,
    percent_floor,
    shape_text,
    share_bar,
    side_card,
    side_titles,
    tensors_outside_blocks,
)
from plancheck.render.registry import HTML, register
from plancheck.render.vocabulary import (
    TRANSFER_LABELS,
    TRANSFER_STATUSES,
    UNKNOWN,
    BlockStatus,
    rows_by_key,
    transfer_block_status,
)

if t.TYPE_CHECKING:
    from plancheck.records.layout import Block, NetworkLayout

__all__ = ["transfer_page", "transfer_section"]

_ACTION_STATUS = {"copied": "copied", "adapted": "adapted", "initialised": "initialised", "head": "head"}


class _TransferView:
    """A transfer's blocks: the target's by what happened to their tensors, the source's by whether they were used.

    Target blocks join the plan's rows by their keys; source blocks by the source key each
    carried row names (its aliases taken from the check's rows). Both sides' blocks come
    from the layout recorded at check time (``result.check.layout``).
    """

    def __init__(self, result: t.Any, prefix: str) -> None:
        self.result = result
        self.prefix = prefix
        plan = result.plan
        layout = result.check.layout
        self.layouts: dict[str, NetworkLayout | None] = {
            "source": None if layout is None else layout.source,
            "target": None if layout is None else layout.target,
        }
        self.index = {id(r): i for i, r in enumerate(plan.tensors)}
        self.target_rows = {k: r for r in plan.tensors for k in r.keys}
        self.check_rows = rows_by_key(result.check)
        self.fed: dict[str, list[t.Any]] = {}  # source key (aliases included) -> the target rows it went into
        for r in plan.tensors:
            if r.source_key is None or not r.carried:
                continue
            row = self.check_rows.get(r.source_key)
            for k in (row.keys if row is not None and r.source_key in row.keys else (r.source_key,)):
                self.fed.setdefault(k, []).append(r)
        self.actions: dict[str, dict[str, str]] = {
            "target": {k: str(r.action) for k, r in self.target_rows.items()},
            "source": {k: "adapted" if any(str(r.action) == "adapted" for r in rs) else "copied"
                       for k, rs in self.fed.items()},
        }
        self.status: dict[str, BlockStatus] = {}
        for role, lay in self.layouts.items():
            for b in (lay.blocks if lay is not None else ()):
                self.status[self.gid(role, b)] = transfer_block_status(b, self.actions[role], role)

    def gid(self, role: str, block: Block) -> str:
        return f"{self.prefix}{role}-{block.id}"

    def status_of(self, role: str, block: Block) -> BlockStatus:
        return self.status.get(self.gid(role, block), UNKNOWN)

    def target_block_rows(self, block: Block) -> list[t.Any]:
        out: list[t.Any] = []
        for k in block.keys:
            r = self.target_rows.get(k)
            if r is not None and all(r is not s for s in out):
                out.append(r)
        return out

    def unplaced(self) -> list[t.Any]:
        lay = self.layouts["target"]
        placed = {id(r) for b in (lay.blocks if lay is not None else ()) for r in self.target_block_rows(b)}
        return [r for r in self.result.plan.tensors if id(r) not in placed]


def _action_cell(row: t.Any) -> str:
    action = str(row.action)
    detail = ""
    if row.steps:
        detail = " ".join(s.describe() for s in row.steps)
    elif row.reason:
        detail = row.reason
    return (f'<td class="tx-{_ACTION_STATUS.get(action, "unknown")}" data-v="{esc(action)}"><b>{esc(action)}</b>'
            + (f'<div class="small mono">{esc(detail)}</div>' if detail else "") + "</td>")


def _plan_row(row: t.Any, index: int) -> str:
    alias = (f' <span class="muted small">(+{len(row.keys) - 1} alias{"es" if len(row.keys) != 2 else ""})</span>'
             if len(row.keys) > 1 else "")
    if row.source_key is None:
        source = '<span class="muted">—</span>'
    elif row.source_key == row.key:
        source = '<span class="muted small">same key</span>'
    else:
        source = f"<code>{esc(row.source_key)}</code>"
    return (f'<tr data-t="{index}">{_action_cell(row)}<td><code>{esc(row.key)}</code>{alias}</td><td>{source}</td>'
            f'<td class="mono">{shape_text(row.source_shape)}</td>'
            f'<td class="mono">{shape_text(row.target_shape)}</td></tr>')


_PLAN_HEAD = ("<thead><tr><th>action</th><th>target key</th><th>source key</th><th>source shape</th>"
              "<th>target shape</th></tr></thead>")
_SOURCE_HEAD = ("<thead><tr><th>carried over as</th><th>source key</th><th>into target key</th><th>source shape</th>"
                "<th>target shape</th></tr></thead>")


def _source_rows(view: _TransferView, block: Block) -> str:
    out = []
    for k in block.keys:
        fed = view.fed.get(k, [])
        check_row = view.check_rows.get(k)
        shape = shape_text(None if check_row is None else check_row.source_shape)
        if not fed:
            out.append(f'<tr><td class="tx-unused"><b>not carried over</b></td><td><code>{esc(k)}</code></td>'
                       f'<td class="muted">—</td><td class="mono">{shape}</td><td class="mono">—</td></tr>')
        for r in fed:
            out.append(f'<tr>{_action_cell(r)}<td><code>{esc(k)}</code></td><td><code>{esc(r.key)}</code></td>'
                       f'<td class="mono">{shape_text(r.source_shape)}</td>'
                       f'<td class="mono">{shape_text(r.target_shape)}</td></tr>')
    return "".join(out)


def _transfer_shares(plan: t.Any) -> str:
    body = []
    rows = [("all (head excluded)", plan.parameters_carried, plan.parameters_total, None)]
    rows += [(str(p.part), p.parameters_carried, p.parameters_total, p) for p in plan.parts]
    for name, carried, total, p in rows:
        if p is None:
            counts = plan.counts()
            copied, adapted, init = counts.get("copied", 0), counts.get("adapted", 0), counts.get("initialised", 0)
        else:
            copied, adapted = p.tensors_copied, p.tensors_adapted
            init = p.tensors_total - copied - adapted
        body.append(
            f"<tr><td>{esc(name)}</td><td>{share_bar(carried, total, empty=0.0)}</td>"
            f'<td class="num">{carried:,} / {total:,}</td><td class="num">{copied}</td><td class="num">{adapted}</td>'
            f'<td class="num">{init}</td></tr>'
        )
    return ("<table><thead><tr><th>part</th><th>share from the source</th><th class=\"num\">parameters</th>"
            "<th class=\"num\">tensors copied</th><th class=\"num\">adapted</th><th class=\"num\">initialised</th>"
            "</tr></thead><tbody>" + "".join(body) + "</tbody></table>"
            '<p class="small muted">Parts follow the network\'s own declarations: <b>stem</b> is what it declares '
            "as its stem (<code>key_to_stem</code>; for a PlainConvUNet, encoder stage 0), "
            "<b>encoder</b> the rest of its encoder (<code>key_to_encoder</code>), <b>decoder</b> everything else "
            "but the heads. The head's tensors are never carried over: nnU-Net initialises them and trains them "
            "anew.</p>")


def _transfer_verdict(result: t.Any) -> str:
    plan = result.plan
    share = percent_floor(plan.share)
    if plan.refused or plan.parameters_carried == 0:
        why = plan.refused or "no source tensor fits the target's network under this strategy"
        return (f'<div class="verdict bad"><b>✗ Nothing carried over.</b> {esc(why)}. No checkpoint was written '
                "(exit 1).</div>")
    if result.dry_run:
        done = "Dry run: nothing was written."
    elif result.written and result.verified:
        done = (f"Written to <code>{esc(result.out)}</code>, read back and checked against the target's network "
                "(every key and shape).")
    else:
        done = "Not written."
    return (f'<div class="verdict good"><b>✓ {share} of the parameters come from the source</b> '
            f"({plan.parameters_carried:,} of {plan.parameters_total:,}, the head not counted; strategy "
            f"<code>{esc(plan.strategy)}</code>). {done}</div>")


def transfer_section(result: t.Any, *, prefix: str = "", heading: str = "h2") -> str:
    """The body of a transfer's page: what was carried over, both networks coloured by it, every tensor."""
    from plancheck.render.svg import Side, unet_pair_svg

    view = _TransferView(result, prefix)
    report = result.check
    h = heading
    out = [f'<div data-scope="{esc(prefix or "transfer")}">', _transfer_verdict(result)]
    compat = ("would load these weights as they are" if report.compatible else
              "would refuse these weights as they are (the checkpoint written here is what makes them load)")
    out.append(f'<p class="small muted">Without the transfer, nnU-Net\'s <code>load_pretrained_weights</code> '
               f"{compat}.</p>")
    out.append(f'<div class="sides">{side_card("source", report.source)}{side_card("target", report.target)}</div>')
    out.append(f"<{h}>What was carried over</{h}>")
    out.append(_transfer_shares(result.plan))
    out.append(f"<{h}>Next: fine-tune with nnU-Net</{h}>")
    out.append(f"<pre class=\"card mono\" style=\"white-space:pre-wrap\">{esc(result.command)}</pre>")

    out.append(f"<{h}>The two networks, level by level</{h}>")
    out.append(
        '<p class="small">Each network is drawn as a U: the encoder goes down the left, the deepest stage sits at '
        "the bottom, the decoder comes back up the right through transposed convolutions (<b>up</b>), and the heads "
        "on the right produce the segmentation (<b>ch</b> channels, <b>k</b> kernel, <b>s</b> stride, <b>cl</b> "
        "classes; values that differ between the two networks are <b><u>bold and underlined</u></b>). The target's "
        "blocks are coloured by what the transfer did to their tensors; the source's by whether their tensors were "
        "carried over:</p>"
    )
    present = {s.name for s in view.status.values()}
    out.append(legend(TRANSFER_LABELS, names=present or None, statuses=TRANSFER_STATUSES))
    lays = view.layouts
    left = Side("source", *side_titles(report, lays, "source"), lays["source"], report.source.input_channels)
    right = Side("target", *side_titles(report, lays, "target"), lays["target"], report.target.input_channels)
    if left.layout is None and right.layout is None:
        out.append('<p class="muted">Neither network has an nnU-Net encoder/decoder to draw; every tensor is listed '
                   "below.</p>")
    else:
        out.append(f'<div class="figure">{unet_pair_svg(left, right, view.status_of, prefix=prefix)}</div>')
        out.append('<p class="hint noprint">Select a block to list its tensors: for a target block, where each '
                   "tensor came from; for a source block, where each of its tensors went.</p>")

    if result.warnings:
        out.append(f"<{h}>Warnings</{h}>")
        out.append('<ul class="plain">' + "".join(f"<li>{esc(w)}</li>" for w in result.warnings) + "</ul>")
    if result.notes:
        out.append(f"<{h}>Notes</{h}>")
        out.append('<ul class="plain small">' + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")

    out.append(f"<{h}>Tensors by block</{h}>")
    out.append('<p class="small muted">Every target tensor with its action (<b>copied</b> unchanged; <b>adapted</b> '
               "through the rules shown; <b>initialised</b> by nnU-Net, with the reason; <b>head</b>), the source "
               "tensor it came from when its key differs, and both shapes. Blocks not fully copied are open.</p>")
    for role in ("target", "source"):
        lay = view.layouts[role]
        for b in (lay.blocks if lay is not None else ()):
            gid = view.gid(role, b)
            st = view.status[gid]
            if role == "target":
                rows = view.target_block_rows(b)
                if not rows:
                    continue
                table = f"<table>{_PLAN_HEAD}<tbody>" + "".join(_plan_row(r, view.index[id(r)]) for r in rows)
                what = f"{sum(1 for r in rows if r.carried)} of {len(rows)} tensors carried over"
            else:
                if not b.keys:
                    continue
                table = f"<table>{_SOURCE_HEAD}<tbody>" + _source_rows(view, b)
                what = f"{sum(1 for k in b.keys if k in view.fed)} of {len(b.keys)} tensors carried over"
            out.append(block_tensors(gid, role, b, st, TRANSFER_LABELS.get(st.name, st.label), what,
                                     f"{table}</tbody></table>",
                                     opened=role == "target" and st.name in ("adapted", "partly", "initialised")))
    rest = view.unplaced()
    if rest:
        out.append(tensors_outside_blocks(_PLAN_HEAD, [_plan_row(r, view.index[id(r)]) for r in rest],
                                          drawn=bool(view.status)))
    out.append("</div>")
    return "\n".join(out)


@register(TransferResult, HTML)
def transfer_page(result: t.Any, verbose: bool = True) -> str:
    """The page of a transfer (its ``html`` renderer; ``verbose`` changes nothing)."""
    body = ("<h1>Pretrained weights carried over into the target's own network</h1>"
            '<p class="muted"><code>plancheck transfer</code> keeps the target\'s plans and writes a checkpoint for '
            "the network nnU-Net builds from them: every source tensor that fits is copied or adapted, the rest "
            "keeps nnU-Net's initialisation.</p>\n" + transfer_section(result))
    return page("plancheck transfer", body)
