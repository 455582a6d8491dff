"""The pages in a real browser: headless Chromium opens each kind of page made from the fixtures.

Pages of check, diff, matrix, plan-pretraining, compare, transfer, verify and the pytest plugin. For
each page: no console message (errors included), the inline script ran, the DOM after rendering holds
every stage of both networks, a root cause or block selected by ``#select=`` is highlighted, and the screenshot
is not blank. Screenshots stay in ``.bench/screenshots/``.

``make test-browser`` runs these (``.ci/run`` installs Debian's chromium first); plain
``make test`` runs them when a Chromium is found and otherwise says so in one line
(see conftest.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT, fixture, load
from pngcolours import distinct_colours, pixel

pytestmark = pytest.mark.browser

SHOTS = ROOT / ".bench" / "screenshots"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0")

CHECKS = {
    "check-anisotropic": ("Dataset901_CTIsotropic", "Dataset902_CTAnisotropic", "nnUNetPlans"),
    "check-depth-resenc": ("Dataset901_CTIsotropic", "Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans"),
    "check-small-images": ("Dataset901_CTIsotropic", "Dataset906_SmallImages", "nnUNetPlans"),
    "check-channels": ("Dataset901_CTIsotropic", "Dataset904_BrainMRI", "nnUNetPlans"),
    "check-compatible": ("Dataset901_CTIsotropic", "Dataset907_CTIsotropicOther", "nnUNetPlans"),
}
MATRIX_TARGETS = ("Dataset902_CTAnisotropic", "Dataset903_ProstateMRI", "Dataset904_BrainMRI",
                  "Dataset906_SmallImages", "Dataset907_CTIsotropicOther", "Dataset908_CTIsotropicCropped")


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class Browser:
    def __init__(self, exe: str, profile) -> None:
        self.exe = exe
        self.profile = profile

    def run(self, url: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.exe, *FLAGS, f"--user-data-dir={self.profile}", *extra, url],
                              capture_output=True, text=True, timeout=180)

    def dom(self, path, fragment: str = "") -> str:
        proc = self.run(path.as_uri() + fragment, "--dump-dom")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert console_lines(proc.stderr) == [], console_lines(proc.stderr)
        return proc.stdout

    def screenshot(self, path, out, *extra: str, height: int = 2200) -> bytes:
        proc = self.run(path.as_uri(), f"--screenshot={out}", f"--window-size=1280,{height}", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert console_lines(proc.stderr) == [], console_lines(proc.stderr)
        return out.read_bytes()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Browser:
    exe = chromium()
    assert exe is not None, "no Chromium: `make test-browser` needs one (.ci/run installs Debian's chromium)"
    return Browser(exe, tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict:
    """Every kind of page, written by the CLI from the fixtures; and the reports behind the check pages."""
    from plancheck import check
    from plancheck.cli import main

    folder = tmp_path_factory.mktemp("pages")
    out: dict = {}
    for name, (a, b, plans) in CHECKS.items():
        path = folder / f"{name}.html"
        with pytest.raises(SystemExit):
            main(["check", str(fixture(a, plans)), str(fixture(b, plans)), "--html", str(path)])
        out[name] = (path, check(fixture(a, plans), fixture(b, plans)))
    path = folder / "diff-anisotropic.html"
    with pytest.raises(SystemExit):
        main(["diff", str(fixture("Dataset901_CTIsotropic")), str(fixture("Dataset902_CTAnisotropic")),
              "-c", "3d_fullres", "--html", str(path)])
    out["diff-anisotropic"] = (path, None)
    path = folder / "matrix-six-targets.html"
    with pytest.raises(SystemExit):
        main(["matrix", str(fixture("Dataset901_CTIsotropic")), *(str(fixture(t)) for t in MATRIX_TARGETS),
              "-q", "--html", str(path)])
    out["matrix-six-targets"] = (path, None)
    path = folder / "plan-pretraining.html"
    with pytest.raises(SystemExit):
        main(["plan-pretraining", str(fixture("Dataset901_CTIsotropic")), *(str(fixture(t)) for t in MATRIX_TARGETS),
              "--max-pretrainings", "1", "--dry-run", "-q", "--html", str(path)])
    out["plan-pretraining"] = (path, None)
    from test_compare import make_results

    _, arms = make_results(tmp_path_factory.mktemp("compare"))
    path = folder / "compare.html"
    with pytest.raises(SystemExit):
        main(["compare", *(f"{name}={arm}" for name, arm in arms.items()), "--html", str(path)])
    out["compare"] = (path, None)
    # the pytest plugin's page, as write_report makes it from what the workers recorded
    from plancheck.pytest_plugin import write_report
    from plancheck.render.html import check_section, section_prefix

    records = []
    for name in ("check-anisotropic", "check-compatible"):
        report = out[name][1]
        records.append({"id": name, "nodeid": f"tests/test_x.py::{name}", "outcome":
                        "compatible" if report.compatible else "incompatible", "report": report.to_dict(),
                        "html": check_section(report, prefix=section_prefix(name), heading="h3")})
    path = folder / "pytest-report.html"
    write_report(path, records)
    out["pytest-report"] = (path, records)
    # transfer (a real checkpoint of Dataset906's network into Dataset902's: depth +2, other kernels) and verify
    import torch

    import nnunet_oracle as oracle
    from plancheck.transfer import transfer

    small = fixture("Dataset906_SmallImages")
    plans, dj = load(small), load(small.parent / "dataset.json")
    torch.manual_seed(0)
    ckpt = folder / "checkpoint_final.pth"
    torch.save(oracle.nnunet_checkpoint(oracle.build_real(plans, "3d_fullres", dj), plans, dj, "3d_fullres"), ckpt)
    target = fixture("Dataset902_CTAnisotropic")
    path = folder / "transfer-depth.html"
    with pytest.raises(SystemExit):
        main(["transfer", str(ckpt), str(target), "-o", str(folder / "transferred.pth"), "--html", str(path)])
    out["transfer-depth"] = (path, transfer(ckpt, target, dry_run=True))
    path = folder / "verify-cpu.html"
    with pytest.raises(SystemExit):
        main(["verify", str(small), str(small), "-c", "2d", "--patch-size", "0", "32", "32", "--batch-size", "2",
              "--iterations", "3", "--html", str(path)])
    out["verify-cpu"] = (path, check(small, small, configuration="2d"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    return out


def test_console_messages_are_caught(browser, tmp_path):
    """The detector this file relies on: a page that throws shows up as a console line."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>")
    proc = browser.run(bad.as_uri(), "--dump-dom")
    assert any("Uncaught Error: boom" in line for line in console_lines(proc.stderr))


