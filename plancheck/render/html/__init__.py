"""Self-contained HTML pages: ``--html FILE`` of check, diff, matrix, transfer and verify, and the pytest plugin's
report.

One page is one file: inline CSS, inline SVG (:mod:`plancheck.render.svg`) and a little
inline script (select a stage or a root cause; sort a table). Nothing is loaded from
anywhere else: no fonts, images, styles or scripts. Without the script every tensor list
is still on the page (``<details>``), and printing opens them. Colours follow the
reader's light or dark scheme (``prefers-color-scheme``); statuses, colours and legend
lines come from :mod:`plancheck.render.vocabulary`.

:mod:`~plancheck.render.html.page` holds the frame, the CSS, the script and the widgets several
pages share; each page has a module of its own (:mod:`~plancheck.render.html.check`,
:mod:`~plancheck.render.html.diff`, :mod:`~plancheck.render.html.matrix`, :mod:`~plancheck.render.html.pretraining`,
:mod:`~plancheck.render.html.results` (compare),
:mod:`~plancheck.render.html.transfer`, :mod:`~plancheck.render.html.verify`,
:mod:`~plancheck.render.html.pytest_report`), which registers it. A new record gets its page as
it gets any renderer, in the one registry (:func:`plancheck.render.registry.register` with the
``html`` format), in a module of its own imported here::

    @register(MyResult, HTML)
    def my_page(result, verbose) -> str:
        return page("plancheck mine", body)

The records import no torch, so importing this package registers every page without importing any engine.

Renderers read the frozen records; nothing here runs a check.
"""

from __future__ import annotations

from plancheck.render.html.page import (
    CSS,
    GENERATOR,
    SCRIPT,
    check_html_path,
    html_page,
    is_plancheck_page,
    legend,
    page,
    write_html,
)
from plancheck.render.html.check import check_page, check_section
from plancheck.render.html.diff import diff_page
from plancheck.render.html.matrix import matrix_page
from plancheck.render.html.pretraining import pretraining_page
from plancheck.render.html.results import compare_page
from plancheck.render.html.pytest_report import pytest_page, section_prefix
from plancheck.render.html.transfer import transfer_page, transfer_section
from plancheck.render.html.verify import verify_page

__all__ = [
    "CSS",
    "GENERATOR",
    "SCRIPT",
    "check_html_path",
    "check_page",
    "check_section",
    "compare_page",
    "diff_page",
    "html_page",
    "is_plancheck_page",
    "legend",
    "matrix_page",
    "pretraining_page",
    "page",
    "pytest_page",
    "section_prefix",
    "transfer_page",
    "transfer_section",
    "verify_page",
    "write_html",
]
