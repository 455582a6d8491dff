"""plancheck's verdict against nnU-Net's own, on real CPU networks, for every fixture pair.

For each target (plans file, configuration) and every fixture plans file with the same
configuration as the source: nnU-Net builds both networks for real on the CPU
(``nnUNetTrainer.build_network_architecture``), the source's weights are saved as
``{"network_weights": ...}``, and nnU-Net's ``load_pretrained_weights`` decides.
plancheck must give the same verdict, the same first failing key and reason, and the same
mismatch / missing / unused key sets as a direct comparison of the two real state_dicts.

Many fixture files describe the same network (907 is 901 with other labels, Legacy902 is
902 in the old format, Inherits901 reuses 901's architecture), so real networks are
built once per *network signature*: the exact arguments nnU-Net's constructor receives,
as nnU-Net's own PlansManager and channel functions produce them. Their shapes are
cached on disk, shared by the xdist workers of one run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import pathlib
import warnings

import pytest

import nnunet_oracle as oracle
from conftest import fixture_id, fixture_plans, load
from plancheck import check
from plancheck.network.classpath import resolve_class
from plancheck.inputs.plans import find_dataset_json
from plancheck.records.report import Status

CONFIGURATIONS = ("3d_fullres", "2d", "3d_lowres", "3d_cascade_fullres")


def _dataset_json(path: pathlib.Path) -> dict | None:
    found = find_dataset_json(str(path))
    return None if found is None else load(found)


@functools.lru_cache(maxsize=None)
def signature(path: pathlib.Path, configuration: str) -> tuple[str, str | None]:
    """(hash of the constructor's arguments per nnU-Net, class path override for moved classes)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = load(path)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = PlansManager(plans).get_configuration(configuration)
        n_in, n_out = oracle.channels(plans, configuration, _dataset_json(path))
    declared = cm.network_arch_class_name
    # nnU-Net cannot locate classes that moved (its fallback imports timm, broken here): name where they live.
    resolved = resolve_class(declared, field="network_class_name", source="oracle")
    override = resolved.canonical if resolved.moved else None
    key = json.dumps([resolved.canonical, cm.network_arch_init_kwargs, list(cm.network_arch_init_kwargs_req_import),
                      n_in, n_out], sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:16], override


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "real-networks"
    shared.mkdir(exist_ok=True)
    return shared


def _atomic_write(path: pathlib.Path, writer) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    writer(tmp)
    os.replace(tmp, path)


_NETWORK: dict = {}


def real_network(path: pathlib.Path, configuration: str):
    """The real CPU network of (path, configuration); the last one is kept for the next test."""
    sig, override = signature(path, configuration)
    if sig not in _NETWORK:
        _NETWORK.clear()
        _NETWORK[sig] = oracle.build_real(load(path), configuration, _dataset_json(path), override)
    return _NETWORK[sig]


def real_shapes(path: pathlib.Path, configuration: str, cache: pathlib.Path) -> dict[str, tuple[int, ...]]:
    sig, _ = signature(path, configuration)
    file = cache / f"{sig}.shapes.json"
    if not file.exists():
        sig_, override = signature(path, configuration)
        network = _NETWORK.get(sig_) or oracle.build_real(load(path), configuration, _dataset_json(path), override)
        shapes = oracle.shapes(network)
        del network
        _atomic_write(file, lambda p: p.write_text(json.dumps(list(shapes.items()))))
    return {k: tuple(v) for k, v in json.loads(file.read_text())}


def weights_file(path: pathlib.Path, configuration: str, cache: pathlib.Path) -> pathlib.Path:
    sig, _ = signature(path, configuration)
    file = cache / f"{sig}.pth"
    if not file.exists():
        shapes = real_shapes(path, configuration, cache)
        _atomic_write(file, lambda p: oracle.save_placeholder_weights(shapes, p))
    return file


def _targets() -> list[tuple[pathlib.Path, str]]:
    pairs = [(p, c) for p in fixture_plans() for c in CONFIGURATIONS if c in load(p)["configurations"]]
    return sorted(pairs, key=lambda pc: signature(*pc)[0])  # neighbours share the real target network


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "configuration"), _targets(), ids=lambda v: fixture_id(v) if isinstance(v, pathlib.Path) else v
)
def test_agrees_with_nnunet(target: pathlib.Path, configuration: str, cache_dir: pathlib.Path) -> None:
    target_shapes = real_shapes(target, configuration, cache_dir)
    outcomes: dict[str, oracle.Outcome] = {}
    disagreements = []
    compared = 0
    for source in fixture_plans():
        if configuration not in load(source)["configurations"]:
            continue
        compared += 1
        sig, _ = signature(source, configuration)
        if sig not in outcomes:  # same source network: same weights file, same outcome
            outcomes[sig] = oracle.load_outcome(
                real_network(target, configuration), weights_file(source, configuration, cache_dir)
            )
        expected = outcomes[sig]
        report = check(source, target, configuration, explain=False)
        ff = report.first_failure
        got = oracle.Outcome(report.compatible, ff and ff.key, ff and ff.reason)
        if got != expected:
            disagreements.append(f"{fixture_id(source)}: nnU-Net {expected}, plancheck {got}")
            continue
        direct = oracle.direct_sets(real_shapes(source, configuration, cache_dir), target_shapes)
        for status in ("mismatch", "missing", "unused"):
            keys = {k for row in report.tensors if row.status is Status(status) for k in row.keys}
            if keys != direct[status]:
                disagreements.append(
                    f"{fixture_id(source)}: {status} keys differ: only plancheck {sorted(keys - direct[status])[:3]}, "
                    f"only direct {sorted(direct[status] - keys)[:3]}"
                )
    assert compared >= 2
    assert not disagreements, "\n".join(disagreements)


def test_fixture_pairs_include_compatible_and_incompatible_cases():
    """The differential set must contain both verdicts, including the planner-made compatible pairs."""
    a = check(fixture_plans()[0], fixture_plans()[0], explain=False)
    assert a.compatible
    other_labels = check(
        pathlib.Path(fixture_plans()[0]).parent.parent / "Dataset901_CTIsotropic" / "nnUNetPlans.json",
        pathlib.Path(fixture_plans()[0]).parent.parent / "Dataset907_CTIsotropicOther" / "nnUNetPlans.json",
    )
    assert other_labels.compatible  # different labels and dataset_name: only the head differs
    heads = [r for r in other_labels.tensors if r.status is Status.HEAD]
    assert heads and any(r.source_shape != r.target_shape for r in heads)
    same_depth = check(
        pathlib.Path(fixture_plans()[0]).parent.parent / "Dataset901_CTIsotropic" / "nnUNetResEncUNetLPlans.json",
        pathlib.Path(fixture_plans()[0]).parent.parent / "Dataset908_CTIsotropicCropped"
        / "nnUNetResEncUNetLPlans.json",
    )
    assert same_depth.compatible  # other patch size at the same depth
