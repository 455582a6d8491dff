"""The frame every plancheck page shares, and the widgets several pages use.

:func:`page` wraps a page's body in the document: the generator meta (by which
:func:`is_plancheck_page` knows a page plancheck wrote), the inline CSS (the statuses' colours
from :mod:`plancheck.render.vocabulary`, light and dark), the inline script (select a block or a
root cause, sort a table, open every tensor list to print) and the footer. Beside it: the legend,
escaping, the side cards and titles of two networks, the depth note, the share bar; and the
way to a page (:func:`html_page` through the registry, :func:`check_html_path` and
:func:`write_html` for ``--html FILE``). It imports none of the page modules.
"""

from __future__ import annotations

import html
import math
import os
import typing as t

from plancheck.records.units import percent
from plancheck.render.registry import HTML, renderer_for
from plancheck.render.vocabulary import ALL_STATUSES, BLOCK_STATUSES, UNKNOWN, BlockStatus

if t.TYPE_CHECKING:
    from plancheck.records.layout import NetworkLayout
    from plancheck.records.report import Report

__all__ = ["CSS", "GENERATOR", "SCRIPT", "Json", "block_tensors", "check_html_path", "depth_note", "esc",
           "html_page", "tensors_outside_blocks",
           "is_plancheck_page", "legend", "page", "percent_floor", "shape_text", "share_bar", "side_card",
           "side_titles", "write_html"]

GENERATOR = "plancheck"
Json = t.Any

# --------------------------------------------------------------------------- the way to a page


def html_page(result: t.Any) -> str:
    """The page of any record that has one (the registry's ``html`` format)."""
    renderer = renderer_for(type(result), HTML)
    if renderer is None:
        raise TypeError(f"no HTML page for {type(result).__name__}")
    return renderer(result, True)


