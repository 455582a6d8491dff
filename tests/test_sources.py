"""SOURCE and TARGET kinds: checkpoints, model folders, state_dicts, dataset IDs, custom trainers.

Checkpoints are written here by ``torch.save`` with the structure of
``nnUNetTrainer.save_checkpoint``, from REAL small networks (Dataset906_SmallImages),
and nnU-Net's own ``load_pretrained_weights`` loads the very same files into REAL target
networks: plancheck's verdict, first failing key and reason must agree with it.
"""

from __future__ import annotations

import copy
import json
import pathlib
import pickletools
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import nnunet_oracle as oracle
from nnunet_oracle import nnunet_checkpoint
from conftest import FIXTURES, fixture, load
from plancheck import check
from plancheck.errors import InputError
from plancheck.records.report import Status
from pickle_payloads import Exec as _Exec, System as _System

D906 = "Dataset906_SmallImages"
D901 = "Dataset901_CTIsotropic"
ROOT = pathlib.Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- writing checkpoints


def data_pkl(path: pathlib.Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        return zf.read(name)


def rewrite_data_pkl(src: pathlib.Path, dst: pathlib.Path, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data.pkl"):
                data = edit(data)
            zout.writestr(info, data)


def to_cuda(pkl: bytes) -> bytes:
    old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE location strings
    assert old in pkl
    return pkl.replace(old, new)


def globals_in(pkl: bytes) -> set[str]:
    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}


def fixture_data(dataset: str, plans: str = "nnUNetPlans") -> tuple[dict, dict]:
    path = fixture(dataset, plans)
    return load(path), load(path.parent / "dataset.json")


class Store:
    """Real networks and checkpoints, written once per module."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.paths: dict[str, pathlib.Path] = {}
        self.nets: dict[str, torch.nn.Module] = {}

    def write(self, name: str, obj: object) -> pathlib.Path:
        path = self.folder / name
        torch.save(obj, path)
        self.paths[name] = path
        return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    torch.manual_seed(0)
    s = Store(tmp_path_factory.mktemp("checkpoints"))
    plans, dj = fixture_data(D906)
    for configuration in ("3d_fullres", "2d"):
        net = oracle.build_real(plans, configuration, dj)
        s.nets[configuration] = net
        s.write(f"{configuration}.pth", nnunet_checkpoint(net, plans, dj, configuration))
    rewrite_data_pkl(s.paths["3d_fullres.pth"], s.folder / "cuda.pth", to_cuda)
    s.paths["cuda.pth"] = s.folder / "cuda.pth"
    sd = s.nets["3d_fullres"].state_dict()
    for prefix in ("module.", "_orig_mod.", "module._orig_mod."):
        s.write(f"prefix-{prefix}pth", nnunet_checkpoint(
            s.nets["3d_fullres"], plans, dj, "3d_fullres", weights={prefix + k: v for k, v in sd.items()}))
    s.write("bare.pth", sd)
    s.write("state_dict.pth", {"state_dict": sd, "epoch": 3})
    return s


def real_target(plans_path: pathlib.Path, configuration: str, cache: dict = {}) -> torch.nn.Module:  # noqa: B006
    key = (str(plans_path), configuration)
    if key not in cache:
        plans = load(plans_path)
        dj_path = plans_path.parent / "dataset.json"
        cache[key] = oracle.build_real(plans, configuration, load(dj_path) if dj_path.is_file() else None)
    return cache[key]


@pytest.fixture
def cpu_torch_load(monkeypatch):
    """nnU-Net's loader calls torch.load without map_location; map cuda:0 tensors here when there is no GPU."""
    if torch.cuda.is_available():
        return
    real = torch.load

    def load_on_cpu(*args, **kwargs):
        kwargs.setdefault("map_location", "cpu")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load_on_cpu)


def assert_agrees(report, outcome: oracle.Outcome) -> None:
    assert report.compatible is outcome.loaded, (report.first_failure, outcome)
    if not outcome.loaded:
        assert report.first_failure is not None
        assert (report.first_failure.key, report.first_failure.reason) == (outcome.key, outcome.reason)


@pytest.fixture(scope="module")
def mutated_906(tmp_path_factory) -> pathlib.Path:
    """906 with a wider last stage: same keys, other shapes."""
    folder = tmp_path_factory.mktemp("mutated")
    plans = load(fixture(D906))
    kwargs = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kwargs["features_per_stage"][-1] = 320
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    shutil.copy(fixture(D906).parent / "dataset.json", folder / "dataset.json")
    return folder / "nnUNetPlans.json"


