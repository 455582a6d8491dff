"""Two U-Nets side by side as inline SVG: encoder down the left, decoder up the right, level by level.

Reads :class:`~plancheck.records.layout.NetworkLayout` records and a status per block (from
:mod:`plancheck.render.vocabulary`); draws, never checks. Each stem, stage, transposed
convolution and head is one ``<g class="blk">`` whose ``id`` is ``<prefix><role>-<block id>``
and whose ``data-status`` is its status name; colours come from the page's CSS
(:mod:`plancheck.render.html`), so the same SVG follows the light and dark schemes.
Values that differ from the other network's block of the same name are drawn bold and underlined.
"""

from __future__ import annotations

import typing as t
from xml.sax.saxutils import escape, quoteattr

from plancheck.render.vocabulary import BlockStatus

if t.TYPE_CHECKING:
    from plancheck.records.layout import Block, NetworkLayout

__all__ = ["Side", "unet_pair_svg"]

BW = 210  # block width
BH = 40  # block height
ROW = 80  # level pitch
TH = 20  # transposed-conv box height
MID = 56  # gap between the encoder and decoder columns
HW = 62  # head width
PANEL_GAP = 48
TOP = 66  # title lines and the input line
STEM_ROW = 34

StatusOf = t.Callable[[str, "Block"], BlockStatus]


class Side(t.NamedTuple):
    role: str  #: "source"/"target" (check) or "a"/"b" (diff): the id part
    title: str  #: first title line
    subtitle: str  #: second title line
    layout: NetworkLayout | None
    inputs: int | None = None  #: input channels, drawn above the first block when known


def _vec(v: tuple[int, ...] | None) -> str:
    return "—" if v is None else "×".join(str(x) for x in v)


def _fields(block: Block) -> list[tuple[str, str]]:
    """(field name, shown text) of a block, in drawing order."""
    unit = "block" if block.unit == "block" else "conv"
    out: list[tuple[str, str]] = []
    if block.kind in ("encoder", "stem", "decoder"):
        out.append(("features", f"{block.features} ch" if block.features is not None else "? ch"))
        out.append(("kernel", f"k {_vec(block.kernel)}"))
        if block.kind == "encoder":
            out.append(("stride", f"s {_vec(block.stride)}"))
        if block.repeats is not None:
            out.append(("repeats", f"{block.repeats} {unit}{'s' if block.repeats != 1 else ''}"))
    elif block.kind == "transpconv":
        out.append(("stride", f"×{_vec(block.stride)}"))
        out.append(("features", f"{block.features} ch" if block.features is not None else "? ch"))
    elif block.kind == "head":
        out.append(("features", f"{block.features} cl" if block.features is not None else "? cl"))
    return out


def _differs(block: Block, other: Block | None, name: str) -> bool:
    if other is None:
        return False
    return getattr(block, name) != getattr(other, name)


def _title_of(block: Block) -> str:
    return {
        "stem": "stem",
        "encoder": f"enc {block.index}",
        "transpconv": f"up {block.index}",
        "decoder": f"dec {block.index}",
        "head": "head",
    }[block.kind]


