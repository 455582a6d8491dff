"""The safe checkpoint reader: layouts read back exactly, nothing from the file ever runs."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import os
import pickle
import pickletools
import random
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plancheck.checkpoint import (
    ALLOWED_GLOBALS,
    Checkpoint,
    TensorRecord,
    read_checkpoint,
)
from plancheck.errors import CheckpointError

# --------------------------------------------------------------------------- helpers


def make_net() -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    return PlainConvUNet(
        input_channels=1,
        n_stages=3,
        features_per_stage=(4, 8, 16),
        conv_op=torch.nn.Conv3d,
        kernel_sizes=3,
        strides=(1, 2, 2),
        n_conv_per_stage=2,
        num_classes=3,
        n_conv_per_stage_decoder=1,
        conv_bias=True,
        norm_op=torch.nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=torch.nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=True,
    )


PLANS = {
    "dataset_name": "Dataset001_Test",
    "plans_name": "nnUNetPlans",
    "configurations": {
        "3d_fullres": {
            "patch_size": [32, 32, 32],
            "spacing": [1.0, 0.8, 0.8],
            "architecture": {"network_class_name": "PlainConvUNet"},
        }
    },
}
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                "numTraining": 4, "file_ending": ".nii.gz"}


def nnunet_checkpoint(net: torch.nn.Module) -> dict:
    """The exact structure nnUNetTrainer.save_checkpoint writes."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": opt.state_dict(),
        "grad_scaler_state": torch.amp.GradScaler("cpu").state_dict(),
        "logging": {
            "mean_fg_dice": [np.float64(0.5), np.float64(0.6)],
            "ema_fg_dice": [np.float64(0.5), np.float64(0.51)],
            "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.6)]] * 2,
            "train_losses": [np.float64(-0.1), np.float64(-0.2)],
            "val_losses": [np.float64(-0.05), np.float64(-0.15)],
            "lrs": [0.01, 0.0099],
            "epoch_start_timestamps": [1.0, 2.0],
            "epoch_end_timestamps": [1.5, 2.5],
        },
        "_best_ema": np.float64(0.51),
        "current_epoch": 2,
        "init_args": {
            "plans": PLANS,
            "configuration": "3d_fullres",
            "fold": 0,
            "dataset_json": DATASET_JSON,
            "device": torch.device("cuda", 0),
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def storage_groups(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, ...]]:
    groups: dict[tuple, list[str]] = {}
    for k, v in state_dict.items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride())
        groups.setdefault(ident, []).append(k)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def rewrite_data_pkl(src: Path, dst: Path, edit) -> None:
    """Copy the torch zip *src* to *dst* with data.pkl replaced by edit(data.pkl)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data.pkl"):
                data = edit(data)
            zout.writestr(info, data)


def data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        return zf.read(name)


def globals_in(pkl: bytes) -> set[str]:
    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def write_pickle_zip(path: Path, obj: object, persistent_id=None) -> Path:
    """A zip in torch's layout whose data.pkl is *obj* pickled (protocol 2) by plain pickle."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    if persistent_id is not None:
        pickler.persistent_id = persistent_id  # type: ignore[method-assign]
    pickler.dump(obj)
    return write_zip(path, {"archive/data.pkl": buf.getvalue(), "archive/version": b"3\n",
                            "archive/byteorder": b"little"})


def read_error(path: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    return msg


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory) -> tuple[Path, torch.nn.Module, dict]:
    torch.manual_seed(0)
    net = make_net()
    ckpt = nnunet_checkpoint(net)
    path = tmp_path_factory.mktemp("nnunet") / "checkpoint_final.pth"
    torch.save(ckpt, path)
    return path, net, ckpt


@pytest.fixture(scope="module")
def nnunet_read(nnunet) -> Checkpoint:
    return read_checkpoint(nnunet[0])


# --------------------------------------------------------------------------- nnU-Net checkpoints