# --------------------------------------------------------------------------- agreement with nnU-Net


def test_checkpoints_are_written_like_nnunet(store):
    pkl = data_pkl(store.paths["3d_fullres.pth"])
    names = globals_in(pkl)
    assert "numpy._core.multiarray.scalar" in names  # pickled by numpy 2
    assert np.__version__.split(".")[0] == "2"
    assert b"cuda:0" in data_pkl(store.paths["cuda.pth"])
    saved = torch.load(store.paths["cuda.pth"], map_location="cpu", weights_only=False)
    assert set(saved) == {"network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema",
                          "current_epoch", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", ["3d_fullres.pth", "cuda.pth"])
@pytest.mark.parametrize("target", ["self", "901", "mutated"])
def test_verdict_agrees_with_load_pretrained_weights(store, mutated_906, cpu_torch_load, ckpt, target):
    plans_path = {"self": fixture(D906), "901": fixture(D901), "mutated": mutated_906}[target]
    report = check(store.paths[ckpt], plans_path)
    assert report.source.kind == "checkpoint"
    outcome = oracle.load_outcome(real_target(plans_path, "3d_fullres"), store.paths[ckpt])
    assert_agrees(report, outcome)
    assert outcome.loaded is (target == "self")
    if target == "mutated":
        assert outcome.reason == "shape"
    assert not any("not those of the network" in w for w in report.warnings)


@pytest.mark.slow
@pytest.mark.parametrize("target, target_configuration", [(D906, None), (D906, "3d_fullres"), (D901, None)])
def test_2d_checkpoint_agrees(store, target, target_configuration):
    plans_path = fixture(target)
    report = check(store.paths["2d.pth"], plans_path, target_configuration=target_configuration)
    assert report.source.configuration == "2d"  # the checkpoint's own configuration
    assert report.target.configuration == (target_configuration or "2d")
    outcome = oracle.load_outcome(real_target(plans_path, target_configuration or "2d"), store.paths["2d.pth"])
    assert_agrees(report, outcome)


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_prefixed_keys_agree_and_are_explained(store, prefix):
    path = store.paths[f"prefix-{prefix}pth"]
    report = check(path, fixture(D906))
    assert_agrees(report, oracle.load_outcome(real_target(fixture(D906), "3d_fullres"), path))
    assert not report.compatible
    (root,) = report.root_causes
    assert root.cause.parameter == f"state_dict key prefix '{prefix}'"
    n_keys = sum(1 for k in store.nets["3d_fullres"].state_dict() if ".seg_layers." not in k)
    assert f"{n_keys} of {n_keys} target keys match once stripped" in root.note
    assert "does not strip" in root.note
    assert any("nnU-Net would load these weights" in w for w in report.warnings)
    assert all(r.causes == (root.cause,) for r in report.tensors if r.status in (Status.MISSING, Status.UNUSED))
    # the embedded plans are compared with the stripped keys: no spurious disagreement
    assert not any("not those of the network" in w for w in report.warnings)


def test_prefixed_keys_against_another_network(store):
    report = check(store.paths["prefix-module.pth"], fixture(D901))
    (root,) = report.root_causes
    target_keys = [k for k in real_target(fixture(D901), "3d_fullres").state_dict() if ".seg_layers." not in k]
    source = {k: tuple(v.shape) for k, v in store.nets["3d_fullres"].state_dict().items()}
    target = {k: tuple(v.shape) for k, v in real_target(fixture(D901), "3d_fullres").state_dict().items()}
    matching = sum(1 for k in target_keys if source.get(k) == target[k])
    assert f"{matching} of {len(target_keys)} target keys match once stripped" in root.note
    assert any("would still stop at" in w for w in report.warnings)


# --------------------------------------------------------------------------- the report


def test_checkpoint_facts_in_the_report(store):
    report = check(store.paths["cuda.pth"], fixture(D906))
    d = report.to_dict()
    assert d["source"]["kind"] == "checkpoint"
    assert d["source"]["plans"] == f"{store.paths['cuda.pth']}:init_args.plans"
    assert d["source"]["dataset_json"] == f"{store.paths['cuda.pth']}:init_args.dataset_json"
    details = d["source"]["details"]
    assert details["format"] == "torch-zip" and details["container_key"] == "network_weights"
    assert details["trainer_name"] == "nnUNetTrainer" and details["current_epoch"] == 2
    assert details["fold"] == "0" and details["locations"] == ["cuda:0"]
    assert d["target"]["kind"] == "plans"
    assert d["target"]["details"] == {"network_built_by": "get_network_from_plans (nnUNetTrainer)"}
    assert any("saved on cuda:0" in n for n in d["notes"])
    assert any("match the network built from its own plans" in n for n in d["notes"])
    text = str(report)
    assert f"checkpoint {store.paths['cuda.pth']} (format torch-zip" in text


def test_plans_source_json_is_unchanged_apart_from_details():
    d = check(fixture(D906), fixture(D906)).to_dict()
    assert set(d["source"]) == {"plans", "kind", "configuration", "dataset_json", "network_class", "input_channels",
                                "input_channels_from", "segmentation_heads", "details"}
    assert d["source"]["kind"] == "plans" and d["source"]["details"] == {}


def test_weights_that_do_not_match_their_own_plans(store, tmp_path):
    plans, dj = fixture_data(D906)
    wide = copy.deepcopy(plans)
    kwargs = wide["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kwargs["features_per_stage"] = [f * 2 for f in kwargs["features_per_stage"]]
    net = oracle.build_real(wide, "3d_fullres", dj)
    path = tmp_path / "edited.pth"
    torch.save(nnunet_checkpoint(net, plans, dj, "3d_fullres"), path)  # weights of `wide`, plans of 906
    report = check(path, fixture(D906))
    assert not report.compatible
    (warning,) = [w for w in report.warnings if "not those of the network" in w]
    own = store.nets["3d_fullres"].state_dict()
    differ = sum(1 for k, v in net.state_dict().items() if tuple(v.shape) != tuple(own[k].shape))
    assert f"{differ} keys differ ({differ} in shape, 0 only in the network, 0 only in the weights" in warning
    assert "custom trainer, edited plans, or weights from outside nnU-Net" in warning


def test_configuration_flag_that_contradicts_the_checkpoint(store):
    report = check(store.paths["3d_fullres.pth"], fixture(D906), configuration="2d")
    assert any("differs from the checkpoint's own configuration 3d_fullres" in w for w in report.warnings)
    assert not report.compatible


# --------------------------------------------------------------------------- state_dicts and safetensors


def write_safetensors(path: pathlib.Path, shapes: dict[str, tuple[int, ...]]) -> pathlib.Path:
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape)) if shape else 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