class _Panel:
    def __init__(self, side: Side, other: Side, x0: float, levels: int, stem_row: bool,
                 status_of: StatusOf, prefix: str) -> None:
        self.side = side
        self.other_inputs = other.inputs
        other = other.layout  # type: ignore[assignment]
        self.other = {b.id: b for b in other.blocks} if other is not None else {}
        self.x0 = x0
        self.levels = levels
        self.stem_row = stem_row
        self.status_of = status_of
        self.prefix = prefix
        self.out: list[str] = []

    # geometry
    def y(self, level: int) -> float:
        return TOP + (STEM_ROW if self.stem_row else 0) + level * ROW

    @property
    def enc_x(self) -> float:
        return self.x0

    @property
    def dec_x(self) -> float:
        return self.x0 + BW + MID

    def bottleneck_x(self) -> float:
        return self.x0 + (BW + MID) / 2

    def block_box(self, block: Block, n: int) -> tuple[float, float, float, float]:
        if block.kind == "stem":
            return self.enc_x, TOP, BW, STEM_ROW - 10
        if block.kind == "encoder":
            x = self.bottleneck_x() if block.level == n - 1 and n > 1 else self.enc_x
            return x, self.y(block.level), BW, BH
        if block.kind == "decoder":
            return self.dec_x, self.y(block.level), BW, BH
        if block.kind == "transpconv":
            # in the gap above the level it upsamples from
            return self.dec_x + 20, self.y(block.level) - (ROW - BH + TH) / 2, BW - 40, TH
        # head: right of its decoder stage
        return self.dec_x + BW + 10, self.y(block.level) + 4, HW, BH - 8

    def element(self, block: Block, n: int) -> None:
        status = self.status_of(self.side.role, block)
        x, y, w, h = self.block_box(block, n)
        gid = f"{self.prefix}{self.side.role}-{block.id}"
        other = self.other.get(block.id)
        label = f"{self.side.role} {block.label}: {status.label}"
        self.out.append(
            f'<g id={quoteattr(gid)} class="blk st-{status.name}" data-status="{status.name}" '
            f'data-kind="{block.kind}" data-block={quoteattr(block.id)} tabindex="0" role="button" '
            f'aria-label={quoteattr(label)}>'
        )
        detail = ", ".join(text for _, text in _fields(block))
        self.out.append(f"<title>{escape(label)}" + (f" ({escape(detail)})" if detail else "") + "</title>")
        dash = ' stroke-dasharray="5 3"' if status.name in ("missing", "unused") else ""
        self.out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="5"{dash}/>')
        fields = _fields(block)

        def spans(items: list[tuple[str, str]], sep: str = "  ") -> str:
            parts = []
            for name, text in items:
                cls = ' class="d"' if _differs(block, other, name) else ""
                parts.append(f"<tspan{cls}>{escape(text)}</tspan>")
            return sep.join(parts)

        cx = x + w / 2
        if block.kind in ("encoder", "decoder"):
            head = f'<tspan class="mk">{escape(status.mark)}</tspan> <tspan class="nm">{_title_of(block)}</tspan>'
            line1 = head + "  " + spans(fields[:1])
            line2 = spans(fields[1:])
            self.out.append(f'<text x="{cx:.1f}" y="{y + 16:.1f}" class="t1">{line1}</text>')
            self.out.append(f'<text x="{cx:.1f}" y="{y + 32:.1f}" class="t2">{line2}</text>')
        elif block.kind == "stem":
            line = (f'<tspan class="mk">{escape(status.mark)}</tspan> <tspan class="nm">stem</tspan>  '
                    + spans(fields))
            self.out.append(f'<text x="{cx:.1f}" y="{y + h / 2 + 4:.1f}" class="t2">{line}</text>')
        elif block.kind == "transpconv":
            line = (f'<tspan class="mk">{escape(status.mark)}</tspan> <tspan class="nm">up {block.index}</tspan>  '
                    + spans(fields))
            self.out.append(f'<text x="{cx:.1f}" y="{y + h / 2 + 4:.1f}" class="t3">{line}</text>')
        else:
            self.out.append(f'<text x="{cx:.1f}" y="{y + 13:.1f}" class="t3"><tspan class="mk">'
                            f'{escape(status.mark)}</tspan> head</text>')
            self.out.append(f'<text x="{cx:.1f}" y="{y + 26:.1f}" class="t3">{spans(fields)}</text>')
        self.out.append("</g>")

    def draw(self) -> str:
        layout = self.side.layout
        cx = self.x0 + (BW * 2 + MID + HW + 10) / 2
        self.out.append(f'<text x="{cx:.1f}" y="16" class="pt">{escape(self.side.title)}</text>')
        self.out.append(f'<text x="{cx:.1f}" y="34" class="ps">{escape(self.side.subtitle)}</text>')
        if layout is None:
            self.out.append(f'<text x="{cx:.1f}" y="{TOP + 30}" class="ps">no U-Net structure to draw '
                            "(see the tensor table)</text>")
            return "\n".join(self.out)
        n = layout.levels
        if self.side.inputs is not None:
            k = self.side.inputs
            cls = ' class="d"' if self.other_inputs is not None and self.other_inputs != k else ""
            self.out.append(f'<text x="{self.enc_x + BW / 2:.1f}" y="{TOP - 8}" class="t2">input: '
                            f'<tspan{cls}>{k} channel{"s" if k != 1 else ""}</tspan></text>')
        boxes = {b.id: self.block_box(b, n) for b in layout.blocks}
        # connections first, blocks on top
        lines: list[str] = []
        encs = layout.of_kind("encoder")
        for a, b in zip(encs, encs[1:]):
            ax, ay, aw, ah = boxes[a.id]
            bx, by, bw, _ = boxes[b.id]
            lines.append(f'<path d="M{ax + aw / 2:.1f},{ay + ah:.1f} L{ax + aw / 2:.1f},{by - 2:.1f}" '
                         'class="ln" marker-end="url(#arrow)"/>' if bx == ax else
                         f'<path d="M{ax + aw / 2:.1f},{ay + ah:.1f} L{ax + aw / 2:.1f},{by + BH / 2:.1f} '
                         f'L{bx - 2:.1f},{by + BH / 2:.1f}" class="ln" marker-end="url(#arrow)"/>')
        stem = layout.of_kind("stem")
        if stem and encs:
            sx, sy, sw, sh = boxes[stem[0].id]
            ex, ey, _, _ = boxes[encs[0].id]
            lines.append(f'<path d="M{sx + sw / 2:.1f},{sy + sh:.1f} L{sx + sw / 2:.1f},{ey - 2:.1f}" class="ln" '
                         'marker-end="url(#arrow)"/>')
        decs = {b.level: b for b in layout.of_kind("decoder")}
        for e in encs:
            d = decs.get(e.level)
            if d is None:
                continue
            ex, ey, ew, eh = boxes[e.id]
            dx, _, _, _ = boxes[d.id]
            lines.append(f'<path d="M{ex + ew:.1f},{ey + eh / 2:.1f} L{dx - 2:.1f},{ey + eh / 2:.1f}" class="sk" '
                         'marker-end="url(#arrow)"/>')
        deepest = encs[-1] if encs else None
        for tc in layout.of_kind("transpconv"):
            tx, ty, tw, th = boxes[tc.id]
            below = decs.get(tc.level) if tc.level in decs else (deepest if deepest and deepest.level == tc.level
                                                                  else None)
            above = decs.get(tc.level - 1)
            if below is not None:
                bx, by, bw, _ = boxes[below.id]
                if below.kind == "encoder":  # the bottleneck, drawn in the middle
                    lines.append(f'<path d="M{bx + bw:.1f},{by + BH / 2:.1f} L{tx + tw / 2:.1f},{by + BH / 2:.1f} '
                                 f'L{tx + tw / 2:.1f},{ty + th + 2:.1f}" class="ln" marker-end="url(#arrow)"/>')
                else:
                    lines.append(f'<path d="M{tx + tw / 2:.1f},{by:.1f} L{tx + tw / 2:.1f},{ty + th + 2:.1f}" '
                                 'class="ln" marker-end="url(#arrow)"/>')
            if above is not None:
                ax, ay, aw, ah = boxes[above.id]
                lines.append(f'<path d="M{tx + tw / 2:.1f},{ty:.1f} L{tx + tw / 2:.1f},{ay + ah + 2:.1f}" '
                             'class="ln" marker-end="url(#arrow)"/>')
        for h in layout.of_kind("head"):
            d = decs.get(h.level)
            if d is None:
                continue
            dx, dy, dw, dh = boxes[d.id]
            hx, _, _, _ = boxes[h.id]
            lines.append(f'<path d="M{dx + dw:.1f},{dy + dh / 2:.1f} L{hx - 2:.1f},{dy + dh / 2:.1f}" class="ln" '
                         'marker-end="url(#arrow)"/>')
        self.out.extend(lines)
        for kind in ("stem", "encoder", "decoder", "transpconv", "head"):
            for b in layout.of_kind(kind):
                self.element(b, n)
        return "\n".join(self.out)