def test_nnunet_shapes_dtypes_and_key_order(nnunet, nnunet_read):
    _, net, _ = nnunet
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: r.shape for k, r in nnunet_read.state_dict.items()}
    assert got == expected
    assert list(got) == list(expected)
    assert {r.dtype for r in nnunet_read.state_dict.values()} == {"float32"}
    assert {r.location for r in nnunet_read.state_dict.values()} == {"cpu"}
    for k, v in net.state_dict().items():
        rec = nnunet_read.state_dict[k]
        assert rec.stride == v.stride()
        assert rec.storage_offset == v.storage_offset()
        assert rec.numel == v.numel()


def test_nnunet_metadata(nnunet, nnunet_read):
    path, _, ckpt = nnunet
    c = nnunet_read
    assert c.format == "torch-zip"
    assert c.path == str(path)
    assert c.container_key == "network_weights"
    assert c.top_level_keys == tuple(ckpt)
    assert c.trainer_name == "nnUNetTrainer"
    assert c.current_epoch == 2
    assert c.init_args is not None
    assert c.init_args["plans"] == PLANS
    assert c.init_args["dataset_json"] == DATASET_JSON
    assert c.init_args["configuration"] == "3d_fullres"
    assert c.init_args["fold"] == 0
    assert c.init_args["device"] == "cuda:0"


def test_alias_groups_match_shared_storage(nnunet, nnunet_read):
    _, net, _ = nnunet
    expected = storage_groups(net.state_dict())
    assert expected, "PlainConvUNet is expected to register tensors under several names"
    assert nnunet_read.alias_groups() == expected
    group = next(g for g in nnunet_read.alias_groups()
                 if "encoder.stages.0.0.convs.0.conv.weight" in g)
    assert "encoder.stages.0.0.convs.0.all_modules.0.weight" in group
    assert "decoder.encoder.stages.0.0.convs.0.conv.weight" in group