def test_bare_state_dict_needs_source_plans(store, run_cli):
    code, out, err = run_cli("check", store.paths["bare.pth"], fixture(D906))
    assert code == 3 and out == ""
    line = one_line(err)
    assert "bare state_dict" in line and "--source-plans" in line and str(store.paths["bare.pth"]) in line


@pytest.mark.parametrize("name, what", [("bare.pth", "a bare state_dict"),
                                         ("state_dict.pth", "a state_dict under 'state_dict'")])
def test_state_dict_with_source_plans(store, run_cli, name, what):
    # nnU-Net's loader reads torch.load(file)['network_weights']: on these files it stops with a KeyError
    # before comparing any key. plancheck agrees (incompatible, reason "container") and still shows that
    # the tensors themselves would load once the file is re-saved.
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    with pytest.raises(KeyError, match="network_weights"):
        load_pretrained_weights(real_target(fixture(D906), "3d_fullres"), str(store.paths[name]))
    code, out, err = run_cli("check", store.paths[name], fixture(D906), "--source-plans", fixture(D906),
                             "--format", "json")
    assert code == 1, err
    d = json.loads(out)
    assert d["compatible"] is False
    assert d["nnunet_first_failure"]["key"] == "network_weights"
    assert d["nnunet_first_failure"]["reason"] == "container"
    assert d["summary"]["mismatch"] == d["summary"]["missing"] == 0  # the tensors themselves fit
    assert "After that, the weights would load." in d["root_causes"][0]["note"]
    assert d["source"]["kind"] == "state-dict"
    assert d["source"]["details"]["plans_from"] == "--source-plans"
    assert any(what in w and "KeyError" in w for w in d["warnings"])
    code, out, _ = run_cli("check", store.paths[name], fixture(D901), "--source-plans", fixture(D906))
    assert code == 1 and "Even then, the tensors below do not fit." in out


def test_safetensors(store, tmp_path, run_cli):
    shapes = {k: tuple(v.shape) for k, v in store.nets["3d_fullres"].state_dict().items()}
    path = write_safetensors(tmp_path / "model.safetensors", shapes)
    code, _, err = run_cli("check", path, fixture(D906))
    assert code == 3 and "safetensors" in one_line(err) and "--source-plans" in err
    report = check(path, fixture(D906), source_plans=fixture(D906))
    # torch.load cannot read safetensors, so nnU-Net's loader fails on the file as it stands
    assert not report.compatible and report.first_failure.reason == "container"
    assert report.summary.counts["mismatch"] == report.summary.counts["missing"] == 0
    assert report.source.kind == "safetensors"
    assert any("cannot read safetensors" in w for w in report.warnings)
    assert not check(path, fixture(D901), source_plans=fixture(D906)).compatible


