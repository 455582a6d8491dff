"""The diff page (``plancheck diff --html``): two plans files compared, without building a network.

For each pair of configurations both architectures are drawn from the plans' ``arch_kwargs``,
blocks paired by name and coloured same, differs or only in one; then every difference by
category (architecture, inputs and outputs, preprocessing, training, identity) with what it
means for the weights.
"""

from __future__ import annotations

import json
import os
import typing as t

from plancheck.records.diff import PlansDiff
from plancheck.render.html.page import Json, depth_note, esc, legend, page
from plancheck.render.registry import HTML, register
from plancheck.render.vocabulary import BLOCK_STATUSES, BY_NAME, DIFF_LABELS, UNKNOWN, BlockStatus

if t.TYPE_CHECKING:
    from plancheck.records.layout import NetworkLayout

__all__ = ["diff_page"]


def _diff_statuses(a: NetworkLayout | None, b: NetworkLayout | None) -> dict[tuple[str, str], BlockStatus]:
    """Plans comparison, block by block (same name, as nnU-Net's keys pair them): same, differs, only in one."""
    out: dict[tuple[str, str], BlockStatus] = {}
    ba = {x.id: x for x in (a.blocks if a else ())}
    bb = {x.id: x for x in (b.blocks if b else ())}
    fields = ("features", "kernel", "repeats", "unit")  # what shapes the weights (a stride does not)
    for role, mine, other, only in (("a", ba, bb, "unused"), ("b", bb, ba, "missing")):
        for bid, blk in mine.items():
            o = other.get(bid)
            if o is None:
                out[(role, bid)] = BY_NAME[only]
            elif all(getattr(blk, f) == getattr(o, f) for f in fields):
                out[(role, bid)] = BY_NAME["loads"]
            else:
                out[(role, bid)] = BY_NAME["fails"]
    return out


@register(PlansDiff, HTML)
def diff_page(d: t.Any, verbose: bool = True) -> str:
    """The page of a plans diff (its ``html`` renderer; ``verbose`` changes nothing)."""
    from plancheck.network.layout import layout_of_architecture
    from plancheck.compare.plansdiff import display_path
    from plancheck.render.svg import Side, unet_pair_svg

    blocking = d.has_blocking
    out = ["<h1>Two plans files compared</h1>",
           f'<p class="muted">A: <code>{esc(d.a)}</code><br>B: <code>{esc(d.b)}</code></p>']
    if blocking:
        out.append('<div class="verdict bad"><b>✗ Differences that matter.</b> Some differ in the architecture '
                   "(weight shapes) or in the inputs and outputs: weights trained with A would not load into B's "
                   "network as they are.</div>")
    else:
        out.append('<div class="verdict good"><b>✓ Same architecture and inputs.</b> Weights trained with A have the '
                   "shapes B's network needs; other differences are listed below.</div>")
    archs = getattr(d, "architectures", ()) or ()
    for i, ((ca, cb), arch) in enumerate(zip(d.configurations, archs)):
        arch_a, arch_b = arch
        la = lb = None
        if isinstance(arch_a, dict):
            la = layout_of_architecture(str(arch_a.get("network_class_name", "")), arch_a.get("arch_kwargs") or {})
        if isinstance(arch_b, dict):
            lb = layout_of_architecture(str(arch_b.get("network_class_name", "")), arch_b.get("arch_kwargs") or {})
        if la is None and lb is None:
            continue
        statuses = _diff_statuses(la, lb)
        names = {s.name for s in statuses.values()}
        out.append(f"<h2>Architecture: A [{esc(ca)}] and B [{esc(cb)}]</h2>")
        out.append('<p class="small">Each network drawn as a U from the plans\' <code>arch_kwargs</code>: encoder '
                   "down the left, deepest stage at the bottom, decoder up the right (<b>ch</b> channels, <b>k</b> "
                   "kernel, <b>s</b> stride). Blocks are paired by name, as nnU-Net's state_dict keys pair them "
                   "(decoder stages count from the bottom). Values that differ are <b><u>bold and underlined</u></b>."
                   "</p>")
        out.append(legend(DIFF_LABELS, names=[s.name for s in BLOCK_STATUSES if s.name in names]))

        def title(lay: NetworkLayout | None, label: str, path: str, cfg: str) -> tuple[str, str]:
            name = os.path.basename(os.path.dirname(path)) or path
            sub = f"{os.path.basename(path)} [{cfg}]" + ("" if lay is None else f" · {lay.network_class}, "
                                                         f"{lay.levels} levels")
            return f"{label}: {name}", sub

        svg = unet_pair_svg(Side("a", *title(la, "A", d.a, ca), la), Side("b", *title(lb, "B", d.b, cb), lb),
                            lambda role, blk: statuses.get((role, blk.id), UNKNOWN), prefix=f"c{i}-")
        out.append(f'<div class="figure" data-scope="c{i}">{svg}</div>')
        out.append(depth_note(la, lb, "A", "B"))  # "A has 6 levels, B 4"
    groups = d.by_category()
    out.append("<h2>Differences by category</h2>")
    if not groups:
        out.append("<p>No differences.</p>")
    explain = {
        "architecture": "changes weight shapes or state_dict keys: the weights do not load",
        "io": "input channels, labels or regions: the first layer or the head changes",
        "preprocessing": "the weights load, but the network sees differently prepared data",
        "training": "patch size, batch size and other settings that change no weight",
        "identity": "names and statistics that change nothing",
    }
    for cat, changes in groups.items():
        out.append(f"<h3>{esc(cat.value)} <span class=\"muted small\">({len(changes)}): "
                   f"{esc(explain.get(cat.value, ''))}</span></h3>")
        out.append("<table><thead><tr><th>field</th><th>A</th><th>B</th><th>note</th></tr></thead><tbody>")
        for c in changes:
            out.append(f"<tr><td><code>{esc(display_path(c))}</code></td><td class=\"mono\">"
                       f"{esc(_short(c.source))}</td><td class=\"mono\">{esc(_short(c.target))}</td>"
                       f"<td class=\"small\">{esc(c.note)}</td></tr>")
        out.append("</tbody></table>")
    if d.notes:
        out.append("<h2>Notes</h2>")
        out.append('<ul class="plain small">' + "".join(f"<li>{esc(n)}</li>" for n in d.notes) + "</ul>")
    return page("plancheck diff", "\n".join(out))


def _short(value: Json, width: int = 90) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 1] + "…"