@pytest.mark.parametrize("name", list(CHECKS))
def test_check_page_in_the_browser(browser, pages, name):
    path, report = pages[name]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom  # the inline script ran to its end
    drawn = set(re.findall(r'<g id="((?:source|target)-[a-z]+\d*)" class="blk st-(\w+)', dom))
    expected = {(f"{role}-{b.id}") for role, lay in (("source", report.layout.source),
                                                     ("target", report.layout.target)) for b in lay.blocks}
    assert {gid for gid, _ in drawn} == expected
    png = browser.screenshot(path, SHOTS / f"{name}.png")
    assert distinct_colours(png) > 50, "the screenshot is (nearly) blank"
    if report.root_causes:
        selected = browser.dom(path, "#select=cause-0")
        cause = re.search(r'<tr class="cause on" id="cause-0" tabindex="0" data-blocks="([^"]*)"', selected)
        assert cause is not None
        highlighted = set(re.findall(r'<g id="([^"]+)" class="blk st-\w+ hl"', selected))
        assert highlighted == set(cause.group(1).split()) and highlighted
    else:
        assert report.compatible and {status for _, status in drawn} <= {"loads", "head"}


def test_dark_scheme(browser, pages):
    """The same page under prefers-color-scheme: dark has a dark background."""
    path, _ = pages["check-anisotropic"]
    png = browser.screenshot(path, SHOTS / "check-anisotropic-dark.png", "--force-dark-mode",
                             "--blink-settings=preferredColorScheme=0", height=900)
    light = browser.screenshot(path, SHOTS / "check-anisotropic-light-top.png", height=900)
    assert sum(pixel(png, 5, 5)) < 150 and sum(pixel(light, 5, 5)) > 600