# --------------------------------------------------------------------------- CLI errors


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("payload", ["system", "exec"])
def test_malicious_checkpoint_is_refused_through_the_cli(tmp_path, run_cli, payload):
    marker = tmp_path / "pwned"
    evil = _System(f"touch {marker}") if payload == "system" else _Exec(f"open({str(marker)!r}, 'w').write('x')")
    path = tmp_path / "checkpoint_final.pth"
    plans, dj = fixture_data(D906)
    torch.save({"network_weights": {"conv.weight": torch.zeros(2)}, "init_args": {"plans": plans, "x": evil}}, path)
    code, out, err = run_cli("check", path, fixture(D906))
    assert code == 3 and out == ""
    line = one_line(err)
    assert line.startswith(f"plancheck: error: {path}: ") and "refuses to load global" in line
    assert not marker.exists()


def test_truncated_checkpoint(store, tmp_path, run_cli):
    data = store.paths["3d_fullres.pth"].read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli("check", path, fixture(D906))
    assert code == 3
    assert "damaged zip archive" in one_line(err) and str(path) in err


def test_not_a_zip(tmp_path, run_cli):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x00\x01 this is not a torch file " * 10)
    code, _, err = run_cli("check", path, fixture(D906))
    assert code == 3
    assert "not a zip archive" in one_line(err)


def test_zip_without_data_pkl(tmp_path, run_cli):
    path = tmp_path / "weights.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/version", "3\n")
    code, _, err = run_cli("check", path, fixture(D906))
    assert code == 3
    assert "zip archive without <folder>/data.pkl" in one_line(err)


def test_prefixed_state_dict_through_the_cli(store, run_cli):
    code, out, err = run_cli("check", store.paths["prefix-module.pth"], fixture(D906), "--problems-only")
    assert code == 1, err
    assert "state_dict key prefix 'module.'" in out and "match once stripped" in out


def test_checkpoint_as_target_is_refused(store, run_cli):
    code, _, err = run_cli("check", fixture(D906), store.paths["3d_fullres.pth"])
    assert code == 3 and "is a checkpoint: TARGET is the fine-tuning side" in one_line(err)


def test_trust_checkpoint(store):
    report = check(store.paths["3d_fullres.pth"], fixture(D906), trust_checkpoint=True)
    assert report.compatible and report.source.details["format"] == "torch-trusted"
    assert any("weights_only=False" in n for n in report.to_dict()["notes"])


# --------------------------------------------------------------------------- custom trainers


def real_by_trainer(trainer_cls, plans: dict, configuration: str, dataset_json: dict) -> torch.nn.Module:
    """The network the trainer builds, on the CPU, called as nnU-Net's own version of it calls it."""
    import contextlib
    import io

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from plancheck.network.trainers import trainer_signature

    with contextlib.redirect_stdout(io.StringIO()):
        pm = PlansManager(copy.deepcopy(plans))
        cm = pm.get_configuration(configuration)
        n_in, n_out = oracle.channels(plans, configuration, dataset_json)
        if trainer_signature(trainer_cls) == "old":  # nnU-Net 2.4-2.6 called it so
            return trainer_cls.build_network_architecture(
                cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                n_in, n_out, True)
        return trainer_cls.build_network_architecture(pm, cm, n_in, n_out, True)


@pytest.mark.parametrize("name, style", [("nnUNetTrainerWide", oracle.nnunet_signature()),
                                         ("nnUNetTrainerOldWide", "old"),
                                         ("nnUNetTrainerWideLonger", oracle.nnunet_signature())])
def test_custom_trainer_builds_its_network(name, style):
    import custom_trainers

    from plancheck.network.build import network_shapes
    from plancheck.inputs.plans import load_dataset_json, load_plans
    from plancheck.network.spec import prepare_side
    from plancheck.network.trainers import resolve_trainer, trainer_signature

    ref = resolve_trainer(name, allow=("custom_trainers",))
    assert ref.overrides_build and ref.class_path == f"custom_trainers.{name}"
    assert trainer_signature(getattr(custom_trainers, name)) == style
    plans, dj = fixture_data(D906)
    side = prepare_side("source", load_plans(fixture(D906)), "3d_fullres",
                        load_dataset_json(fixture(D906).parent / "dataset.json"), trainer=ref)
    real = real_by_trainer(getattr(custom_trainers, name), plans, "3d_fullres", dj)
    assert network_shapes(side.spec).shapes == {k: tuple(v.shape) for k, v in real.state_dict().items()}
    assert network_shapes(side.spec).shapes["encoder.stages.0.0.convs.0.conv.weight"][0] == 64


