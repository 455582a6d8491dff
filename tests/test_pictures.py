"""The pictures: the U-Net layout, the SVG/HTML pages of check, diff and matrix, the Mermaid diagram.

The layout is checked against the plans nnU-Net built the networks from (n_stages,
features_per_stage, kernel_sizes, strides, convolutions or blocks per stage); block statuses
are checked against the report's rows, gathered here by module path independently of the
renderer; the pages are checked to be well-formed and self-contained.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, fixture, load

SVG = "{http://www.w3.org/2000/svg}"

PAIRS = {
    "anisotropic": ("Dataset901_CTIsotropic", "Dataset902_CTAnisotropic", "nnUNetPlans"),
    "depth-resenc": ("Dataset901_CTIsotropic", "Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans"),
    "small-images": ("Dataset901_CTIsotropic", "Dataset906_SmallImages", "nnUNetPlans"),
    "channels": ("Dataset901_CTIsotropic", "Dataset904_BrainMRI", "nnUNetPlans"),
    "compatible": ("Dataset901_CTIsotropic", "Dataset907_CTIsotropicOther", "nnUNetPlans"),
}

_REPORTS: dict[str, object] = {}


def report_of(name: str):
    if name not in _REPORTS:
        from plancheck import check

        a, b, plans = PAIRS[name]
        _REPORTS[name] = check(fixture(a, plans), fixture(b, plans))
    return _REPORTS[name]


def svgs_of(page: str) -> list[ET.Element]:
    found = re.findall(r"<svg xmlns=.*?</svg>", page, flags=re.S)
    assert found, "no SVG on the page"
    return [ET.fromstring(s) for s in found]  # well-formed XML, or ParseError


def blocks_of(svg: ET.Element) -> dict[str, ET.Element]:
    return {g.get("id"): g for g in svg.iter(f"{SVG}g") if "blk" in (g.get("class") or "").split()}


def assert_self_contained(page: str) -> None:
    without_ns = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://", without_ns), "a URL on the page"
    assert not re.search(r"\bsrc\s*=", page, flags=re.I), "src= on the page"
    assert "@import" not in page and "@font-face" not in page
    assert not re.search(r"<link\b", page, flags=re.I)
    assert not re.search(r"url\((?!#)", page), "url() that is not a fragment"
    assert page.count("<script>") == 1 and len(page.split("<script>")[1].split("</script>")[0]) < 6000


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize(("dataset", "plans"), [
    ("Dataset901_CTIsotropic", "nnUNetPlans"),
    ("Dataset902_CTAnisotropic", "nnUNetPlans"),
    ("Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans"),
    ("Dataset906_SmallImages", "nnUNetResEncUNetMPlans"),
])
def test_layout_follows_the_plans(dataset, plans):
    """Stages, levels, features, kernels, strides and repeats as nnU-Net's plans give them."""
    from plancheck.check import load_side
    from plancheck.network.build import network_layout
    from plancheck.network.layout import layout_of_architecture

    path = fixture(dataset, plans)
    side = load_side("target", path, "3d_fullres")
    layout = network_layout(side.spec)
    assert layout is not None
    kw = load(path)["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    n = kw["n_stages"]
    assert layout.levels == n
    enc = layout.of_kind("encoder")
    assert [b.level for b in enc] == list(range(n))
    assert [b.features for b in enc] == kw["features_per_stage"]
    assert [list(b.kernel) for b in enc] == kw["kernel_sizes"]
    assert [list(b.stride) for b in enc] == kw["strides"]
    if "n_blocks_per_stage" in kw:
        assert [(b.repeats, b.unit) for b in enc] == [(r, "block") for r in kw["n_blocks_per_stage"]]
        assert len(layout.of_kind("stem")) == 1
    else:
        assert [(b.repeats, b.unit) for b in enc] == [(r, "conv") for r in kw["n_conv_per_stage"]]
        assert layout.of_kind("stem") == ()
    dec = layout.of_kind("decoder")
    # decoder.stages[s] works at level n-2-s with the features of that encoder level
    assert [b.level for b in dec] == list(range(n - 2, -1, -1))
    assert [b.features for b in dec] == [kw["features_per_stage"][n - 2 - s] for s in range(n - 1)]
    assert [b.repeats for b in dec] == kw["n_conv_per_stage_decoder"]
    ups = layout.of_kind("transpconv")
    assert [list(b.stride) for b in ups] == [kw["strides"][n - 1 - s] for s in range(n - 1)]
    assert len(layout.of_kind("head")) == n - 1  # deep supervision: one head per decoder stage
    # every state_dict key of the network is in exactly one block, or is an alias of one that is
    from plancheck.network.build import network_shapes

    table = network_shapes(side.spec)
    placed = [k for b in layout.blocks for k in b.keys]
    assert len(placed) == len(set(placed))
    alias_of = {k: g for g in table.groups for k in g}
    assert all(any(a in set(placed) for a in alias_of[k]) for k in table.shapes)
    # the arch_kwargs layout (plancheck diff, no torch) says the same about every stage
    plain = layout_of_architecture(side.spec.class_name, kw)
    assert plain is not None
    for a, b in zip([x for x in layout.blocks if x.kind not in ("stem", "head")], plain.blocks):
        assert (a.id, a.level, a.features, a.kernel, a.repeats) == (b.id, b.level, b.features, b.kernel, b.repeats)
        if a.kind == "encoder":
            assert a.stride == b.stride


# --------------------------------------------------------------------------- check page


def _expected_status(report, role: str, module: str) -> str:
    """The status a block must show, from the rows whose keys live under ``module`` (independent of the renderer)."""
    rows = [r for r in report.tensors if any(k.startswith(module + ".") for k in r.keys)]
    statuses = {r.status.value for r in rows}
    if "head" in statuses:
        return "head"
    if "mismatch" in statuses:
        return "fails"
    if role == "target":
        if "missing" in statuses:
            return "missing" if statuses <= {"missing"} else "fails"
        return "loads"
    return "unused" if "unused" in statuses else "loads"


@pytest.mark.parametrize("name", list(PAIRS))
def test_check_page_draws_every_block_with_its_status(name):
    from plancheck.render.html import html_page

    report = report_of(name)
    page = html_page(report)
    assert_self_contained(page)
    (svg,) = svgs_of(page)
    blocks = blocks_of(svg)
    for role, layout in (("source", report.layout.source), ("target", report.layout.target)):
        mine = {k: g for k, g in blocks.items() if k.startswith(role + "-")}
        assert sorted(mine) == sorted(f"{role}-{b.id}" for b in layout.blocks)
        kinds = [g.get("data-kind") for g in mine.values()]
        for kind in ("stem", "encoder", "transpconv", "decoder", "head"):
            assert kinds.count(kind) == len(layout.of_kind(kind))
        for b in layout.blocks:
            assert mine[f"{role}-{b.id}"].get("data-status") == _expected_status(report, role, b.module), b.id
    # the first key nnU-Net stops at sits in a block that does not load
    if report.first_failure is not None:
        key = report.first_failure.key
        owner = next(b for b in report.layout.target.blocks if key.startswith(b.module + "."))
        assert blocks[f"target-{owner.id}"].get("data-status") in ("fails", "missing")
    else:
        statuses = {g.get("data-status") for g in blocks.values()}
        assert statuses <= {"loads", "head"}
    # every block with tensors has its tensor list on the page
    for gid in blocks:
        assert f'id="tensors-{gid}"' in page


def test_root_cause_selection_refers_to_existing_elements():
    from plancheck.render.html import html_page

    report = report_of("anisotropic")
    page = html_page(report)
    (svg,) = svgs_of(page)
    ids = set(blocks_of(svg))
    causes = re.findall(r'<tr class="cause" id="([^"]+)" tabindex="0" data-blocks="([^"]*)" data-rows="([^"]*)"', page)
    assert len(causes) == len(report.root_causes) >= 1
    row_ids = set(re.findall(r'<tr data-t="(\d+)"', page))
    for _, blocks, rows in causes:
        assert blocks.split() and set(blocks.split()) <= ids
        assert rows.split() and set(rows.split()) <= row_ids
    # kernel_sizes[0] explains the first encoder stage and the last decoder stage (both at level 0)
    by_field = {rc.cause.parameter.rsplit(".", 1)[-1]: n for n, rc in enumerate(report.root_causes)}
    _, blocks, _ = causes[by_field["kernel_sizes[0]"]]
    assert {"target-enc0", "target-dec4", "source-enc0", "source-dec4"} <= set(blocks.split())
    assert "target-enc3" not in blocks.split()


def test_checkpoint_source_page(tmp_path):
    """A checkpoint source: what it says about itself (trainer, epoch, fold) is on the page, its tensors drawn."""
    import torch

    import nnunet_oracle as oracle
    from plancheck import check
    from plancheck.render.html import html_page

    path = fixture("Dataset906_SmallImages")
    plans, dj = load(path), load(path.parent / "dataset.json")
    net = oracle.build_real(plans, "3d_fullres", dj)
    ckpt = tmp_path / "checkpoint_final.pth"
    torch.save(oracle.nnunet_checkpoint(net, plans, dj, "3d_fullres"), ckpt)
    report = check(ckpt, fixture("Dataset901_CTIsotropic"))
    page = html_page(report)
    assert_self_contained(page)
    for fact in ("<dt>trainer</dt><dd><code>nnUNetTrainer</code>", "<dt>epoch</dt><dd><code>2</code>",
                 "<dt>fold</dt><dd><code>0</code>"):
        assert fact in page
    (svg,) = svgs_of(page)
    blocks = blocks_of(svg)
    # the checkpoint's own tensors sit in the source's blocks: 906 is shallower than 901
    n_src, n_tgt = report.layout.source.levels, report.layout.target.levels
    assert n_src < n_tgt
    assert blocks[f"target-enc{n_tgt - 1}"].get("data-status") == "missing"
    assert {blocks[f"source-enc{i}"].get("data-status") for i in range(n_src)} <= {"loads", "fails"}


def test_html_option_writes_a_page_and_never_replaces_a_foreign_file(run_cli, tmp_path):
    a, b = fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic")
    out = tmp_path / "report.html"
    code, stdout, stderr = run_cli("check", a, b, "--html", out, "--problems-only")
    assert code == 1 and stdout.startswith("INCOMPATIBLE") and stderr == ""
    assert out.read_text().startswith("<!DOCTYPE html>")
    code, _, _ = run_cli("check", a, fixture("Dataset907_CTIsotropicOther"), "--html", out)
    assert code == 0 and "✓ Compatible." in out.read_text()  # its own page is replaced
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    code, stdout, stderr = run_cli("check", a, b, "--html", mine)
    assert code == 2 and stdout == "" and "notes.html" in stderr and len(stderr.strip().splitlines()) == 1
    assert mine.read_text() == "<p>my notes</p>"
    code, stdout, stderr = run_cli("check", a, b, "--html", tmp_path / "no" / "such" / "folder.html")
    assert code == 2 and stdout == "" and "cannot write the HTML page" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- diff and matrix pages


def test_diff_page_without_torch(tmp_path):
    """plancheck diff --html draws both architectures from the plans and never imports torch."""
    out = tmp_path / "diff.html"
    a, b = fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans")
    code = (
        "import sys\nfrom plancheck.cli import main\n"
        f"try:\n    main(['diff', {str(a)!r}, {str(b)!r}, '-c', '3d_fullres', '--html', {str(out)!r}])\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "print(json.dumps([rc, 'torch' in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    rc, torch_imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rc == 1 and torch_imported is False
    page = out.read_text()
    assert_self_contained(page)
    (svg,) = svgs_of(page)
    blocks = blocks_of(svg)
    kw_a = load(a)["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw_b = load(b)["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert sum(1 for k in blocks if k.startswith("c0-a-enc")) == kw_a["n_stages"]
    assert sum(1 for k in blocks if k.startswith("c0-b-enc")) == kw_b["n_stages"] == kw_a["n_stages"] + 1
    # B's extra stage is only in B; the first stage's kernel differs (3x3x3 vs 1x3x3)
    assert blocks[f"c0-b-enc{kw_b['n_stages'] - 1}"].get("data-status") == "missing"
    assert blocks["c0-a-enc0"].get("data-status") == "fails"
    assert "<h3>architecture" in page and "<h3>preprocessing" in page


def test_matrix_page_rows_link_to_their_detail(run_cli, tmp_path):
    out = tmp_path / "matrix.html"
    src = fixture("Dataset901_CTIsotropic")
    targets = [fixture(d) for d in ("Dataset902_CTAnisotropic", "Dataset904_BrainMRI", "Dataset907_CTIsotropicOther")]
    code, stdout, _ = run_cli("matrix", src, *targets, "--html", out, "-q")
    assert code == 1
    page = out.read_text()
    assert_self_contained(page)
    links = re.findall(r'<a href="#(pair-\d+)"', page)
    assert links == ["pair-0", "pair-1", "pair-2"]
    for anchor in links:
        assert f'<section class="pair" id="{anchor}">' in page
    assert page.count('data-sort="num"') == 3 and page.count('data-sort="text"') >= 4
    svgs = svgs_of(page)
    assert len(svgs) == 3
    ids = [g for s in svgs for g in blocks_of(s)]
    assert len(ids) == len(set(ids))  # unique across the page
    assert re.search(r'<span class="pill good">compatible</span></td><td data-v="[^"]+"><code><a href="#pair-2"', page)


# --------------------------------------------------------------------------- markdown


def test_markdown_has_a_mermaid_diagram_of_both_networks():
    from plancheck.render import render

    report = report_of("depth-resenc")
    text = render(report, "markdown", verbose=False)
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    nodes = re.findall(r"^    ([ST])(\d+)\[\"(.*?)\"\]:::(\w+)$", block, flags=re.M)
    source_levels, target_levels = report.layout.source.levels, report.layout.target.levels
    assert target_levels == source_levels + 1
    assert [int(n) for s, n, _, _ in nodes if s == "S"] == list(range(source_levels))
    assert [int(n) for s, n, _, _ in nodes if s == "T"] == list(range(target_levels))
    classes = {f"{s}{n}": c for s, n, _, c in nodes}
    assert classes[f"T{target_levels - 1}"] == "missing"  # the target's extra deepest stage
    for c in set(classes.values()):
        assert f"classDef {c} " in block
    assert len(text.split("```mermaid", 1)[1].split("```", 1)[0]) < 3000  # small enough for a PR comment


def test_compatible_markdown_diagram_marks_nothing():
    from plancheck.render import render

    text = render(report_of("compatible"), "markdown")
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert set(re.findall(r":::(\w+)$", block, flags=re.M)) == {"loads"}


# --------------------------------------------------------------------------- transfer and verify pages


@pytest.fixture(scope="module")
def checkpoint_906(tmp_path_factory):
    """A checkpoint of the network nnU-Net builds for Dataset906 (3d_fullres), with random weights."""
    import torch

    import nnunet_oracle as oracle

    path = fixture("Dataset906_SmallImages")
    plans, dj = load(path), load(path.parent / "dataset.json")
    torch.manual_seed(0)
    net = oracle.build_real(plans, "3d_fullres", dj)
    ckpt = tmp_path_factory.mktemp("ckpt") / "checkpoint_final.pth"
    torch.save(oracle.nnunet_checkpoint(net, plans, dj, "3d_fullres"), ckpt)
    return ckpt


@pytest.fixture(scope="module")
def wider_906(tmp_path_factory):
    """906 with a wider deepest stage: its stage and the decoder stage reading it change widths."""
    import shutil

    folder = tmp_path_factory.mktemp("wider")
    plans = load(fixture("Dataset906_SmallImages"))
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"][-1] = 320
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    shutil.copy(fixture("Dataset906_SmallImages").parent / "dataset.json", folder / "dataset.json")
    return folder / "nnUNetPlans.json"


def _expected_transfer_status(result, role: str, module: str) -> str:
    """The status a transfer block must show, from the plan's rows under ``module`` (independent of the renderer)."""
    def under(keys) -> bool:
        return any(k.startswith(module + ".") for k in keys)

    if role == "target":
        actions = {r.action.value for r in result.plan.tensors if under(r.keys)}
        if "head" in actions:
            return "head"
        carried = actions & {"copied", "adapted"}
        if not carried:
            return "initialised"
        if "initialised" in actions:
            return "partly"
        return "adapted" if "adapted" in carried else "copied"
    if ".seg_layers." in module + ".":
        return "head"
    read = {r.source_key: r.action.value for r in result.plan.tensors if r.action.value in ("copied", "adapted")}
    mine = [r for r in result.check.tensors if r.source_shape is not None and under(r.keys)]
    used = [next(read[k] for k in r.keys if k in read) for r in mine if any(k in read for k in r.keys)]
    if not used:
        return "unused"
    if len(used) < len(mine):
        return "partly"
    return "adapted" if "adapted" in used else "copied"


TRANSFERS = {
    "depth": (fixture("Dataset902_CTAnisotropic"), "adapt"),  # kernels, strides, depth +2
    "channels": (fixture("Dataset904_BrainMRI"), "adapt"),  # 1 -> 4 input channels, depth +2
    "encoder-only": (fixture("Dataset906_SmallImages"), "encoder"),  # the decoder starts fresh
    "wider": (None, "adapt"),  # the deepest stage wider: some blocks partly carried over
}


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_transfer_page_colours_every_block_by_what_the_transfer_did(name, checkpoint_906, wider_906):
    from plancheck.render.html import html_page
    from plancheck.transfer import transfer

    target, strategy = TRANSFERS[name]
    result = transfer(checkpoint_906, target or wider_906, dry_run=True, strategy=strategy)
    page = html_page(result)
    assert_self_contained(page)
    (svg,) = svgs_of(page)
    blocks = blocks_of(svg)
    layout = result.check.layout
    for role, lay in (("source", layout.source), ("target", layout.target)):
        mine = {k: g for k, g in blocks.items() if k.startswith(role + "-")}
        assert sorted(mine) == sorted(f"{role}-{b.id}" for b in lay.blocks)  # one element per block
        for b in lay.blocks:
            assert mine[f"{role}-{b.id}"].get("data-status") == _expected_transfer_status(result, role, b.module), \
                (role, b.id)
        for gid in mine:
            assert f'id="tensors-{gid}"' in page  # selecting a block lists its tensors
    statuses = {g.get("data-status") for g in blocks.values()}
    if name == "wider":
        assert "partly" in statuses and "initialised" in statuses
    if name == "encoder-only":
        assert {blocks[f"target-{b.id}"].get("data-status") for b in layout.target.of_kind("decoder")} \
            == {"initialised"}
        assert {blocks[f"source-{b.id}"].get("data-status") for b in layout.source.of_kind("decoder")} == {"unused"}
    # every target tensor is in the tensor tables once, the legend has every status drawn, the command is there
    assert len(set(re.findall(r'<tr data-t="(\d+)"', page))) == len(result.plan.tensors)
    assert len(re.findall(r'<tr data-t="\d+"', page)) == len(result.plan.tensors)
    legend = re.search(r'<ul class="legend" aria-label="legend">(.*?)</ul>', page).group(1)
    assert set(re.findall(r'class="sw sw-(\w+)', legend)) == statuses
    assert html.escape(result.command) in page
    for part in result.plan.parts:
        assert f"<td>{part.part.value}</td>" in page
        assert f"{part.parameters_carried:,} / {part.parameters_total:,}" in page
    # a source key aligned from another key is shown next to the target key
    moved = [r for r in result.plan.tensors if r.source_key not in (None, r.key)]
    for r in moved:
        assert f"<td><code>{html.escape(r.key)}</code>" in page and f"<code>{html.escape(r.source_key)}</code>" in page
    if name == "depth":
        assert moved  # the decoder is aligned by resolution level


def test_transfer_html_option(run_cli, tmp_path, checkpoint_906):
    """transfer --html: the page is written, stdout as usual; a foreign FILE is refused before OUT is written."""
    target = fixture("Dataset902_CTAnisotropic")
    page, out = tmp_path / "transfer.html", tmp_path / "out.pth"
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    code, stdout, stderr = run_cli("transfer", checkpoint_906, target, "-o", out, "--html", mine)
    assert code == 2 and stdout == "" and "notes.html" in stderr and len(stderr.strip().splitlines()) == 1
    assert mine.read_text() == "<p>my notes</p>" and not out.exists()
    code, stdout, stderr = run_cli("transfer", checkpoint_906, target, "-o", out, "--html",
                                   tmp_path / "no" / "such.html")
    assert code == 2 and "cannot write the HTML page" in stderr and not out.exists()
    code, stdout, stderr = run_cli("transfer", checkpoint_906, target, "--dry-run", "--html", page)
    assert code == 0 and stdout.startswith("TRANSFER") and "nnUNetv2_train" in stdout
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Dry run: nothing was written." in text and not out.exists()


@pytest.mark.slow
def test_verify_page(run_cli, tmp_path):
    """verify --html: the check's verdict section, the memory table, one row per iteration with its loss."""
    small = fixture("Dataset906_SmallImages")
    page = tmp_path / "verify.html"
    code, stdout, stderr = run_cli("verify", small, small, "-c", "2d", "--patch-size", "0", "32", "32",
                                   "--batch-size", "2", "--iterations", "3", "--html", page, "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)  # the usual output on stdout
    text = page.read_text()
    assert_self_contained(text)
    assert "✓ OK:" in text and "✓ Compatible." in text  # verify's verdict, then the check's section
    losses = re.findall(r'<tr><td class="num">(\d+)</td><td class="num">([0-9.]+)</td>', text)
    assert [int(i) for i, _ in losses] == [1, 2, 3]
    assert [float(v) for _, v in losses] == pytest.approx(data["measurement"]["losses"], abs=1e-4)
    assert "measured CPU allocation delta" in text and "predicted peak" in text and "nnU-Net&#x27;s estimate" in text
    (svg,) = svgs_of(text)
    assert {g.get("data-status") for g in blocks_of(svg).values()} == {"loads", "head"}
    # an incompatible pair: nothing run, the check's verdict and its pictures
    a, b = fixture("Dataset901_CTIsotropic"), fixture("Dataset902_CTAnisotropic")
    code, stdout, _ = run_cli("verify", a, b, "--html", page)
    assert code == 1 and stdout.startswith("NOT RUN")
    text = page.read_text()
    assert "✗ Not run." in text and "✗ Incompatible." in text and "<h2>Training steps</h2>" not in text