def is_plancheck_page(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a page plancheck wrote (so --html may replace it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(2048)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}' in head


def check_html_path(path: str | os.PathLike[str]) -> None:
    """Refuse, before anything runs, a FILE that --html could not write: a user's file, a missing folder.

    Commands that write other files first (``transfer``) or run for long (``verify``) call
    this up front, so that a refused page leaves nothing written; :func:`write_html` checks again.
    """
    from plancheck.errors import UsageError

    if os.path.lexists(path) and not is_plancheck_page(path):
        raise UsageError("exists and is not a page plancheck wrote; choose another --html file", path=path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError("cannot write the HTML page: its folder does not exist", path=path)


def write_html(path: str | os.PathLike[str], result: t.Any) -> str:
    """Write the page of ``result`` to ``path`` atomically.

    An existing file is replaced only when it is a page plancheck wrote; anything else is
    refused (:class:`~plancheck.errors.UsageError`, exit 2), so that a user's file is never
    lost; so is a FILE that cannot be written (a missing folder).
    """
    from plancheck.atomic import atomic_write_text
    from plancheck.errors import UsageError

    text = html_page(result)
    exists = os.path.lexists(path)
    if exists and not is_plancheck_page(path):
        raise UsageError("exists and is not a page plancheck wrote; choose another --html file", path=path)
    try:
        return atomic_write_text(path, text, overwrite=exists)
    except OSError as e:
        raise UsageError(f"cannot write the HTML page: {e.strerror or e}", path=path) from e


# --------------------------------------------------------------------------- the frame


def esc(value: t.Any) -> str:
    """``value`` as text, escaped for HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def _status_css() -> str:
    rules = []
    light, dark = [], []
    for s in (*ALL_STATUSES, UNKNOWN):
        light.append(f"--{s.name}-fill:{s.light[0]};--{s.name}-stroke:{s.light[1]};")
        dark.append(f"--{s.name}-fill:{s.dark[0]};--{s.name}-stroke:{s.dark[1]};")
        rules.append(f".st-{s.name} rect,.sw-{s.name}{{fill:var(--{s.name}-fill);stroke:var(--{s.name}-stroke);"
                     f"background:var(--{s.name}-fill);border-color:var(--{s.name}-stroke)}}"
                     f".st-{s.name} .mk,.tx-{s.name}{{fill:var(--{s.name}-stroke);color:var(--{s.name}-stroke)}}")
    return (":root{" + "".join(light) + "}\n@media (prefers-color-scheme: dark){:root{" + "".join(dark) + "}}\n"
            + "\n".join(rules))


CSS = """
:root{color-scheme:light dark;--bg:#ffffff;--fg:#1c1e21;--muted:#5b6169;--card:#f5f6f8;--border:#d5d9de;
--line:#7d848c;--hl:#7a3cf0;--good:#007a5a;--bad:#b3261e;--goodbg:#e3f4ec;--badbg:#fbe4e2;
--q5:#cdebdc;--q4:#e2f0c8;--q3:#f6edb8;--q2:#fbd9a8;--q1:#f8c0a8;--q0:#f2a99c}
@media (prefers-color-scheme: dark){:root{--bg:#15171a;--fg:#e6e8eb;--muted:#a0a7b0;--card:#1e2125;
--border:#394048;--line:#8f98a3;--hl:#b892ff;--good:#4fd1a1;--bad:#ff8a80;--goodbg:#12382b;--badbg:#4a1c19;
--q5:#135a42;--q4:#3c5a1d;--q3:#5c5217;--q2:#6b4016;--q1:#6e2d18;--q0:#6d1f1a}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1240px;padding:20px 24px 60px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--border);
padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
h1 code,h2 code,h3 code{font-size:.92em}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:var(--muted)}.small{font-size:12.5px}
.verdict{padding:12px 16px;border-radius:8px;margin:12px 0;border:1px solid var(--border)}
.verdict.good{background:var(--goodbg);border-color:var(--good)}.verdict.bad{background:var(--badbg);
border-color:var(--bad)}.verdict b{font-size:16px}
.verdict.good b{color:var(--good)}.verdict.bad b{color:var(--bad)}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:12px}.card{background:var(--card);
border:1px solid var(--border);border-radius:8px;padding:10px 14px}
.card h3{margin:0 0 6px}.card dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
.card dt{color:var(--muted)}.card dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border-bottom:1px solid var(--border);
padding:4px 8px;text-align:left;vertical-align:top}th{font-weight:600;background:var(--card)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;width:160px;height:10px;border:1px solid var(--border);border-radius:5px;
overflow:hidden;vertical-align:middle;margin-right:8px;background:var(--q0)}
.bar>span{display:block;height:100%;background:var(--good)}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:6px 0 10px;padding:0;list-style:none}
.legend li{display:flex;align-items:center;gap:6px}
.sw{display:inline-block;min-width:22px;height:18px;border:1.5px solid;border-radius:4px;text-align:center;
font-size:12px;line-height:15px;font-weight:700}
.sw-missing,.sw-unused{border-style:dashed}
.figure{overflow-x:auto;border:1px solid var(--border);border-radius:8px;padding:8px;background:var(--bg)}
svg.unet{display:block;max-width:100%;height:auto;margin:0 auto}
.unet text{fill:var(--fg);font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
text-anchor:middle}
.unet .t1{font-size:12px}.unet .t2{font-size:11px}.unet .t3{font-size:10.5px}.unet .nm{font-weight:600}
.unet .pt{font-size:14px;font-weight:700}.unet .ps{font-size:11.5px;fill:var(--muted)}
.unet .mk{font-weight:700}.unet .d{font-weight:800;text-decoration:underline}
.unet .ln{stroke:var(--line);fill:none;stroke-width:1.3}.unet .sk{stroke:var(--line);fill:none;
stroke-width:1.2;stroke-dasharray:5 4}.unet .ah{fill:var(--line)}.unet .sep{stroke:var(--border);
stroke-width:1}
.blk{cursor:pointer}.blk rect{stroke-width:1.6}.blk:focus{outline:none}
.blk.sel rect{stroke:var(--fg);stroke-width:3.2}.blk.hl rect{stroke:var(--hl);stroke-width:4}
.blk.dim{opacity:.35}
tr.cause{cursor:pointer}tr.cause:hover td{background:var(--card)}tr.cause.on td{background:var(--card);
box-shadow:inset 3px 0 var(--hl)}
tr.hl td{background:color-mix(in srgb,var(--hl) 18%,var(--bg))}
details.tens{margin:4px 0;border:1px solid var(--border);border-radius:6px;padding:2px 10px}
details.tens[open]{padding-bottom:8px}details.tens summary{cursor:pointer;padding:4px 0}
details.tens.sel{box-shadow:0 0 0 2px var(--hl)}
.hint{background:var(--card);border-left:3px solid var(--hl);padding:6px 10px;margin:8px 0;font-size:13px}
ul.plain{margin:4px 0;padding-left:20px}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]::after{content:" ↕";color:var(--muted);
font-weight:400}
td.q5{background:var(--q5)}td.q4{background:var(--q4)}td.q3{background:var(--q3)}td.q2{background:var(--q2)}
td.q1{background:var(--q1)}td.q0{background:var(--q0)}
.pill{display:inline-block;padding:0 8px;border-radius:9px;font-weight:600;font-size:12.5px;border:1px solid}
.pill.good{color:var(--good);border-color:var(--good)}.pill.bad{color:var(--bad);border-color:var(--bad)}
.pill.other{color:var(--muted);border-color:var(--muted)}
.wide{overflow-x:auto}table.matrix th{white-space:nowrap}table.matrix td.num{white-space:nowrap;
min-width:72px}
section.pair{border-top:2px solid var(--border);margin-top:30px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
@media print{body{max-width:none;padding:0}details.tens{break-inside:avoid}.noprint{display:none}
.figure{overflow:visible;border:none}svg.unet{max-width:100%}}
"""

SCRIPT = """
(function(){
function scope(el){return el.closest('[data-scope]')||document;}
function clear(s){s.querySelectorAll('.hl,.sel,.on,.dim').forEach(function(e){e.classList.remove('hl','sel','on','dim');});}
function pickBlock(g){var s=scope(g);clear(s);g.classList.add('sel');
 var d=document.getElementById('tensors-'+g.id);if(d){d.open=true;d.classList.add('sel');
 d.scrollIntoView({block:'nearest',behavior:'smooth'});}}
function pickCause(tr){var s=scope(tr);var was=tr.classList.contains('on');clear(s);if(was)return;
 tr.classList.add('on');var ids=(tr.getAttribute('data-blocks')||'').split(' ').filter(Boolean);
 s.querySelectorAll('.blk').forEach(function(g){if(ids.indexOf(g.id)<0)g.classList.add('dim');});
 ids.forEach(function(id){var g=document.getElementById(id);if(g){g.classList.add('hl');g.classList.remove('dim');}});
 var fig=s.querySelector('svg.unet');if(fig&&ids.length)fig.scrollIntoView({block:'nearest',behavior:'smooth'});
 (tr.getAttribute('data-rows')||'').split(' ').filter(Boolean).forEach(function(r){
  s.querySelectorAll('tr[data-t="'+r+'"]').forEach(function(x){x.classList.add('hl');});});}
function sortBy(th){var table=th.closest('table');var body=table.tBodies[0];var i=Array.prototype.indexOf.call(th.parentNode.children,th);
 var asc=th.getAttribute('data-dir')!=='asc';th.parentNode.querySelectorAll('th').forEach(function(h){h.removeAttribute('data-dir');});
 th.setAttribute('data-dir',asc?'asc':'desc');var num=th.getAttribute('data-sort')==='num';
 var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){
  var x=a.cells[i].getAttribute('data-v')||a.cells[i].textContent,y=b.cells[i].getAttribute('data-v')||b.cells[i].textContent;
  if(num){x=parseFloat(x);y=parseFloat(y);if(isNaN(x))x=-1;if(isNaN(y))y=-1;return asc?x-y:y-x;}
  return asc?x.localeCompare(y):y.localeCompare(x);});rows.forEach(function(r){body.appendChild(r);});}
document.addEventListener('click',function(e){var g=e.target.closest('.blk');if(g){pickBlock(g);return;}
 var tr=e.target.closest('tr.cause');if(tr){pickCause(tr);return;}
 var th=e.target.closest('th[data-sort]');if(th){sortBy(th);}});
document.addEventListener('keydown',function(e){if(e.key!=='Enter'&&e.key!==' ')return;
 var g=e.target.closest&&e.target.closest('.blk');if(g){e.preventDefault();pickBlock(g);}
 var tr=e.target.closest&&e.target.closest('tr.cause');if(tr){e.preventDefault();pickCause(tr);}});
window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true;});});
function fromHash(){var m=/^#select=(.+)$/.exec(location.hash);if(!m)return;
 var el=document.getElementById(decodeURIComponent(m[1]));if(!el)return;
 if(el.classList.contains('blk'))pickBlock(el);else if(el.classList.contains('cause'))pickCause(el);}