PANEL_W = BW * 2 + MID + 10 + HW


def unet_pair_svg(left: Side, right: Side, status_of: StatusOf, *, prefix: str = "",
                  caption: str = "") -> str:
    """Both networks as one ``<svg>``; ``prefix`` keeps element ids unique when a page holds several."""
    layouts = [s.layout for s in (left, right) if s.layout is not None]
    levels = max((lay.levels for lay in layouts), default=1)
    stem_row = any(lay.of_kind("stem") for lay in layouts)
    height = TOP + (STEM_ROW if stem_row else 0) + levels * ROW + 4
    width = PANEL_W * 2 + PANEL_GAP + 8
    panels = [
        _Panel(left, right, 4, levels, stem_row, status_of, prefix).draw(),
        _Panel(right, left, 4 + PANEL_W + PANEL_GAP, levels, stem_row, status_of, prefix).draw(),
    ]
    sep_x = 4 + PANEL_W + PANEL_GAP / 2
    aria = caption or f"{left.title} and {right.title} drawn as U-Nets"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="unet" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label={quoteattr(aria)}>\n'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="ah"/></marker></defs>\n'
        f'<line x1="{sep_x:.1f}" y1="4" x2="{sep_x:.1f}" y2="{height - 4:.0f}" class="sep"/>\n'
        + "\n".join(panels)
        + "\n</svg>"
    ).replace('id="arrow"', f'id="{prefix}arrow"').replace("url(#arrow)", f"url(#{prefix}arrow)")
