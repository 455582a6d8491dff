"""The test of last resort: 44 plans files that real labs published (``make test-real``).

For every configuration two files share, every ordered pair is checked by plancheck and
by nnU-Net itself: nnU-Net's trainer builds both networks (on the meta device, so 44
files stay affordable) and its real ``load_pretrained_weights`` decides. Every pair that
nnU-Net can build must agree. Files nnU-Net cannot build (custom architectures) must
give exit 3 with one clear line, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import pathlib
import warnings

import pytest

import nnunet_oracle as oracle
from conftest import real_plans_folder

pytestmark = pytest.mark.real

REAL = real_plans_folder()


def _files() -> list[pathlib.Path]:
    if not REAL.is_dir():
        return []
    return sorted(p for p in REAL.glob("*.json") if not p.name.endswith(".dataset.json"))


def _dataset_json(path: pathlib.Path) -> pathlib.Path | None:
    dj = path.with_name(path.stem + ".dataset.json")
    return dj if dj.exists() else None


@functools.lru_cache(maxsize=None)
def _plans(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def _configurations(path: pathlib.Path) -> list[str]:
    return list(_plans(path)["configurations"])


@functools.lru_cache(maxsize=None)
def nnunet_network(path: pathlib.Path, configuration: str):
    """nnU-Net's own network for (path, configuration) on the meta device, or the reason it cannot build it."""
    import torch

    from plancheck.network.classpath import resolve_class
    from plancheck.errors import PlancheckError

    dj = _dataset_json(path)
    dataset_json = None if dj is None else json.loads(dj.read_text())
    try:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            declared = PlansManager(_plans(path)).get_configuration(configuration).network_arch_class_name
        # nnU-Net's fallback for moved classes imports timm (broken here): give it the class's real home.
        resolved = resolve_class(declared, field="network_class_name", source=str(path))
        override = resolved.canonical if resolved.moved else None
        with torch.device("meta"):
            return oracle.build_real(_plans(path), configuration, dataset_json, override)
    except (PlancheckError, Exception) as e:  # noqa: BLE001 - any failure means: nnU-Net cannot build it
        return f"{type(e).__name__}: {e}"


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("real-weights")


@functools.lru_cache(maxsize=None)
def _weights(path: pathlib.Path, configuration: str, directory: pathlib.Path) -> pathlib.Path:
    out = directory / f"{path.stem}-{configuration}.pth"
    oracle.save_placeholder_weights(oracle.shapes(nnunet_network(path, configuration)), out)
    return out


def _args(path: pathlib.Path, role: str) -> list[str]:
    dj = _dataset_json(path)
    return [] if dj is None else [f"--{role}-dataset-json", str(dj)]


def _cases() -> list[tuple[pathlib.Path, str]]:
    return [(p, c) for p in _files() for c in _configurations(p)]


def _id(v):
    return v.stem if isinstance(v, pathlib.Path) else v


def test_real_plans_are_present():
    assert len(_files()) == 44, f"expected the 44 real plans files in {REAL}"


@pytest.mark.parametrize(("path", "configuration"), _cases(), ids=_id)
def test_each_file_builds_or_is_refused_cleanly(path, configuration, run_cli):
    code, out, err = run_cli("check", path, path, "-c", configuration, *_args(path, "source"), *_args(path, "target"),
                             "--format", "json")
    built = nnunet_network(path, configuration)
    if isinstance(built, str):
        # nnU-Net cannot build it: plancheck must refuse with exit 3 and one line (or, if plancheck
        # can resolve a class nnU-Net cannot, build it and agree with itself).
        assert code in (0, 3), err
        if code == 3:
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            assert str(path) in err
    else:
        assert code == 0, err
        assert json.loads(out)["compatible"] is True


@pytest.mark.parametrize(("target", "configuration"), _cases(), ids=_id)
def test_pairs_agree_with_nnunet(target, configuration, weights_dir, run_cli):
    from plancheck import check
    from plancheck.errors import InputError

    target_net = nnunet_network(target, configuration)
    disagreements, compared = [], 0
    for source in _files():
        if configuration not in _configurations(source):
            continue
        source_unbuildable = isinstance(nnunet_network(source, configuration), str)
        if isinstance(target_net, str):
            # nnU-Net cannot build this target: plancheck must refuse the pair as input it cannot check,
            # in one line naming a file it cannot check
            compared += 1
            code, _, err = run_cli("check", source, target, "-c", configuration, *_args(source, "source"),
                                   *_args(target, "target"))
            assert code == 3 and len(err.strip().splitlines()) == 1, err
            assert str(target) in err or (source_unbuildable and str(source) in err), err
            continue
        if source_unbuildable:  # refused as a source: test_each_file_builds_or_is_refused_cleanly
            continue
        compared += 1
        expected = oracle.load_outcome(target_net, _weights(source, configuration, weights_dir))
        try:
            report = check(source, target, configuration, source_dataset_json=_dataset_json(source),
                           target_dataset_json=_dataset_json(target), explain=False)
        except InputError as e:  # pragma: no cover - reported as a disagreement
            disagreements.append(f"{source.stem}: plancheck refused a pair nnU-Net builds: {e}")
            continue
        ff = report.first_failure
        got = oracle.Outcome(report.compatible, ff and ff.key, ff and ff.reason)
        if got != expected:
            disagreements.append(f"{source.stem}: nnU-Net {expected}, plancheck {got}")
    assert compared >= 1
    assert not disagreements, "\n".join(disagreements)


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_plan_pretraining_groups_the_44_files_as_nnunets_networks_differ(configuration, tmp_path):
    """plan-pretraining on the 44 files as targets in one run (issue 20): the groups are the distinct networks
    nnU-Net builds (heads excluded), and a file nnU-Net cannot build is an error row, never a group member."""
    import shutil

    from plancheck.pretraining import plan_pretraining

    if not _files():
        pytest.fail(f"the 44 real plans files are missing from {REAL}")
    layout = {}
    for path in _files():  # each file as a dataset folder: its plans and, where published, its dataset.json
        folder = tmp_path / path.stem
        folder.mkdir()
        shutil.copy(path, folder / "nnUNetPlans.json")
        if _dataset_json(path):
            shutil.copy(_dataset_json(path), folder / "dataset.json")
        layout[str(folder / "nnUNetPlans.json")] = path
    source = next(p for p in layout if layout[p].stem == "036")  # Dataset001_Amos, CT
    plan = plan_pretraining(source, list(layout), [configuration], dry_run=True)
    expected: dict[tuple, set[str]] = {}
    for label, path in layout.items():
        if configuration not in _configurations(path):
            continue
        built = nnunet_network(path, configuration)
        if isinstance(built, str):
            continue
        signature = tuple(sorted((k, tuple(v.shape)) for k, v in built.state_dict().items() if ".seg_layers." not in k))
        expected.setdefault(signature, set()).add(label)
    groups = [set(g.targets) for g in plan.groups]
    assert sorted(map(sorted, groups)) == sorted(map(sorted, expected.values()))
    assert plan.distinct[configuration] == len(groups)
    grouped = {t for g in groups for t in g}
    for row in plan.rows:  # every other file: not applicable, or an error row (a file nnU-Net cannot build)
        assert (row.target in grouped) is (row.error is None and row.not_applicable is None)
        if row.error:
            assert isinstance(nnunet_network(layout[row.target], configuration), str)