window.addEventListener('hashchange',fromHash);fromHash();
document.documentElement.setAttribute('data-ready','1');
})();
"""


def page(title: str, body: str) -> str:
    """A complete page around ``body``."""
    from plancheck import __version__

    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta name="generator" content="{GENERATOR} {esc(__version__)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{esc(title)}</title>\n<style>{_status_css()}\n{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n<footer>Written by plancheck {esc(__version__)}. This page is self-contained: it loads "
        "nothing from anywhere else.</footer>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def legend(labels: t.Mapping[str, str] | None = None, names: t.Iterable[str] | None = None,
           statuses: t.Sequence[BlockStatus] = BLOCK_STATUSES) -> str:
    """The swatches of ``statuses`` (only those in ``names`` when given), with ``labels`` over their own."""
    wanted = None if names is None else set(names)
    shown = [s for s in (*statuses, UNKNOWN)
             if (wanted is None and s is not UNKNOWN) or (wanted is not None and s.name in wanted)]
    items = "".join(
        f'<li><span class="sw sw-{s.name} tx-{s.name}">{esc(s.mark)}</span>{esc((labels or {}).get(s.name, s.label))}'
        "</li>"
        for s in shown
    )
    return f'<ul class="legend" aria-label="legend">{items}</ul>'


# --------------------------------------------------------------------------- widgets of several pages


def shape_text(shape: t.Sequence[int] | None) -> str:
    """``[2, 3]``; ``—`` for no tensor."""
    return "—" if shape is None else "[" + ", ".join(str(s) for s in shape) + "]"


def share_class(share: float | None) -> str:
    """The colour class of a share cell (``q5`` at 100% down to ``q0``; none without a share)."""
    if share is None:
        return ""
    for q, limit in ((5, 1.0), (4, 0.9), (3, 0.75), (2, 0.5), (1, 0.25)):
        if share >= limit:
            return f"q{q}"
    return "q0"


def percent_floor(share: float) -> str:
    """``share`` as a percentage to 0.1, rounded down from ``100 * share``: matrix cells, the transfer verdict.

    Not quite :func:`plancheck.records.units.percent`: without its tolerance, an exact tenth that
    floating point lands just below reads one tenth lower (23 / 40: 57.4% here, 57.5% there).
    Kept so that those pages read as they did; the share bars use ``percent``.
    """
    return f"{math.floor(100 * share * 10) / 10:.1f}%"  # rounded down: never 100.0% when a few parameters miss


def share_bar(part: int, whole: int, *, empty: float = 1.0) -> str:
    """A bar of ``part`` / ``whole`` and that share of the parameters in bold; ``empty``: the share of 0 / 0."""
    width = 100.0 * part / whole if whole else 100.0 * empty
    share = part / whole if whole else empty
    return (f"<span class=\"bar\" aria-hidden=\"true\"><span style=\"width:{width:.1f}%\"></span></span>"
            f"<b>{percent(share)}</b> of the parameters")


_FACTS = (("trainer_name", "trainer"), ("current_epoch", "epoch"), ("fold", "fold"), ("format", "file format"),
          ("container_key", "weights under"), ("network_built_by", "network built by"), ("dataset", "dataset"),
          ("checkpoint", "checkpoint"), ("model_folder", "model folder"), ("folder", "folder"))


def side_card(role: str, side: t.Any) -> str:
    """One side of a check as a card: plans, configuration, network, channels, heads, the file's facts."""
    heads = "unknown (no dataset.json)" if side.segmentation_heads is None else str(side.segmentation_heads)
    rows = [
        ("plans", f"<code>{esc(side.plans)}</code>"),
        ("configuration", f"<code>{esc(side.configuration)}</code>"),
        ("network", f"<code>{esc(side.network_class)}</code>"),
        ("input channels", f"{side.input_channels} <span class=\"muted small\">from {esc(side.input_channels_from)}"
                           "</span>"),
        ("segmentation heads", esc(heads)),
        ("kind", esc(side.kind)),
    ]
    details = getattr(side, "details", None) or {}
    for key, name in _FACTS:
        value = details.get(key)
        if value not in (None, ""):
            rows.append((name, f"<code>{esc(value)}</code>"))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    title = "Source (the pretrained weights)" if role == "source" else "Target (the network to fine-tune)"
    return f'<div class="card"><h3>{title}</h3><dl>{body}</dl></div>'