def test_records_are_frozen(nnunet_read):
    rec = next(iter(nnunet_read.state_dict.values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.shape = (1,)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        nnunet_read.format = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        nnunet_read.state_dict["x"] = rec  # type: ignore[index]
    assert not hasattr(rec, "__dict__")


def test_tensors_recorded_on_cuda(nnunet, tmp_path):
    src = nnunet[0]
    dst = tmp_path / "cuda.pth"

    def to_cuda(pkl: bytes) -> bytes:
        old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE, length-prefixed
        assert old in pkl
        return pkl.replace(old, new)

    rewrite_data_pkl(src, dst, to_cuda)
    # The rewrite is a valid torch file (torch itself needs map_location on this machine).
    assert torch.load(dst, map_location="cpu", weights_only=False)["current_epoch"] == 2
    c = read_checkpoint(dst)
    assert {r.location for r in c.state_dict.values()} == {"cuda:0"}
    assert [r.shape for r in c.state_dict.values()] == [
        r.shape for r in read_checkpoint(src).state_dict.values()
    ]


NUMPY_INIT_ARGS = {
    "scalar": np.float64(0.25),
    "f32": np.float32(1.5),
    "array": np.arange(6, dtype=np.int64).reshape(2, 3),
    "spacing": np.array([1.0, 0.8, 0.8]),
}


def _numpy_checkpoint(path: Path) -> Path:
    torch.save({"network_weights": {"w": torch.zeros(2, 3)}, "init_args": dict(NUMPY_INIT_ARGS),
                "_best_ema": np.float64(0.5), "logging": {"x": [np.float64(1.0)]}}, path)
    return path


@pytest.mark.parametrize("numpy_names", ["numpy 2", "numpy 1"])
def test_numpy_1_and_2_module_names(tmp_path, numpy_names):
    path = _numpy_checkpoint(tmp_path / "np2.pth")
    assert "numpy._core.multiarray.scalar" in globals_in(data_pkl(path))
    if numpy_names == "numpy 1":
        old = tmp_path / "np2.pth"
        path = tmp_path / "np1.pth"
        # Protocol 2 GLOBAL opcodes are newline-terminated text: no length to fix up.
        rewrite_data_pkl(old, path, lambda pkl: pkl.replace(b"cnumpy._core.multiarray\n",
                                                            b"cnumpy.core.multiarray\n"))
        names = globals_in(data_pkl(path))
        assert "numpy.core.multiarray.scalar" in names
        assert "numpy.core.multiarray._reconstruct" in names
        assert not any(n.startswith("numpy._core") for n in names)
    c = read_checkpoint(path)
    assert c.state_dict["w"].shape == (2, 3)
    got = c.init_args
    assert got is not None
    assert got["scalar"] == 0.25 and type(got["scalar"]) is np.float64
    assert got["f32"] == 1.5 and type(got["f32"]) is np.float32
    np.testing.assert_array_equal(got["array"], NUMPY_INIT_ARGS["array"])
    assert got["array"].dtype == np.int64
    np.testing.assert_array_equal(got["spacing"], NUMPY_INIT_ARGS["spacing"])


def test_numpy_values_in_init_args(tmp_path):
    values = {
        "f64": np.float64(1.5),
        "bool": np.bool_(True),
        "str": np.str_("hi"),
        "big_endian": np.array([1, 2], dtype=">i4"),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "unicode": np.array(["ab", "c"]),
        "objects": np.array([1, "x", None], dtype=object),
        "dtype": np.dtype("f4"),
        "dtype_class": type(np.dtype("f8")),
        "set": {1, 2},
        "frozenset": frozenset({3}),
        "bytes": b"xy",
        "empty_bytes": b"",
        "complex": 1 + 2j,
        "slice": slice(1, None),
        "size": torch.Size([2, 3]),
        "torch_dtype": torch.float16,
    }
    path = tmp_path / "np.pth"
    torch.save({"network_weights": {"w": torch.zeros(1)}, "init_args": values}, path)
    got = read_checkpoint(path).init_args
    assert got is not None
    for key in ("f64", "bool", "str", "dtype", "dtype_class", "set", "frozenset", "bytes",
                "empty_bytes", "complex", "slice"):
        assert got[key] == values[key] and type(got[key]) is type(values[key]), key
    for key in ("big_endian", "fortran", "unicode", "objects"):
        assert isinstance(got[key], np.ndarray), key
        assert got[key].dtype == values[key].dtype, key
        np.testing.assert_array_equal(got[key], values[key])
    assert got["size"] == (2, 3)
    assert got["torch_dtype"] == "torch.float16"


class _BadDType:
    """Reduces like numpy.dtype, with a malformed state (one None short)."""

    def __reduce__(self):
        return (np.dtype, ("f8", False, True), (3, "<", None, -1, -1, 0))


class _ScalarOfBadDType:
    def __reduce__(self):
        from numpy._core.multiarray import scalar

        return (scalar, (_BadDType(), b"\0" * 8))


def read_in_subprocess(path: Path) -> str:
    """Read *path* in a fresh interpreter (a crash must not take pytest down); print the error."""
    code = (
        "from plancheck.checkpoint import read_checkpoint\n"
        "from plancheck.errors import CheckpointError\n"
        "try:\n"
        f"    read_checkpoint({str(path)!r})\n"
        "except CheckpointError as e:\n"
        "    print(e)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, timeout=120,
                         capture_output=True, text=True)
    assert out.returncode == 0, f"reader crashed ({out.returncode}): {out.stderr[-2000:]}"
    return out.stdout


def test_malformed_numpy_dtype_state_is_refused_not_a_crash(tmp_path):
    # numpy's own dtype.__setstate__ segfaults on this state; plain pickle.loads crashes.
    path = tmp_path / "baddtype.pth"
    torch.save({"network_weights": {"w": torch.zeros(1)}, "x": _ScalarOfBadDType()}, path)
    assert "unsupported numpy dtype state for 'f8'" in read_in_subprocess(path)


def test_build_cannot_modify_stand_ins(tmp_path):
    import plancheck.checkpoint as ck

    before = ck._torch_device.__defaults__
    # GLOBAL torch.device; BUILD (None, {"__defaults__": (5,)}) -- on a plain function
    # this would replace its default arguments.
    pkl = (b"\x80\x02ctorch\ndevice\n"
           b"N}X\x0c\x00\x00\x00__defaults__K\x05\x85s\x86b.")
    path = write_zip(tmp_path / "build.pth", {"archive/data.pkl": pkl})
    assert "cannot be unpickled" in read_error(path)
    assert ck._torch_device.__defaults__ == before


# --------------------------------------------------------------------------- other layouts


def test_bare_state_dict(tmp_path):
    net = make_net()
    path = tmp_path / "bare.pt"
    torch.save(net.state_dict(), path)
    c = read_checkpoint(path)
    assert c.container_key is None
    assert c.init_args is None and c.trainer_name is None and c.current_epoch is None
    assert list(c.state_dict) == list(net.state_dict())
    assert c.top_level_keys == tuple(net.state_dict())
    assert c.alias_groups() == storage_groups(net.state_dict())


@pytest.mark.parametrize("key", ["state_dict", "model", "state_dict_ema", "model_ema", "network"])
def test_container_keys(tmp_path, key):
    path = tmp_path / "c.pt"
    torch.save({"epoch": 3, "meta": {"a": 1}, key: {"a.weight": torch.zeros(3, 2)}}, path)
    c = read_checkpoint(path)
    assert c.container_key == key
    assert c.state_dict["a.weight"].shape == (3, 2)


def test_known_container_preferred_over_others(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"model": "unet", "state_dict_ema": {"b": torch.zeros(1)},
                "state_dict": {"a": torch.zeros(2)}}, path)
    c = read_checkpoint(path)
    assert c.container_key == "state_dict"
    assert list(c.state_dict) == ["a"]


def test_dtypes_views_and_parameters(tmp_path):
    base = torch.zeros(4, 6)
    sd = OrderedDict(
        half=torch.zeros(2, dtype=torch.float16),
        bf16=torch.zeros(2, dtype=torch.bfloat16),
        f64=torch.zeros(2, dtype=torch.float64),
        i64=torch.zeros(2, dtype=torch.int64),
        u8=torch.zeros(2, dtype=torch.uint8),
        b=torch.zeros(2, dtype=torch.bool),
        u16=torch.zeros(2, dtype=torch.uint16),  # _rebuild_tensor_v3 + torch.uint16 global
        param=torch.nn.Parameter(torch.zeros(5)),  # _rebuild_parameter
        base=base,
        row=base[1],
        col=base[:, 2],
    )
    path = tmp_path / "dt.pt"
    torch.save(sd, path)
    c = read_checkpoint(path)
    for name, t in sd.items():
        rec = c.state_dict[name]
        assert rec.dtype == str(t.dtype).removeprefix("torch."), name
        assert (rec.shape, rec.stride, rec.storage_offset) == (
            tuple(t.shape), t.stride(), t.storage_offset()), name
    assert c.state_dict["row"].storage_key == c.state_dict["base"].storage_key
    assert c.state_dict["col"].storage_offset == 2 and c.state_dict["col"].stride == (6,)
    assert c.alias_groups() == []  # views of one storage are not aliases


# --------------------------------------------------------------------------- malicious files


class _System:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


SYSTEM_GLOBAL = f"{os.system.__module__}.system"  # posix.system on Linux


@pytest.mark.parametrize("where", ["top level", "inside network_weights", "inside init_args"])
def test_malicious_os_system_is_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = _System(f"touch {marker}")
    if where == "top level":
        obj: object = evil
    elif where == "inside network_weights":
        obj = {"network_weights": {"conv.weight": torch.zeros(2), "conv.bias": evil}}
    else:
        obj = {"network_weights": {"conv.weight": torch.zeros(2)}, "init_args": {"x": [evil]}}
    path = tmp_path / "evil.pth"
    torch.save(obj, path)
    assert SYSTEM_GLOBAL in globals_in(data_pkl(path))
    msg = read_error(path)
    assert f"refuses to load global {SYSTEM_GLOBAL}" in msg
    assert not marker.exists()


def test_malicious_exec_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle_zip(tmp_path / "evil.pth",
                            {"network_weights": _Exec(f"open({str(marker)!r}, 'w').write('x')")})
    msg = read_error(path)
    assert "refuses to load global builtins.exec" in msg
    assert not marker.exists()


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    msg = read_error(path)
    assert "refuses to load global torch.nn.modules.linear.Linear" in msg


@pytest.mark.parametrize("name", ["getattr", "eval", "__import__", "open", "setattr"])
def test_dangerous_builtins_are_not_allowed(name):
    assert f"builtins.{name}" not in ALLOWED_GLOBALS
    assert "torch.load" not in ALLOWED_GLOBALS
    assert "copyreg._reconstructor" not in ALLOWED_GLOBALS


def test_reading_never_imports_torch(nnunet):
    code = (
        "import sys\n"
        "from plancheck.checkpoint import read_checkpoint\n"
        f"c = read_checkpoint({str(nnunet[0])!r})\n"
        "assert len(c.state_dict) > 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)


def test_only_data_pkl_is_opened(nnunet, monkeypatch):
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    read_checkpoint(nnunet[0])
    assert opened == ["checkpoint_final/data.pkl"]
    assert not any("/data/" in n for n in opened)


# --------------------------------------------------------------------------- broken files


def test_truncated_checkpoint(nnunet, tmp_path):
    raw = nnunet[0].read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(raw[: len(raw) // 2])
    assert "damaged zip archive" in read_error(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(random.Random(0).randbytes(4096))
    msg = read_error(path)
    assert "not a zip archive: legacy torch serialisation or not a torch checkpoint" in msg


def test_legacy_torch_file(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    msg = read_error(path)
    assert "not a zip archive: legacy torch serialisation" in msg
    assert "_use_new_zipfile_serialization=False" in msg


def test_legacy_torch_file_trusted(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3, 2)}, path, _use_new_zipfile_serialization=False)
    c = read_checkpoint(path, trust=True)
    assert c.format == "torch-trusted"
    assert c.state_dict["w"].shape == (3, 2)


def test_zip_without_data_pkl(tmp_path):
    path = write_zip(tmp_path / "nopkl.pth", {"archive/version": b"3\n", "archive/data/0": b"x"})
    msg = read_error(path)
    assert "zip archive without <folder>/data.pkl" in msg
    assert "archive/version" in msg


def test_zip_with_two_data_pkl(tmp_path, nnunet):
    pkl = data_pkl(nnunet[0])
    path = write_zip(tmp_path / "two.pth", {"a/data.pkl": pkl, "b/data.pkl": pkl})
    assert "zip archive with 2 data.pkl entries (a/data.pkl, b/data.pkl)" in read_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    assert "empty file (0 bytes)" in read_error(path)


def test_missing_file(tmp_path):
    assert read_error(tmp_path / "nope.pth").endswith(": no such file")


def test_directory(tmp_path):
    assert "is a directory" in read_error(tmp_path)


def test_crc_error(nnunet, tmp_path):
    raw = bytearray(nnunet[0].read_bytes())
    pkl = data_pkl(nnunet[0])
    at = raw.find(pkl[:64]) + 40  # data.pkl is stored uncompressed; flip a byte in it
    raw[at] ^= 0xFF
    path = tmp_path / "crc.pth"
    path.write_bytes(bytes(raw))
    msg = read_error(path)
    assert "damaged zip archive" in msg and "CRC" in msg


def test_truncated_pickle_inside_zip(nnunet, tmp_path):
    path = tmp_path / "cut.pth"
    rewrite_data_pkl(nnunet[0], path, lambda pkl: pkl[: len(pkl) // 2])
    assert "data.pkl cannot be unpickled" in read_error(path)


def test_no_tensors(tmp_path):
    path = tmp_path / "none.pth"
    torch.save({"epoch": 3, "plans": PLANS}, path)
    assert "holds no tensors" in read_error(path)


def test_top_level_list(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    assert "top-level object is a list" in read_error(path)


def test_no_state_dict_among_keys(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"network_weights": {"a": torch.zeros(1), "n": 3}, "other": [torch.zeros(1)]}, path)
    msg = read_error(path)
    assert "network_weights is not a state_dict: entry 'n' is of type int, not a tensor" in msg


class _FakeStorage:
    pass


def test_tensor_past_its_storage(tmp_path):
    from torch._utils import _rebuild_tensor_v2

    class BadTensor:
        def __reduce__(self):
            return (_rebuild_tensor_v2, (_FakeStorage(), 0, (10,), (1,), False, OrderedDict()))

    def pid(obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None

    path = write_pickle_zip(tmp_path / "bad.pth", {"w": BadTensor()}, persistent_id=pid)
    assert "reaches element 10 of storage '0', which holds 4" in read_error(path)


def test_rebuild_without_storage(tmp_path):
    from torch._utils import _rebuild_tensor_v2

    class BadTensor:
        def __reduce__(self):
            return (_rebuild_tensor_v2, ("not a storage", 0, (1,), (1,), False, OrderedDict()))

    path = write_pickle_zip(tmp_path / "bad.pth", {"w": BadTensor()})
    assert "its storage is a str" in read_error(path)


def test_unknown_persistent_id(tmp_path):
    path = write_pickle_zip(tmp_path / "bad.pth", {"w": _FakeStorage()},
                            persistent_id=lambda o: "x" if isinstance(o, _FakeStorage) else None)
    assert "unknown persistent id" in read_error(path)


def _small_checkpoint_pkl() -> bytes:
    buf = io.BytesIO()
    torch.save({"network_weights": {"a": torch.zeros(2, 3), "b": torch.zeros(3)},
                "init_args": {"device": torch.device("cuda", 0), "x": np.float64(1.0),
                              "arr": np.array([[1, 2]], dtype=">i2"), "s": {1, 2}},
                "current_epoch": 1}, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        return zf.read(name)


SMALL_PKL = _small_checkpoint_pkl()


def test_every_truncation_is_a_checkpoint_error(tmp_path):
    for cut in range(len(SMALL_PKL)):
        path = write_zip(tmp_path / "t.pth", {"archive/data.pkl": SMALL_PKL[:cut]})
        with pytest.raises(CheckpointError):
            read_checkpoint(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(SMALL_PKL) - 1), st.integers(0, 255)),
                      min_size=1, max_size=4))
def test_corrupted_pickle_only_raises_checkpoint_error(tmp_path, edits):
    pkl = bytearray(SMALL_PKL)
    for at, value in edits:
        pkl[at] = value
    path = write_zip(tmp_path / "fuzz.pth", {"archive/data.pkl": bytes(pkl)})
    try:
        c = read_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e)
    else:
        assert all(isinstance(r, TensorRecord) for r in c.state_dict.values())


# --------------------------------------------------------------------------- safetensors


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]],
                      metadata: dict | None = None, header: bytes | None = None) -> Path:
    """tensors: name -> (dtype, shape, itemsize); data is zeros."""
    entries: dict[str, object] = {}
    if metadata is not None:
        entries["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape, itemsize) in tensors.items():
        n = itemsize
        for d in shape:
            n *= d
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if header is None:
        header = json.dumps(entries).encode()
        header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * offset)
    return path


def test_safetensors(tmp_path):
    path = write_safetensors(tmp_path / "model.bin", {  # detected by content, not extension
        "z.weight": ("F32", [4, 1, 3, 3, 3], 4),
        "a.bias": ("F16", [4], 2),
        "m.bf": ("BF16", [2, 2], 2),
        "n.count": ("I64", [], 8),
        "u": ("U8", [3], 1),
        "flag": ("BOOL", [1], 1),
    }, metadata={"format": "pt"})
    c = read_checkpoint(path)
    assert c.format == "safetensors"
    assert c.container_key is None and c.init_args is None
    assert list(c.state_dict) == ["z.weight", "a.bias", "m.bf", "n.count", "u", "flag"]
    assert c.state_dict["z.weight"] == TensorRecord((4, 1, 3, 3, 3), "float32", "z.weight", "cpu")
    assert [r.dtype for r in c.state_dict.values()] == [
        "float32", "float16", "bfloat16", "int64", "uint8", "bool"]
    assert c.state_dict["n.count"].shape == () and c.state_dict["n.count"].numel == 1
    assert c.alias_groups() == []
    assert read_checkpoint(path, trust=True).format == "safetensors"


def test_safetensors_written_by_the_library(tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.InstanceNorm3d(4, affine=True))
    path = tmp_path / "m.safetensors"
    st_torch.save_file(net.state_dict(), str(path))
    c = read_checkpoint(path)
    assert {k: r.shape for k, r in c.state_dict.items()} == {
        k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]', "corrupt safetensors header"),
        (b'{"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}', "unknown dtype 'Q7'"),
        (b'{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', "spans 8 bytes"),
        (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}}', "data_offsets outside"),
        (b'{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}', "no valid shape"),
        (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
         b' "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', "duplicate key"),
        (b'{"__metadata__": {}}', "holds no tensors"),
        (b'{"a": 1}', "entry 'a' is not an object"),
        (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}\xff', "UnicodeDecodeError"),
    ],
)
def test_corrupt_safetensors_header(tmp_path, header, expected):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    assert expected in read_error(path)