def test_custom_trainer_on_both_sides_and_only_one(run_cli):
    args = ("check", fixture(D906), fixture(D906), "--allow-import", "custom_trainers")
    code, out, err = run_cli(*args, "--trainer", "nnUNetTrainerWide", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["source"]["details"]["network_built_by"] == "custom_trainers.nnUNetTrainerWide.build_network_architecture"
    assert d["tensors"][0]["source_shape"][0] == 64
    code, _, _ = run_cli(*args, "-tr", "nnUNetTrainerOldWide", "--target-trainer", "nnUNetTrainer")
    assert code == 1


def test_trainer_that_only_trains_longer_keeps_the_plans_build():
    from plancheck.network.trainers import resolve_trainer

    ref = resolve_trainer("nnUNetTrainerJustLonger", allow=("custom_trainers",))
    assert not ref.overrides_build and ref.build_path is None


def test_unknown_trainer(run_cli):
    code, out, err = run_cli("check", fixture(D906), fixture(D906), "--trainer", "NoSuchTrainer")
    assert code == 3 and out == ""
    line = one_line(err)
    assert "trainer 'NoSuchTrainer' (--trainer) not found in nnunetv2.training.nnUNetTrainer" in line
    assert "--allow-import" in line and "--ignore-trainer" in line
    code, out, err = run_cli("check", fixture(D906), fixture(D906), "--trainer", "NoSuchTrainer", "--ignore-trainer")
    assert code == 0, err
    assert "built from plans, trainer NoSuchTrainer not found" in out


def test_trainer_outside_the_allowed_modules_is_refused(run_cli):
    code, _, err = run_cli("check", fixture(D906), fixture(D906), "--trainer", "os.path.join")
    assert code == 3 and "refusing to import trainer 'os.path.join'" in one_line(err)


@pytest.mark.slow
def test_checkpoint_of_a_custom_trainer(tmp_path, run_cli):
    import custom_trainers

    plans, dj = fixture_data(D906)
    net = real_by_trainer(custom_trainers.nnUNetTrainerWide, plans, "3d_fullres", dj)
    path = tmp_path / "checkpoint_final.pth"
    torch.save(nnunet_checkpoint(net, plans, dj, "3d_fullres", trainer_name="nnUNetTrainerWide"), path)

    code, out, err = run_cli("check", path, fixture(D906))
    assert code == 3 and out == ""
    assert "trainer 'nnUNetTrainerWide' (the checkpoint's trainer_name) not found" in one_line(err)

    code, out, err = run_cli("check", path, fixture(D906), "--ignore-trainer", "--problems-only")
    assert code == 1, err
    assert "built from plans, trainer nnUNetTrainerWide not found" in out
    assert "not those of the network built from its own plans" in out

    report = check(path, fixture(D906), allow_import=("custom_trainers",))
    assert report.compatible  # the fine-tuning run uses the same trainer
    assert not any("not those of the network" in w for w in report.warnings)
    wide_target = real_by_trainer(custom_trainers.nnUNetTrainerWide, plans, "3d_fullres", dj)
    assert_agrees(report, oracle.load_outcome(wide_target, path))

    plain = check(path, fixture(D906), allow_import=("custom_trainers",), target_trainer="nnUNetTrainer")
    assert_agrees(plain, oracle.load_outcome(real_target(fixture(D906), "3d_fullres"), path))


@pytest.mark.slow
def test_checkpoint_of_an_nnunet_trainer_that_builds_its_own_network(tmp_path):
    from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerBN import nnUNetTrainerBN

    plans, dj = fixture_data(D906)
    net = real_by_trainer(nnUNetTrainerBN, plans, "3d_fullres", dj)
    path = tmp_path / "bn.pth"
    torch.save(nnunet_checkpoint(net, plans, dj, "3d_fullres", trainer_name="nnUNetTrainerBN"), path)
    report = check(path, fixture(D906))
    assert report.compatible
    assert report.source.details["network_built_by"].endswith("nnUNetTrainerBN.build_network_architecture")
    assert not any("not those of the network" in w for w in report.warnings)
    plain = check(path, fixture(D906), target_trainer="nnUNetTrainer")
    assert_agrees(plain, oracle.load_outcome(real_target(fixture(D906), "3d_fullres"), path))
    # BatchNorm's weight and bias fit InstanceNorm's; its running statistics are dropped without a word
    assert plain.compatible and plain.summary.counts["unused"] > 0
    assert all(r.key.endswith(("running_mean", "running_var", "num_batches_tracked"))
               for r in plain.tensors if r.status is Status.UNUSED)


def test_trainer_lookup_imports_only_what_it_needs():
    code = (
        "import sys\n"
        "from plancheck.network.trainers import resolve_trainer\n"
        "for name in ('nnUNetTrainer', 'nnUNetTrainer_250epochs', 'nnUNetTrainerNoDeepSupervision'):\n"
        "    assert not resolve_trainer(name).overrides_build, name\n"
        "assert 'torch' not in sys.modules, 'torch imported for a trainer that builds the plans network'\n"
        "ref = resolve_trainer('nnUNetTrainerBN')\n"
        "assert ref.overrides_build\n"
        "assert not any('primus' in m for m in sys.modules), 'imported every trainer module'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_sources_do_not_import_torch(store):
    code = (
        "import sys\n"
        "from plancheck.inputs.sources import resolve_source, resolve_target\n"
        f"s = resolve_source({str(store.paths['3d_fullres.pth'])!r})\n"
        f"t = resolve_target({str(fixture(D906))!r})\n"
        "assert s.kind == 'checkpoint' and s.configuration == '3d_fullres'\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# --------------------------------------------------------------------------- folders and dataset IDs


@pytest.fixture
def nnunet_tree(tmp_path, monkeypatch, store) -> dict[str, pathlib.Path]:
    """$nnUNet_raw, $nnUNet_preprocessed and $nnUNet_results with Dataset906 in them."""
    roots = {name: tmp_path / name for name in ("raw", "preprocessed", "results")}
    for root in roots.values():
        root.mkdir()
    pre = roots["preprocessed"] / D906
    pre.mkdir()
    for name in ("nnUNetPlans.json", "nnUNetResEncUNetMPlans.json", "dataset.json"):
        shutil.copy(FIXTURES / D906 / name, pre / name)
    model = roots["results"] / D906 / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "fold_1").mkdir()
    (model / "fold_all").mkdir()
    shutil.copy(FIXTURES / D906 / "nnUNetPlans.json", model / "plans.json")
    shutil.copy(FIXTURES / D906 / "dataset.json", model / "dataset.json")
    shutil.copy(store.paths["3d_fullres.pth"], model / "fold_1" / "checkpoint_final.pth")
    shutil.copy(store.paths["3d_fullres.pth"], model / "fold_all" / "checkpoint_best.pth")
    monkeypatch.setenv("nnUNet_raw", str(roots["raw"]))
    monkeypatch.setenv("nnUNet_preprocessed", str(roots["preprocessed"]))
    monkeypatch.setenv("nnUNet_results", str(roots["results"]))
    return {**roots, "model": model, "pre": pre}


def test_dataset_ids_resolve_through_the_environment(nnunet_tree, run_cli):
    for source, target in (("906", "906"), (D906, "906"), ("906", D906), (nnunet_tree["model"], nnunet_tree["pre"])):
        code, out, err = run_cli("check", source, target, "--format", "json")
        assert code == 0, err
        d = json.loads(out)
        assert d["source"]["kind"] == "model-folder" and d["source"]["details"]["fold"] == "1"
        assert d["source"]["details"]["checkpoint"].endswith("fold_1/checkpoint_final.pth")
    d = json.loads(run_cli("check", "906", "906", "--format", "json")[1])
    assert d["target"]["kind"] == "dataset"
    assert d["target"]["details"]["dataset"] == D906
    assert d["target"]["details"]["resolved_through"] == f"nnUNet_preprocessed={nnunet_tree['preprocessed']}"
    assert d["source"]["details"]["resolved_through"] == f"nnUNet_results={nnunet_tree['results']}"
    code, out, err = run_cli("check", "906", "906", "-p", "nnUNetResEncUNetMPlans", "--target-configuration",
                             "3d_fullres")
    assert code == 3 and "no trained model nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres" in one_line(err)


def test_environment_is_read_at_call_time(nnunet_tree, tmp_path, monkeypatch):
    assert check("906", "906").compatible
    other = tmp_path / "other"
    (other / D906).mkdir(parents=True)
    monkeypatch.setenv("nnUNet_preprocessed", str(other))
    with pytest.raises(InputError, match=f"no nnUNetPlans.json in {other / D906}"):
        check(fixture(D906), "906")


def test_old_nnunet_with_bound_path_globals(monkeypatch, tmp_path):
    """nnunetv2 < 2.7 bound the variables to strings at import; plancheck rebinds them from the environment."""
    import nnunetv2.paths as paths
    import nnunetv2.utilities.dataset_name_id_conversion as conversion

    from plancheck.inputs.locations import nnunet_paths

    for module in (paths, conversion):
        for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            monkeypatch.setattr(module, var, "/stale/from/import/time")
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with nnunet_paths():
        assert conversion.nnUNet_preprocessed == paths.nnUNet_preprocessed == str(tmp_path)
        assert conversion.nnUNet_raw is None
    assert conversion.nnUNet_preprocessed == "/stale/from/import/time"  # restored after the call


def test_dataset_not_found_names_the_variable_and_folder(nnunet_tree, run_cli):
    code, _, err = run_cli("check", fixture(D906), "999")
    assert code == 3
    line = one_line(err)
    assert f"dataset 999 not found: looked in nnUNet_preprocessed={nnunet_tree['preprocessed']}" in line
    assert "no Dataset999_* folder" in line
    code, _, err = run_cli("check", "999", fixture(D906))
    assert code == 3 and f"looked in nnUNet_results={nnunet_tree['results']}" in one_line(err)
    code, _, err = run_cli("check", fixture(D906), "Dataset999_Nothing")
    assert code == 3 and "no Dataset999_Nothing folder" in one_line(err)


def test_unset_variable(nnunet_tree, run_cli, monkeypatch):
    monkeypatch.delenv("nnUNet_preprocessed")
    code, _, err = run_cli("check", fixture(D906), "906")
    assert code == 3 and "dataset 906: nnUNet_preprocessed is not set" in one_line(err)
    monkeypatch.delenv("nnUNet_results")
    code, _, err = run_cli("check", "906", fixture(D906))
    assert code == 3 and "dataset 906: nnUNet_results is not set" in one_line(err)


def test_plans_identifier_for_targets(nnunet_tree, run_cli):
    code, out, err = run_cli("check", fixture(D906, "nnUNetResEncUNetMPlans"), "906", "-p", "nnUNetResEncUNetMPlans",
                             "--format", "json")
    assert code == 0, err
    assert json.loads(out)["target"]["plans"].endswith("nnUNetResEncUNetMPlans.json")
    code, _, err = run_cli("check", fixture(D906), "906", "-p", "nnUNetResEncUNetLPlans")
    assert code == 3
    line = one_line(err)
    assert "no nnUNetResEncUNetLPlans.json" in line and "nnUNetResEncUNetMPlans.json" in line and "-p" in line


def test_folds(nnunet_tree, run_cli):
    model = nnunet_tree["model"]
    report = check(model, fixture(D906), fold="all")
    assert report.source.details["fold"] == "all"
    notes = report.to_dict()["notes"]
    assert any("fold_all has no checkpoint_final.pth: using checkpoint_best.pth" in n for n in notes)
    assert check(model / "fold_1", fixture(D906)).source.details["fold"] == "1"
    code, _, err = run_cli("check", model, fixture(D906), "--fold", "3")
    assert code == 3 and "no fold_3 in the model folder (folds with a checkpoint: 1, all)" in one_line(err)
    code, _, err = run_cli("check", model, fixture(D906), "--fold", "0")
    assert code == 3
    assert "fold_0 holds none of checkpoint_final.pth, checkpoint_best.pth, checkpoint_latest.pth" in one_line(err)


def test_directory_that_is_neither(tmp_path, run_cli):
    code, _, err = run_cli("check", tmp_path, fixture(D906))
    assert code == 3 and "neither a trained-model folder" in one_line(err)
    code, _, err = run_cli("check", fixture(D906), tmp_path)
    assert code == 3 and "is a directory without nnUNetPlans.json" in one_line(err)


def test_2d_checkpoint_checked_as_3d_names_the_dimension(store):
    """A 2D checkpoint checked with -c 3d_fullres: the cause is the weights' dimension, not "(unexplained)"."""
    from plancheck.render import render

    report = check(store.paths["2d.pth"], fixture(D906), configuration="3d_fullres")
    assert not report.compatible
    assert any("differs from the checkpoint's own configuration 2d" in w for w in report.warnings)
    assert "(unexplained)" not in render(report, "text")
    (rc,) = report.root_causes
    assert (rc.cause.source, rc.cause.target) == ("2D", "3D")
    assert "2d" in rc.note and "3d_fullres" in rc.note
    failing = [r for r in report.tensors if r.status.value in ("mismatch", "missing")]
    assert rc.tensors == len(failing)
def test_latest_checkpoint_is_used_last_and_said(nnunet_tree, run_cli):
    model = nnunet_tree["model"]
    fold_0 = model / "fold_0"
    shutil.copy(nnunet_tree["model"] / "fold_1" / "checkpoint_final.pth", fold_0 / "checkpoint_latest.pth")
    report = check(model, fixture(D906), fold="0")
    assert report.compatible
    assert report.source.details["checkpoint"] == str(fold_0 / "checkpoint_latest.pth")
    assert any("checkpoint_latest.pth" in w and "fold_0" in w for w in report.warnings)
    code, out, _ = run_cli("check", model, fixture(D906), "--fold", "0")
    assert code == 0 and "fold_0/checkpoint_latest.pth" in out and "training may not have finished" in out
    # final and best still win over latest
    shutil.copy(nnunet_tree["model"] / "fold_1" / "checkpoint_final.pth", fold_0 / "checkpoint_best.pth")
    assert check(model, fixture(D906), fold="0").source.details["checkpoint"].endswith("checkpoint_best.pth")
    # without --fold, the first fold with any checkpoint is taken (fold_0 now has one)
    assert check(model, fixture(D906)).source.details["fold"] == "0"


def test_next_commands_name_the_checkpoint_by_absolute_quoted_path(store, tmp_path, monkeypatch, run_cli):
    import shlex

    folder = tmp_path / "my weights"
    folder.mkdir()
    shutil.copy(store.paths["3d_fullres.pth"], folder / "checkpoint_final.pth")
    target = pathlib.Path(shutil.copytree(FIXTURES / "Dataset905_CardiacCine", tmp_path / "Dataset905_CardiacCine"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "my weights/checkpoint_final.pth", target / "nnUNetPlans.json", "--fix")
    assert code == 0, err
    train = next(line.strip() for line in out.splitlines() if line.strip().startswith("nnUNetv2_train"))
    words = shlex.split(train)
    assert words[words.index("-pretrained_weights") + 1] == str(folder / "checkpoint_final.pth")
    assert shlex.quote(str(folder / "checkpoint_final.pth")) in train


def test_target_plans_apply_to_the_target_only(nnunet_tree, run_cli):
    # -p names both sides (the source's model folder and the target's plans); --target-plans the target's alone
    code, out, err = run_cli("check", "906", "906", "--target-plans", "nnUNetResEncUNetMPlans", "--format", "json")
    assert code == 1, err  # a plain U-Net's weights in a ResEnc network
    d = json.loads(out)
    assert d["source"]["details"]["model_folder"].endswith("nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert d["target"]["plans"].endswith("nnUNetResEncUNetMPlans.json")
    report = check("906", "906", target_plans_identifier="nnUNetResEncUNetMPlans")
    assert report.target.plans.endswith("nnUNetResEncUNetMPlans.json") and not report.compatible
    # -p alone still names both
    code, _, err = run_cli("check", "906", "906", "-p", "nnUNetResEncUNetMPlans")
    assert code == 3 and "no trained model nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres" in one_line(err)
    code, out, err = run_cli("matrix", "906", "906", "--target-plans", "nnUNetResEncUNetMPlans", "--format", "json")
    assert code == 1, err
    assert json.loads(out)["rows"][0]["target"].endswith("nnUNetResEncUNetMPlans.json")


@pytest.mark.parametrize(("option", "value"), [("--fold", "0"), ("--trust-checkpoint", None),
                                               ("--source-plans", str(fixture(D906)))])
def test_source_options_that_do_nothing_for_plans_are_usage_errors(run_cli, option, value):
    args = [option] if value is None else [option, value]
    for command in ("check", "matrix"):
        code, out, err = run_cli(command, fixture(D901), fixture(D906), *args)
        assert code == 2, (command, out, err)
        assert option in one_line(err) and "plans" in one_line(err)
    keyword = option.lstrip("-").replace("-", "_")
    from plancheck.errors import UsageError

    with pytest.raises(UsageError, match=f"`{keyword}`") as caught:  # a Python caller is told its parameter
        check(fixture(D901), fixture(D906), **{keyword: True if value is None else value})
    assert "--" not in str(caught.value)


def test_fold_still_applies_to_checkpoints_and_model_folders(store, nnunet_tree):
    assert check(nnunet_tree["model"], fixture(D906), fold="1").source.details["fold"] == "1"
    assert check(store.paths["3d_fullres.pth"], fixture(D906), fold="3").source.details["fold"] == "3"