def side_titles(report: Report, layouts: t.Mapping[str, NetworkLayout | None], role: str) -> tuple[str, str]:
    """The two title lines of one side's drawn network: its dataset, then plans, configuration, class, depth."""
    side = report.source if role == "source" else report.target
    lay = layouts[role]
    name = os.path.basename(os.path.dirname(side.plans)) or side.plans
    plans = os.path.basename(side.plans)
    title = f"{'SOURCE' if role == 'source' else 'TARGET'}: {name}"
    levels = "" if lay is None else f", {lay.levels} levels"
    return title, f"{plans} [{side.configuration}] · {side.network_class}{levels} · {side.input_channels} in-ch"


def depth_note(a: NetworkLayout | None, b: NetworkLayout | None, name_a: str, name_b: str) -> str:
    """Why a depth difference fails the whole decoder: blocks pair by name, decoder stages count from the bottom."""
    if a is None or b is None or a.levels == b.levels:
        return ""
    return (f'<p class="hint"><b>Different depths:</b> {name_a} has {a.levels} levels, {name_b} '
            f"{b.levels}. Weights are matched by name (enc&nbsp;0 with enc&nbsp;0, dec&nbsp;0 with dec&nbsp;0), "
            "and the decoder's stages are numbered from the bottom, so every decoder stage is matched with one "
            "of another resolution level and a different width: the decoder cannot load, while the encoder "
            "stages both networks have can.</p>")


def block_tensors(gid: str, role: str, block: t.Any, status: BlockStatus, label: str, what: str, table: str, *,
                  opened: bool) -> str:
    """One drawn block's tensors, folded under a summary line: its status mark, name, module, ``label`` and ``what``.

    ``table`` is the whole ``<table>...</table>``; the id lets the pictures open it.
    """
    return (
        f'<details class="tens" id="tensors-{esc(gid)}"{" open" if opened else ""}><summary><span class="sw '
        f'sw-{status.name} tx-{status.name}">{esc(status.mark)}</span> <b>{role} {esc(block.label)}</b> '
        f'<span class="muted small"><code>{esc(block.module)}</code> · {esc(label)} · {what}</span></summary>'
        f"{table}</details>"
    )


def tensors_outside_blocks(head: str, rows: t.Sequence[str], *, drawn: bool) -> str:
    """The tensors no drawn block holds (all of them when nothing is ``drawn``), open, under one summary line."""
    label = "Tensors outside the drawn blocks" if drawn else "Tensors"
    return (f'<details class="tens" open><summary><b>{label}</b> <span class="muted small">{len(rows)} '
            f"tensors</span></summary><table>{head}<tbody>{''.join(rows)}</tbody></table></details>")
