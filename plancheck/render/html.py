"""Self-contained HTML pages: ``--html FILE`` of check, diff, matrix, transfer and verify, and the pytest plugin's
report.

One page is one file: inline CSS, inline SVG (:mod:`plancheck.render.svg`) and a little
inline script (select a stage or a root cause; sort a table). Nothing is loaded from
anywhere else: no fonts, images, styles or scripts. Without the script every tensor list
is still on the page (``<details>``), and printing opens them. Colours follow the
reader's light or dark scheme (``prefers-color-scheme``); statuses, colours and legend
lines come from :mod:`plancheck.render.vocabulary`.

A new record gets its page as it gets any renderer, in the one registry
(:func:`plancheck.render.registry.register` with the ``html`` format)::

    @register(MyResult, HTML)
    def _my_page(result, verbose) -> str:
        return page("plancheck mine", body)

The records import no torch, so this module registers every page without importing any engine.

Renderers read the frozen records; nothing here runs a check.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import typing as t

from plancheck.records.diff import PlansDiff
from plancheck.records.matrix import Matrix
from plancheck.records.report import Report, Status, TensorRow
from plancheck.records.transfer import TransferResult
from plancheck.records.verify import VerifyResult
from plancheck.render.registry import HTML, register, renderer_for
from plancheck.render.vocabulary import (
    ALL_STATUSES,
    BLOCK_STATUSES,
    BY_NAME,
    DIFF_LABELS,
    TRANSFER_LABELS,
    TRANSFER_STATUSES,
    UNKNOWN,
    BlockStatus,
    block_status,
    rows_by_key,
    transfer_block_status,
)

if t.TYPE_CHECKING:
    from plancheck.network.layout import Block, NetworkLayout

__all__ = ["GENERATOR", "check_html_path", "check_section", "html_page", "is_plancheck_page", "page",
           "transfer_section", "write_html"]

GENERATOR = "plancheck"
Json = t.Any

# --------------------------------------------------------------------------- page frame

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


def _esc(value: t.Any) -> str:
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
        f'<meta name="generator" content="{GENERATOR} {_esc(__version__)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{_esc(title)}</title>\n<style>{_status_css()}\n{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n<footer>Written by plancheck {_esc(__version__)}. This page is self-contained: it loads "
        "nothing from anywhere else.</footer>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def legend(labels: t.Mapping[str, str] | None = None, names: t.Iterable[str] | None = None,
           statuses: t.Sequence[BlockStatus] = BLOCK_STATUSES) -> str:
    wanted = None if names is None else set(names)
    shown = [s for s in (*statuses, UNKNOWN)
             if (wanted is None and s is not UNKNOWN) or (wanted is not None and s.name in wanted)]
    items = "".join(
        f'<li><span class="sw sw-{s.name} tx-{s.name}">{_esc(s.mark)}</span>{_esc((labels or {}).get(s.name, s.label))}'
        "</li>"
        for s in shown
    )
    return f'<ul class="legend" aria-label="legend">{items}</ul>'


# --------------------------------------------------------------------------- check


def _shape(shape: t.Sequence[int] | None) -> str:
    return "—" if shape is None else "[" + ", ".join(str(s) for s in shape) + "]"


def _value(value: Json) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def _short_parameter(parameter: str) -> str:
    marker = ".arch_kwargs."
    if parameter.startswith("configurations.") and marker in parameter:
        return parameter.split(marker, 1)[1]
    return parameter


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 100.0


def _pct_text(share: float) -> str:
    return f"{math.floor(share * 10) / 10:.1f}%"  # rounded down: never 100.0% when a few parameters miss


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
        why = f"it would stop at <code>{_esc(ff.key)}</code>: this tensor is missing in the source"
    else:
        why = (f"it would stop at <code>{_esc(ff.key)}</code>: the source has shape "
               f"<code>{_shape(ff.source_shape)}</code>, the target needs <code>{_shape(ff.target_shape)}</code>")
    return (f'<div class="verdict bad"><b>✗ Incompatible.</b> nnU-Net\'s <code>load_pretrained_weights</code> '
            f"would refuse these weights: {why}.</div>")


_FACTS = (("trainer_name", "trainer"), ("current_epoch", "epoch"), ("fold", "fold"), ("format", "file format"),
          ("container_key", "weights under"), ("network_built_by", "network built by"), ("dataset", "dataset"),
          ("checkpoint", "checkpoint"), ("model_folder", "model folder"), ("folder", "folder"))


def _side_card(role: str, side: t.Any) -> str:
    heads = "unknown (no dataset.json)" if side.segmentation_heads is None else str(side.segmentation_heads)
    rows = [
        ("plans", f"<code>{_esc(side.plans)}</code>"),
        ("configuration", f"<code>{_esc(side.configuration)}</code>"),
        ("network", f"<code>{_esc(side.network_class)}</code>"),
        ("input channels", f"{side.input_channels} <span class=\"muted small\">from {_esc(side.input_channels_from)}"
                           "</span>"),
        ("segmentation heads", _esc(heads)),
        ("kind", _esc(side.kind)),
    ]
    details = getattr(side, "details", None) or {}
    for key, name in _FACTS:
        value = details.get(key)
        if value not in (None, ""):
            rows.append((name, f"<code>{_esc(value)}</code>"))
    body = "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    title = "Source (the pretrained weights)" if role == "source" else "Target (the network to fine-tune)"
    return f'<div class="card"><h3>{title}</h3><dl>{body}</dl></div>'


def _shares(report: Report) -> str:
    s = report.summary
    rows = [("all (head excluded)", s.tensors_loadable, s.tensors_total, s.parameters_loadable, s.parameters_total)]
    rows += [(p.name, p.tensors_loadable, p.tensors_total, p.parameters_loadable, p.parameters_total)
             for p in s.parts]
    body = []
    for name, tl, tt, pl, pt in rows:
        share = _pct(pl, pt)
        body.append(
            f"<tr><td>{_esc(name)}</td><td><span class=\"bar\" aria-hidden=\"true\"><span style=\"width:{share:.1f}%\">"
            f"</span></span><b>{_pct_text(share)}</b> of the parameters</td>"
            f"<td class=\"num\">{pl:,} / {pt:,}</td><td class=\"num\">{tl} / {tt}</td></tr>"
        )
    heads = s.counts.get(Status.HEAD.value, 0)
    note = (f'<p class="small muted">The segmentation head ({heads} tensors) is never loaded: nnU-Net skips it and '
            "trains it anew.</p>") if heads else ""
    return ("<table><thead><tr><th>part</th><th>share that would load</th><th class=\"num\">parameters</th>"
            "<th class=\"num\">tensors</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note)


def _row_cause(row: TensorRow) -> str:
    names = [_short_parameter(c.parameter) for c in row.causes]
    if not names:
        return ""
    return ", ".join(_esc(n) for n in names[:2]) + (f" (+{len(names) - 2} more)" if len(names) > 2 else "")


def _row_html(row: TensorRow, index: int) -> str:
    st = row.status.value
    alias = f' <span class="muted small">(+{row.aliases} alias{"es" if row.aliases != 1 else ""})</span>' \
        if row.aliases else ""
    return (f'<tr data-t="{index}"><td class="tx-{_row_status_class(row)}"><b>{_esc(st)}</b></td>'
            f"<td><code>{_esc(row.key)}</code>{alias}</td><td class=\"mono\">{_shape(row.source_shape)}</td>"
            f"<td class=\"mono\">{_shape(row.target_shape)}</td><td class=\"small\">{_row_cause(row)}</td></tr>")


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


def _side_titles(report: Report, view: _CheckView, role: str) -> tuple[str, str]:
    side = report.source if role == "source" else report.target
    lay = view.layouts[role]
    name = os.path.basename(os.path.dirname(side.plans)) or side.plans
    plans = os.path.basename(side.plans)
    title = f"{'SOURCE' if role == 'source' else 'TARGET'}: {name}"
    levels = "" if lay is None else f", {lay.levels} levels"
    return title, f"{plans} [{side.configuration}] · {side.network_class}{levels} · {side.input_channels} in-ch"


def _depth_note(a: NetworkLayout | None, b: NetworkLayout | None, name_a: str, name_b: str) -> str:
    """Why a depth difference fails the whole decoder: blocks pair by name, decoder stages count from the bottom."""
    if a is None or b is None or a.levels == b.levels:
        return ""
    return (f'<p class="hint"><b>Different depths:</b> {name_a} has {a.levels} levels, {name_b} '
            f"{b.levels}. Weights are matched by name (enc&nbsp;0 with enc&nbsp;0, dec&nbsp;0 with dec&nbsp;0), "
            "and the decoder's stages are numbered from the bottom, so every decoder stage is matched with one "
            "of another resolution level and a different width: the decoder cannot load, while the encoder "
            "stages both networks have can.</p>")


def check_section(report: Report, *, prefix: str = "", heading: str = "h2") -> str:
    """The body of a check's page; ``prefix`` keeps ids unique when one page holds several checks."""
    from plancheck.render.svg import Side, unet_pair_svg

    view = _CheckView(report, prefix)
    h = heading
    out = [f'<div data-scope="{_esc(prefix or "check")}">', _verdict(report)]
    out.append(f'<div class="sides">{_side_card("source", report.source)}{_side_card("target", report.target)}</div>')

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
    left = Side("source", *_side_titles(report, view, "source"), view.layouts["source"], report.source.input_channels)
    right = Side("target", *_side_titles(report, view, "target"), view.layouts["target"], report.target.input_channels)
    if left.layout is None and right.layout is None:
        out.append('<p class="muted">Neither network has an nnU-Net encoder/decoder to draw; every tensor is listed '
                   "below.</p>")
    else:
        out.append(f'<div class="figure">{unet_pair_svg(left, right, view.status_of, prefix=prefix)}</div>')
        out.append(_depth_note(left.layout, right.layout, "the source", "the target"))
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
                f'<tr class="cause" id="{_esc(prefix)}cause-{n}" tabindex="0" data-blocks="{_esc(" ".join(blocks))}" '
                f'data-rows="{rows_attr}"><td><code>{_esc(_short_parameter(rc.cause.parameter))}</code>'
                f'<div class="muted small">{_esc(rc.cause.parameter)}</div></td>'
                f"<td class=\"mono\">{_esc(_value(rc.cause.source))}</td><td class=\"mono\">"
                f"{_esc(_value(rc.cause.target))}</td><td class=\"num\">{rc.tensors}</td>"
                f"<td class=\"num\">{rc.parameters:,}</td><td class=\"small\">{_esc(rc.note)}</td></tr>"
            )
        out.append("</tbody></table>")

    if report.warnings:
        out.append(f"<{h}>Warnings</{h}>")
        out.append('<ul class="plain">' + "".join(f"<li>{_esc(w)}</li>" for w in report.warnings) + "</ul>")
    notes = [*report.source.notes, *report.target.notes, *report.notes]
    if notes:
        out.append(f"<{h}>Notes</{h}>")
        out.append('<ul class="plain small">' + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")

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
            opened = " open" if st.name in ("fails", "missing") else ""
            what = f"{bad} of {len(rows)} tensors do not load" if bad else f"{len(rows)} tensors"
            body = "".join(_row_html(r, view.index[id(r)]) for r in rows)
            out.append(
                f'<details class="tens" id="tensors-{_esc(gid)}"{opened}><summary><span class="sw sw-{st.name} '
                f'tx-{st.name}">{_esc(st.mark)}</span> <b>{role} {_esc(b.label)}</b> <span class="muted small">'
                f"<code>{_esc(b.module)}</code> · {_esc(st.label)} · {what}</span></summary>"
                f"<table>{_TENSOR_HEAD}<tbody>{body}</tbody></table></details>"
            )
    rest = view.unplaced()
    if rest:
        body = "".join(_row_html(r, view.index[id(r)]) for r in rest)
        label = "Tensors outside the drawn blocks" if view.status else "Tensors"
        out.append(f'<details class="tens" open><summary><b>{label}</b> <span class="muted small">{len(rest)} '
                   f"tensors</span></summary><table>{_TENSOR_HEAD}<tbody>{body}</tbody></table></details>")
    out.append("</div>")
    return "\n".join(out)


def _check_page(report: Report) -> str:
    title = "plancheck: " + ("compatible" if report.compatible else "incompatible")
    body = ('<h1>Will the source\'s pretrained weights load into the target\'s network?</h1>'
            '<p class="muted">A check by plancheck of what nnU-Net v2\'s <code>load_pretrained_weights</code> does '
            "with these weights, shape by shape, before any GPU time is spent.</p>\n" + check_section(report))
    return page(title, body)


# --------------------------------------------------------------------------- matrix


def _q(share: float | None) -> str:
    if share is None:
        return ""
    for q, limit in ((5, 1.0), (4, 0.9), (3, 0.75), (2, 0.5), (1, 0.25)):
        if share >= limit:
            return f"q{q}"
    return "q0"


def _share_cell(loadable: int | None, total: int | None) -> str:
    if loadable is None or total is None:
        return '<td class="num" data-v="-1">—</td>'
    share = loadable / total if total else 1.0
    return f'<td class="num {_q(share)}" data-v="{share:.6f}">{_pct_text(100 * share)}</td>'


def _matrix_page(m: t.Any) -> str:
    ok = sum(r.ok for r in m.rows)
    verdict_text = (f"{ok} of {len(m.rows)} targets would load the source's weights"
                    f"{' after --fix' if m.fixed else ' as they are'}.")
    out = ["<h1>One pretrained model, many fine-tuning targets</h1>",
           f'<p class="muted">Source: <code>{_esc(m.source)}</code>. One row per target and configuration: would '
           "nnU-Net's <code>load_pretrained_weights</code> load the source's weights, what share of the encoder, "
           "the decoder and the whole network would load, the main reason when not, and whether "
           "<code>plancheck check --fix</code> can make it load by rewriting the target's plans.</p>",
           f'<div class="verdict {"good" if ok == len(m.rows) else "bad"}"><b>{_esc(verdict_text)}</b></div>',
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
        name = _esc(_short_path(r.target))
        target = (f'<a href="#{anchor}" title="{_esc(r.target)}">{name}</a>' if report is not None
                  else f'<span title="{_esc(r.target)}">{name}</span>')
        total = report.summary if report is not None else None
        note = r.error or r.fix_note or ""
        out.append(
            f'<tr><td data-v="{verdict}"><span class="pill {cls}">{verdict}</span></td>'
            f'<td data-v="{_esc(r.target)}"><code>{target}</code> <span class="muted small">'
            f"[{_esc(r.configuration)}]</span></td>"
            + _share_cell(enc and enc.parameters_loadable, enc and enc.parameters_total)
            + _share_cell(dec and dec.parameters_loadable, dec and dec.parameters_total)
            + (_share_cell(total.parameters_loadable, total.parameters_total) if total is not None else
               _share_cell(None, None))
            + f"<td>{_esc(r.main_cause or '—')}"
            + (f'<div class="muted small">{_esc(note)}</div>' if note else "")
            + f"</td><td>{fix}</td></tr>"
        )
        if report is not None:
            details.append(f'<section class="pair" id="{anchor}"><h2>{i + 1}. <code>{_esc(r.target)}</code> '
                           f"[{_esc(r.configuration)}]</h2>{check_section(report, prefix=f'p{i}-', heading='h3')}"
                           '<p class="small noprint"><a href="#top">back to the table</a></p></section>')
    out.append("</tbody></table></div>")
    out.append('<p class="small muted">Shares are of the parameters that would load, the segmentation head '
               "excluded, rounded down. Cell colours: green at 100%, then yellow to red as less of the part would "
               "load.</p>")
    if m.notes:
        out.append('<ul class="plain small">' + "".join(f"<li>{_esc(n)}</li>" for n in m.notes) + "</ul>")
    out.extend(details)
    return page("plancheck matrix", '<a id="top"></a>' + "\n".join(out))


# --------------------------------------------------------------------------- diff


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


def _diff_page(d: t.Any) -> str:
    from plancheck.network.layout import layout_of_architecture
    from plancheck.compare.plansdiff import display_path
    from plancheck.render.svg import Side, unet_pair_svg

    blocking = d.has_blocking
    out = ["<h1>Two plans files compared</h1>",
           f'<p class="muted">A: <code>{_esc(d.a)}</code><br>B: <code>{_esc(d.b)}</code></p>']
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
        out.append(f"<h2>Architecture: A [{_esc(ca)}] and B [{_esc(cb)}]</h2>")
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
        out.append(_depth_note(la, lb, "A", "B"))  # "A has 6 levels, B 4"
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
        out.append(f"<h3>{_esc(cat.value)} <span class=\"muted small\">({len(changes)}): "
                   f"{_esc(explain.get(cat.value, ''))}</span></h3>")
        out.append("<table><thead><tr><th>field</th><th>A</th><th>B</th><th>note</th></tr></thead><tbody>")
        for c in changes:
            out.append(f"<tr><td><code>{_esc(display_path(c))}</code></td><td class=\"mono\">"
                       f"{_esc(_short(c.source))}</td><td class=\"mono\">{_esc(_short(c.target))}</td>"
                       f"<td class=\"small\">{_esc(c.note)}</td></tr>")
        out.append("</tbody></table>")
    if d.notes:
        out.append("<h2>Notes</h2>")
        out.append('<ul class="plain small">' + "".join(f"<li>{_esc(n)}</li>" for n in d.notes) + "</ul>")
    return page("plancheck diff", "\n".join(out))


def _short_path(path: str) -> str:
    """``…/Dataset902_CTAnisotropic/nnUNetPlans.json`` for a table cell (the full path is in its title)."""
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else path


def _short(value: Json, width: int = 90) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- transfer

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
    return (f'<td class="tx-{_ACTION_STATUS.get(action, "unknown")}" data-v="{_esc(action)}"><b>{_esc(action)}</b>'
            + (f'<div class="small mono">{_esc(detail)}</div>' if detail else "") + "</td>")


def _plan_row(row: t.Any, index: int) -> str:
    alias = (f' <span class="muted small">(+{len(row.keys) - 1} alias{"es" if len(row.keys) != 2 else ""})</span>'
             if len(row.keys) > 1 else "")
    if row.source_key is None:
        source = '<span class="muted">—</span>'
    elif row.source_key == row.key:
        source = '<span class="muted small">same key</span>'
    else:
        source = f"<code>{_esc(row.source_key)}</code>"
    return (f'<tr data-t="{index}">{_action_cell(row)}<td><code>{_esc(row.key)}</code>{alias}</td><td>{source}</td>'
            f'<td class="mono">{_shape(row.source_shape)}</td><td class="mono">{_shape(row.target_shape)}</td></tr>')


_PLAN_HEAD = ("<thead><tr><th>action</th><th>target key</th><th>source key</th><th>source shape</th>"
              "<th>target shape</th></tr></thead>")
_SOURCE_HEAD = ("<thead><tr><th>carried over as</th><th>source key</th><th>into target key</th><th>source shape</th>"
                "<th>target shape</th></tr></thead>")


def _source_rows(view: _TransferView, block: Block) -> str:
    out = []
    for k in block.keys:
        fed = view.fed.get(k, [])
        check_row = view.check_rows.get(k)
        shape = _shape(None if check_row is None else check_row.source_shape)
        if not fed:
            out.append(f'<tr><td class="tx-unused"><b>not carried over</b></td><td><code>{_esc(k)}</code></td>'
                       f'<td class="muted">—</td><td class="mono">{shape}</td><td class="mono">—</td></tr>')
        for r in fed:
            out.append(f'<tr>{_action_cell(r)}<td><code>{_esc(k)}</code></td><td><code>{_esc(r.key)}</code></td>'
                       f'<td class="mono">{_shape(r.source_shape)}</td><td class="mono">{_shape(r.target_shape)}'
                       "</td></tr>")
    return "".join(out)


def _transfer_shares(plan: t.Any) -> str:
    body = []
    rows = [("all (head excluded)", plan.parameters_carried, plan.parameters_total, None)]
    rows += [(str(p.part), p.parameters_carried, p.parameters_total, p) for p in plan.parts]
    for name, carried, total, p in rows:
        share = _pct(carried, total) if total else 0.0
        if p is None:
            counts = plan.counts()
            copied, adapted, init = counts.get("copied", 0), counts.get("adapted", 0), counts.get("initialised", 0)
        else:
            copied, adapted = p.tensors_copied, p.tensors_adapted
            init = p.tensors_total - copied - adapted
        body.append(
            f"<tr><td>{_esc(name)}</td><td><span class=\"bar\" aria-hidden=\"true\"><span style=\"width:{share:.1f}%\">"
            f"</span></span><b>{_pct_text(share)}</b> of the parameters</td>"
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
    share = _pct_text(100.0 * plan.share)
    if plan.refused or plan.parameters_carried == 0:
        why = plan.refused or "no source tensor fits the target's network under this strategy"
        return (f'<div class="verdict bad"><b>✗ Nothing carried over.</b> {_esc(why)}. No checkpoint was written '
                "(exit 1).</div>")
    if result.dry_run:
        done = "Dry run: nothing was written."
    elif result.written and result.verified:
        done = (f"Written to <code>{_esc(result.out)}</code>, read back and checked against the target's network "
                "(every key and shape).")
    else:
        done = "Not written."
    return (f'<div class="verdict good"><b>✓ {share} of the parameters come from the source</b> '
            f"({plan.parameters_carried:,} of {plan.parameters_total:,}, the head not counted; strategy "
            f"<code>{_esc(plan.strategy)}</code>). {done}</div>")


def transfer_section(result: t.Any, *, prefix: str = "", heading: str = "h2") -> str:
    """The body of a transfer's page: what was carried over, both networks coloured by it, every tensor."""
    from plancheck.render.svg import Side, unet_pair_svg

    view = _TransferView(result, prefix)
    report = result.check
    h = heading
    out = [f'<div data-scope="{_esc(prefix or "transfer")}">', _transfer_verdict(result)]
    compat = ("would load these weights as they are" if report.compatible else
              "would refuse these weights as they are (the checkpoint written here is what makes them load)")
    out.append(f'<p class="small muted">Without the transfer, nnU-Net\'s <code>load_pretrained_weights</code> '
               f"{compat}.</p>")
    out.append(f'<div class="sides">{_side_card("source", report.source)}{_side_card("target", report.target)}</div>')
    out.append(f"<{h}>What was carried over</{h}>")
    out.append(_transfer_shares(result.plan))
    out.append(f"<{h}>Next: fine-tune with nnU-Net</{h}>")
    out.append(f"<pre class=\"card mono\" style=\"white-space:pre-wrap\">{_esc(result.command)}</pre>")

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
    left = Side("source", *_side_titles(report, view, "source"), view.layouts["source"], report.source.input_channels)
    right = Side("target", *_side_titles(report, view, "target"), view.layouts["target"], report.target.input_channels)
    if left.layout is None and right.layout is None:
        out.append('<p class="muted">Neither network has an nnU-Net encoder/decoder to draw; every tensor is listed '
                   "below.</p>")
    else:
        out.append(f'<div class="figure">{unet_pair_svg(left, right, view.status_of, prefix=prefix)}</div>')
        out.append('<p class="hint noprint">Select a block to list its tensors: for a target block, where each '
                   "tensor came from; for a source block, where each of its tensors went.</p>")

    if result.warnings:
        out.append(f"<{h}>Warnings</{h}>")
        out.append('<ul class="plain">' + "".join(f"<li>{_esc(w)}</li>" for w in result.warnings) + "</ul>")
    if result.notes:
        out.append(f"<{h}>Notes</{h}>")
        out.append('<ul class="plain small">' + "".join(f"<li>{_esc(n)}</li>" for n in result.notes) + "</ul>")

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
            opened = " open" if role == "target" and st.name in ("adapted", "partly", "initialised") else ""
            label = TRANSFER_LABELS.get(st.name, st.label)
            out.append(
                f'<details class="tens" id="tensors-{_esc(gid)}"{opened}><summary><span class="sw sw-{st.name} '
                f'tx-{st.name}">{_esc(st.mark)}</span> <b>{role} {_esc(b.label)}</b> <span class="muted small">'
                f"<code>{_esc(b.module)}</code> · {_esc(label)} · {what}</span></summary>{table}</tbody></table>"
                "</details>"
            )
    rest = view.unplaced()
    if rest:
        body = "".join(_plan_row(r, view.index[id(r)]) for r in rest)
        label = "Tensors outside the drawn blocks" if view.status else "Tensors"
        out.append(f'<details class="tens" open><summary><b>{label}</b> <span class="muted small">{len(rest)} '
                   f"tensors</span></summary><table>{_PLAN_HEAD}<tbody>{body}</tbody></table></details>")
    out.append("</div>")
    return "\n".join(out)


def _transfer_page(result: t.Any) -> str:
    body = ("<h1>Pretrained weights carried over into the target's own network</h1>"
            '<p class="muted"><code>plancheck transfer</code> keeps the target\'s plans and writes a checkpoint for '
            "the network nnU-Net builds from them: every source tensor that fits is copied or adapted, the rest "
            "keeps nnU-Net's initialisation.</p>\n" + transfer_section(result))
    return page("plancheck transfer", body)


# --------------------------------------------------------------------------- verify


def _verify_page(result: t.Any) -> str:
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
        out.append(f'<div class="verdict {cls}"><b>{mark}:</b> {what} on <code>{_esc(result.device)}</code> '
                   f"({_esc(result.configuration)}, {_esc(result.trainer)}, batch {_esc(result.batch_size)}, patch "
                   f"{_esc(list(result.patch_size or ()))}, AMP {'on' if result.amp else 'off'}).</div>")
        w = result.weights
        if w is not None:
            if w.loaded:
                text = (f"Loaded by nnU-Net's <code>load_pretrained_weights</code>; {w.tensors_equal} of "
                        f"{w.tensors_checked} tensors hold the source's values after loading (heads excluded).")
            else:
                text = f"<b>Not loaded:</b> {_esc(w.message)}"
            out.append(f"<p><b>Weights.</b> {text} <span class=\"muted small\">From {_esc(w.weights_from)}."
                       "</span></p>")
        m = result.measurement
        if m is not None:
            out.append("<h2>Training steps</h2>")
            if m.out_of_memory:
                out.append(f'<div class="verdict bad"><b>Out of memory</b> after {m.iterations} iteration(s): '
                           f"{_esc(m.out_of_memory)}</div>")
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
                out.append(f'<p class="small">The loss is {finite}; it {trend}. Device: {_esc(m.device_name)}.'
                           "</p>")
        if result.expected_seconds is not None:
            out.append(f'<p class="small">Expected before the run: about {seconds_text(result.expected_seconds)}.</p>')
        mem = memory_rows(result)
        if mem:
            out.append("<h2>Memory: measured, predicted, nnU-Net's estimate</h2>")
            out.append("<table><thead><tr><th>what</th><th>value</th></tr></thead><tbody>"
                       + "".join(f"<tr><td>{_esc(k)}</td><td class=\"mono\">{_esc(v)}</td></tr>" for k, v in mem)
                       + "</tbody></table>")
            if result.nnunet_estimate is not None and result.nnunet_estimate.estimate is not None:
                out.append('<p class="small muted">nnU-Net\'s estimate is not in bytes: its planner compares '
                           "<code>compute_conv_feature_map_size</code> (feature-map elements) with a reference that "
                           "stands for its GPU memory target; <i>implied</i> turns it into bytes by that same "
                           "proportion.</p>")
        if result.gpu_memory is not None:
            fits = {True: "yes", False: "no", None: "unknown"}[result.fits]
            out.append(f"<p><b>Fits in --gpu-memory {result.gpu_memory / GiB:g} GiB: {fits}</b> (compared: "
                       f"{_esc(bytes_text(result.memory_compared))}).</p>")
        if result.warnings:
            out.append("<h2>Warnings</h2>")
            out.append('<ul class="plain">' + "".join(f"<li>{_esc(x)}</li>" for x in result.warnings) + "</ul>")
        notes = [*result.notes, *(result.prediction.notes if result.prediction else ()),
                 *(result.nnunet_estimate.notes if result.nnunet_estimate else ())]
        if notes:
            out.append("<h2>Notes</h2>")
            out.append('<ul class="plain small">' + "".join(f"<li>{_esc(x)}</li>" for x in notes) + "</ul>")
    out.append('<h2>The check that came first</h2>')
    out.append(check_section(report, heading="h3"))
    title = "plancheck verify: " + ("not run" if not report.compatible else "ok" if result.ok else "failed")
    return page(title, "\n".join(out))


# --------------------------------------------------------------------------- pytest plugin


def section_prefix(*parts: str) -> str:
    """A short id prefix, unique per check of a pytest session (made on the worker, used on the controller)."""
    return "c" + hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10] + "-"


def pytest_page(results: t.Sequence[t.Mapping[str, Json]], not_collected: t.Sequence[t.Mapping[str, str]] = ()) -> str:
    """The ``--plancheck-report FILE.html`` page: a table of every check, each linked to its section."""
    outcomes = [r["outcome"] for r in results]
    out = ["<h1>plancheck: the checks of this test session</h1>",
           f'<p class="muted">{len(results)} check{"s" if len(results) != 1 else ""}: '
           f"{outcomes.count('compatible')} compatible, {outcomes.count('incompatible')} incompatible, "
           f"{outcomes.count('error')} errors.</p>"]
    if results:
        out.append('<table><thead><tr><th data-sort="text">outcome</th><th data-sort="text">check</th>'
                   '<th data-sort="text">test</th><th>first failure</th></tr></thead><tbody>')
        for n, r in enumerate(results):
            cls = {"compatible": "good", "incompatible": "bad"}.get(r["outcome"], "other")
            report = r.get("report") or {}
            ff = report.get("nnunet_first_failure") or {}
            detail = f"{ff.get('key')} ({ff.get('reason')})" if ff else (r.get("error") or "")
            name = _esc(r["id"])
            link = f'<a href="#check-{n}">{name}</a>' if r.get("html") else name
            out.append(f'<tr><td><span class="pill {cls}">{_esc(r["outcome"])}</span></td><td><code>{link}</code></td>'
                       f"<td class=\"small\"><code>{_esc(r.get('nodeid', ''))}</code></td>"
                       f"<td class=\"small\"><code>{_esc(detail)}</code></td></tr>")
        out.append("</tbody></table>")
    if not_collected:
        out.append("<h2>Not collected (configuration missing)</h2><ul class=\"plain\">"
                   + "".join(f"<li><code>{_esc(e['name'])}</code>: {_esc(e['reason'])}</li>" for e in not_collected)
                   + "</ul>")
    for n, r in enumerate(results):
        if r.get("html"):
            out.append(f'<section class="pair" id="check-{n}"><h2><code>{_esc(r["id"])}</code></h2>{r["html"]}'
                       '<p class="small noprint"><a href="#top">back to the table</a></p></section>')
    return page("plancheck report", '<a id="top"></a>' + "\n".join(out))


# --------------------------------------------------------------------------- registration

for _record, _page in ((Report, _check_page), (Matrix, _matrix_page), (PlansDiff, _diff_page),
                       (TransferResult, _transfer_page), (VerifyResult, _verify_page)):
    register(_record, HTML)(lambda result, verbose, _page=_page: _page(result))