def test_safetensors_header_too_large(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 200_000_000) + b'{"a": 1}')
    assert "over the 100000000 byte limit" in read_error(path)


def test_safetensors_truncated_header(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 5000) + b'{"a": 1}')
    assert "truncated safetensors file" in read_error(path)


# --------------------------------------------------------------------------- trusted


def test_trusted_matches_safe_reader(nnunet, nnunet_read):
    trusted = read_checkpoint(nnunet[0], trust=True)
    assert trusted.format == "torch-trusted"
    assert {k: r.shape for k, r in trusted.state_dict.items()} == {
        k: r.shape for k, r in nnunet_read.state_dict.items()}
    assert list(trusted.state_dict) == list(nnunet_read.state_dict)
    assert {r.location for r in trusted.state_dict.values()} == {"meta"}
    for k, r in trusted.state_dict.items():
        safe = nnunet_read.state_dict[k]
        assert (r.dtype, r.storage_key, r.storage_offset, r.stride) == (
            safe.dtype, safe.storage_key, safe.storage_offset, safe.stride)
    assert trusted.alias_groups() == nnunet_read.alias_groups()
    assert trusted.container_key == "network_weights"
    assert trusted.init_args == nnunet_read.init_args
    assert trusted.trainer_name == "nnUNetTrainer" and trusted.current_epoch == 2


def test_trusted_reports_torch_load_failure(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(random.Random(1).randbytes(512))
    assert "torch.load failed" in read_error(path, trust=True)


# --------------------------------------------------------------------------- denial of service


def test_deeply_nested_pickle_is_refused_not_a_crash(tmp_path):
    # A 1 MB pickle of nested 1-tuples used as a dict key segfaults CPython's tuple hash.
    pkl = b"\x80\x02}q\x00(" + b")" + b"\x85" * 1_000_000 + b"Nu."  # {((((),),),...): None}
    path = write_zip(tmp_path / "deep.pth", {"archive/data.pkl": pkl})
    assert "nests objects deeper than" in read_in_subprocess(path)


def test_huge_memo_index_is_refused(tmp_path):
    # LONG_BINPUT 2**31-1 would make the C unpickler allocate a 16 GiB memo.
    pkl = b"\x80\x02}r\xff\xff\xff\x7f."
    path = write_zip(tmp_path / "memo.pth", {"archive/data.pkl": pkl})
    assert "memo index 2147483647 out of range" in read_error(path)
