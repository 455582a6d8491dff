"""The pytest plugin's report page (``--plancheck-report FILE.html``): every check of a test session.

A sortable table of the checks (outcome, check, test, the first failure), the configured checks
that were not collected, then each check's section as the workers rendered it
(:func:`plancheck.render.html.check.check_section` with a :func:`section_prefix` of its own, so
that ids stay unique across the page).
"""

from __future__ import annotations

import hashlib
import typing as t

from plancheck.render.html.page import Json, esc, page

__all__ = ["pytest_page", "section_prefix"]


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
            name = esc(r["id"])
            link = f'<a href="#check-{n}">{name}</a>' if r.get("html") else name
            out.append(f'<tr><td><span class="pill {cls}">{esc(r["outcome"])}</span></td><td><code>{link}</code></td>'
                       f"<td class=\"small\"><code>{esc(r.get('nodeid', ''))}</code></td>"
                       f"<td class=\"small\"><code>{esc(detail)}</code></td></tr>")
        out.append("</tbody></table>")
    if not_collected:
        out.append("<h2>Not collected (configuration missing)</h2><ul class=\"plain\">"
                   + "".join(f"<li><code>{esc(e['name'])}</code>: {esc(e['reason'])}</li>" for e in not_collected)
                   + "</ul>")
    for n, r in enumerate(results):
        if r.get("html"):
            out.append(f'<section class="pair" id="check-{n}"><h2><code>{esc(r["id"])}</code></h2>{r["html"]}'
                       '<p class="small noprint"><a href="#top">back to the table</a></p></section>')
    return page("plancheck report", '<a id="top"></a>' + "\n".join(out))
