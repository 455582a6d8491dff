"""A small Mermaid diagram of the two U-Nets for ``--format markdown`` (GitHub, GitLab and most wikis draw it).

One node per resolution level and network, top (full resolution) to bottom (the deepest
stage): the encoder stage and the decoder stage of that level, each with its status mark,
coloured by the worse of the two (transposed convolutions count with the decoder stage they
feed). Marks and colours come from :mod:`plancheck.render.vocabulary`, as in the HTML page.
Reads the frozen report; never runs a check.
"""

from __future__ import annotations

import typing as t

from plancheck.records.report import Report
from plancheck.render.vocabulary import BLOCK_STATUSES, BY_NAME, UNKNOWN, BlockStatus, block_status, rows_by_key

if t.TYPE_CHECKING:
    from plancheck.records.layout import Block, NetworkLayout

__all__ = ["mermaid_diagram", "mermaid_section"]

#: Worse first: a level takes the first of these that any of its blocks has.
_SEVERITY = ("missing", "fails", "unused", "unknown", "loads", "head")


def _worst(statuses: t.Iterable[BlockStatus]) -> BlockStatus:
    names = {s.name for s in statuses}
    return next((BY_NAME.get(n, UNKNOWN) for n in _SEVERITY if n in names), UNKNOWN)


def _vec(v: tuple[int, ...] | None) -> str:
    return "?" if v is None else "×".join(str(x) for x in v)


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def _network(prefix: str, title: str, layout: NetworkLayout, status: t.Callable[[Block], BlockStatus]) -> list[str]:
    lines = [f'  subgraph {prefix}["{_label(title)}"]', "    direction TB"]
    by_level: dict[int, list[Block]] = {}
    for b in layout.blocks:
        if b.kind != "head":
            by_level.setdefault(b.level, []).append(b)
    nodes = []
    for level in range(layout.levels):
        blocks = by_level.get(level, [])
        enc = [b for b in blocks if b.kind in ("stem", "encoder")]
        dec = [b for b in blocks if b.kind == "decoder"]
        # a transposed conv at level L+1 feeds the decoder stage at level L
        ups = [b for b in layout.blocks if b.kind == "transpconv" and b.level == level + 1]
        parts = []
        main = next((b for b in enc if b.kind == "encoder"), None)
        if main is not None:
            enc_status = _worst(status(b) for b in enc)
            parts.append(f"enc {main.index} {enc_status.mark}")
        if dec:
            dec_status = _worst(status(b) for b in (*dec, *ups))
            parts.append(f"dec {dec[0].index} {dec_status.mark}")
        detail = ""
        if main is not None:
            detail = f"{main.features} ch · k {_vec(main.kernel)}"
        worst = _worst(status(b) for b in (*enc, *dec, *ups))
        node = f"{prefix}{level}"
        nodes.append(node)
        lines.append(f'    {node}["{_label(" · ".join(parts))}<br/>{_label(detail)}"]:::{worst.name}')
    if nodes:
        lines.append("    " + " --> ".join(nodes))
    lines.append("  end")
    return lines


def mermaid_diagram(report: Report) -> str | None:
    """The ```` ```mermaid ```` block, or None when neither network has a layout."""
    layout = report.layout
    if layout is None or (layout.source is None and layout.target is None):
        return None
    rows = rows_by_key(report)
    lines = ["```mermaid", "flowchart LR"]
    for prefix, role, side, lay in (("S", "source", report.source, layout.source),
                                    ("T", "target", report.target, layout.target)):
        if lay is None:
            continue
        title = f"{role}: {side.network_class}, {lay.levels} levels"
        lines += _network(prefix, title, lay, lambda b, role=role: block_status(b, rows, role))
    for s in (*BLOCK_STATUSES, UNKNOWN):
        lines.append(f"  classDef {s.name} fill:{s.light[0]},stroke:{s.light[1]},color:#1c1e21")
    lines.append("```")
    return "\n".join(lines)


def mermaid_section(report: Report) -> str | None:
    """The diagram with its one-line legend, for the Markdown report."""
    diagram = mermaid_diagram(report)
    if diagram is None:
        return None
    legend = " · ".join(f"{s.mark} {s.label}" for s in BLOCK_STATUSES)
    return (f"{diagram}\n\nOne box per resolution level (top: full resolution): its encoder and decoder stage. "
            f"{legend}.")