def test_diff_page_in_the_browser(browser, pages):
    path, _ = pages["diff-anisotropic"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    assert len(re.findall(r'<g id="c0-a-enc\d"', dom)) == 6 and len(re.findall(r'<g id="c0-b-enc\d"', dom)) == 6
    assert re.search(r'<g id="c0-b-enc0" class="blk st-fails"', dom)
    png = browser.screenshot(path, SHOTS / "diff-anisotropic.png")
    assert distinct_colours(png) > 50


def test_matrix_page_in_the_browser(browser, pages):
    path, _ = pages["matrix-six-targets"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    rows = re.findall(r'<a href="#(pair-\d)"', dom)
    assert rows == [f"pair-{i}" for i in range(6)]
    for anchor in rows:
        assert f'id="{anchor}"' in dom and re.search(rf'<g id="p{anchor[-1]}-target-enc0" class="blk', dom)
    png = browser.screenshot(path, SHOTS / "matrix-six-targets.png", height=1000)
    assert distinct_colours(png) > 50


def test_plan_pretraining_page_in_the_browser(browser, pages):
    path, _ = pages["plan-pretraining"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    groups = re.findall(r'<section class="pair" id="(group-3d_fullres-\d+)"', dom)
    links = set(re.findall(r'<a href="#(group-3d_fullres-\d+)">', dom))
    assert groups and links and links <= set(groups)  # every target's group link lands on a group card
    assert dom.count("<tr><td data-v=") == len(MATRIX_TARGETS)
    png = browser.screenshot(path, SHOTS / "plan-pretraining.png", height=1200)
    assert distinct_colours(png) > 20


def test_compare_page_in_the_browser(browser, pages):
    path, _ = pages["compare"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    assert dom.count('class="bar-arm"') == 3 * 2  # three arms, two classes
    assert dom.count('<svg class="strip"') == 2 and dom.count('class="case"') == 2 * 8  # two pairs, eight cases
    png = browser.screenshot(path, SHOTS / "compare.png", height=1100)
    assert distinct_colours(png) > 20


def test_pytest_report_page_in_the_browser(browser, pages):
    path, records = pages["pytest-report"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    assert re.findall(r'<a href="#(check-\d)"', dom) == ["check-0", "check-1"]
    assert len(re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" class="unet"', dom)) == 2
    png = browser.screenshot(path, SHOTS / "pytest-report.png", height=1000)
    assert distinct_colours(png) > 50


def test_check_page_prints(browser, pages, tmp_path):
    """Printing (headless Chromium's print-to-PDF) gives a document of several pages."""
    path, _ = pages["check-anisotropic"]
    pdf = tmp_path / "check.pdf"
    proc = browser.run(path.as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 2


def test_transfer_page_in_the_browser(browser, pages):
    """Every block of both networks drawn with the status the page was written with; a block selected by
    ``#select=`` opens its tensor list."""
    path, result = pages["transfer-depth"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    drawn = dict(re.findall(r'<g id="((?:source|target)-[a-z]+\d*)" class="blk st-(\w+)"', dom))
    layout = result.check.layout
    assert set(drawn) == {f"{role}-{b.id}" for role, lay in (("source", layout.source), ("target", layout.target))
                          for b in lay.blocks}
    actions = {r.action.value for r in result.plan.tensors}
    assert {"copied", "adapted", "initialised", "head"} <= actions
    assert {"copied", "adapted", "initialised", "head"} <= set(drawn.values())
    assert "Written to " in dom and "read back and checked" in dom
    deepest = f"target-enc{layout.target.levels - 1}"
    assert drawn[deepest] == "initialised"  # no source stage at that level
    selected = browser.dom(path, f"#select={deepest}")
    assert re.search(rf'<g id="{deepest}" class="blk st-initialised sel"', selected)
    assert re.search(rf'<details class="tens sel" id="tensors-{deepest}" open="">', selected)
    png = browser.screenshot(path, SHOTS / "transfer-depth.png", height=2600)
    assert distinct_colours(png) > 50


def test_verify_page_in_the_browser(browser, pages):
    path, report = pages["verify-cpu"]
    dom = browser.dom(path)
    assert '<html lang="en" data-ready="1">' in dom
    assert "✓ OK:" in dom and "<h2>Training steps</h2>" in dom and "<h2>Memory: measured, predicted" in dom
    assert len(re.findall(r'<tr><td class="num">\d</td><td class="num">[0-9.]+</td>', dom)) == 3
    drawn = set(re.findall(r'<g id="((?:source|target)-[a-z]+\d*)" class="blk st-(?:loads|head)"', dom))
    assert drawn == {f"{role}-{b.id}" for role, lay in (("source", report.layout.source),
                                                        ("target", report.layout.target)) for b in lay.blocks}
    png = browser.screenshot(path, SHOTS / "verify-cpu.png", height=1600)
    assert distinct_colours(png) > 50
