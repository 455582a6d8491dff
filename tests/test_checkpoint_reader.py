"""The safe checkpoint reader: layouts read back exactly, nothing from the file ever runs."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import pickletools
import random
import re
import struct
import subprocess
import sys
import warnings
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plancheck.inputs.checkpoint.scan as scan_module
import plancheck.inputs.checkpoint.unpickle as unpickle_module
from plancheck.inputs.checkpoint import (
    ALLOWED_GLOBALS,
    MAX_PICKLE_NESTING,
    Checkpoint,
    TensorRecord,
    read_checkpoint,
)
from plancheck.inputs.checkpoint.scan import _prescan, _tensor_record_pattern
from plancheck.errors import CheckpointError
from pickle_payloads import Exec as _Exec, System as _System

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
    """The exact structure nnUNetTrainer.save_checkpoint writes, after one optimizer step."""
    from nnunet_oracle import nnunet_checkpoint as write

    return write(net, PLANS, DATASET_JSON, "3d_fullres", step=True)


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
        "from plancheck.inputs.checkpoint import read_checkpoint\n"
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
    import plancheck.inputs.checkpoint.unpickle as ck

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
        "from plancheck.inputs.checkpoint import read_checkpoint\n"
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


# --------------------------------------------------------------------------- pre-scan: the walker
#
# plancheck.inputs.checkpoint.scan._prescan is a hand-written opcode walker with fast paths. It must
# decide exactly what the pickletools-based rule below (its previous implementation, kept
# verbatim as the reference) decides: accept, refuse as too deep, refuse a memo index,
# or refuse as malformed.

_REF_PUSH_LEAF = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT", "NONE", "NEWTRUE",
    "NEWFALSE", "GLOBAL", "PERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
})
_REF_PUSH_EMPTY = frozenset({"EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"})
_REF_FROM_MARK_BUILD = frozenset({"LIST", "TUPLE", "DICT", "FROZENSET", "INST", "OBJ"})
_REF_FROM_MARK_EXTEND = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_REF_POP_N_PUSH = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "REDUCE": 2, "NEWOBJ": 2,
                   "NEWOBJ_EX": 3, "STACK_GLOBAL": 2, "BINPERSID": 1}


def _reference_prescan(data: bytes) -> None:
    """The rule as pickletools reads the opcodes (plancheck's pre-scan before the walker)."""
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[int, int] = {}

    def push(depth: int) -> None:
        if depth > MAX_PICKLE_NESTING:
            raise CheckpointError(
                f"data.pkl nests objects deeper than {MAX_PICKLE_NESTING} levels: refusing"
            )
        stack.append(depth)

    def pop_mark() -> list[int]:
        start = marks.pop()
        if start > len(stack):
            raise ValueError("pickle mark beyond the stack")
        items = stack[start:]
        del stack[start:]
        return items

    for n_ops, (op, arg, _) in enumerate(pickletools.genops(data)):
        name = op.name
        if name in _REF_PUSH_LEAF:
            push(0)
        elif name in _REF_PUSH_EMPTY:
            push(1)
        elif name in _REF_POP_N_PUSH:
            n = _REF_POP_N_PUSH[name]
            if len(stack) < n:
                raise ValueError(f"pickle stack underflow at {name}")
            items = stack[-n:]
            del stack[-n:]
            push(0 if name in ("STACK_GLOBAL", "BINPERSID")
                 else 1 + max(items) if name.startswith("TUPLE") else max(items))
        elif name in _REF_FROM_MARK_BUILD:
            push(1 + max(pop_mark(), default=0))
        elif name in _REF_FROM_MARK_EXTEND:
            items = pop_mark()
            stack[-1] = max(stack[-1], 1 + max(items, default=0))
            push(stack.pop())
        elif name == "APPEND":
            v = stack.pop()
            push(max(stack.pop(), v + 1))
        elif name == "SETITEM":
            v, k = stack.pop(), stack.pop()
            push(max(stack.pop(), k + 1, v + 1))
        elif name == "BUILD":
            state = stack.pop()
            push(max(stack.pop(), state))
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            push(stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            idx = len(memo) if name == "MEMOIZE" else int(arg)
            if idx > n_ops:
                raise ValueError(f"pickle memo index {idx} out of range")
            memo[idx] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            push(memo[int(arg)])
        elif name == "STOP":
            break
        # PROTO, FRAME, READONLY_BUFFER, READWRITE_BUFFER: no effect on nesting


def _verdict(scan, data: bytes) -> str:
    """'accepted', 'too deep', 'memo index' or 'malformed'."""
    try:
        with warnings.catch_warnings():  # protocol-0 STRING escapes warn on bad input
            warnings.simplefilter("ignore")
            scan(data)
    except CheckpointError as e:
        assert "nests objects deeper than 200 levels" in str(e)
        return "too deep"
    except (ValueError, IndexError, KeyError) as e:  # UnicodeDecodeError is a ValueError
        return "memo index" if re.search(r"memo index -?\d+ out of range", str(e)) else "malformed"
    return "accepted"


def assert_same_verdict(data: bytes) -> str:
    expected = _verdict(_reference_prescan, data)
    got = _verdict(_prescan, data)
    assert got == expected, f"walker: {got}, rule: {expected}, pickle: {data[:300]!r}"
    return got


def _torch_pkl(obj: object, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    with zipfile.ZipFile(buf) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        return zf.read(name)


@pytest.fixture(scope="module")
def real_pickles(nnunet) -> list[bytes]:
    """data.pkl of torch checkpoints (protocols 2 to 5) and plain pickles (protocols 0 to 5)."""
    net = make_net()
    mixed = {"network_weights": net.state_dict(), "np": [np.float64(1.5), np.arange(3)],
             "set": {1, 2}, "nested": (1, (2, (3,))), "bytes": b"xy", "text": "é€\U0001f600",
             "big": 10**30, "neg": -5, "float": 0.25, "none": None, "flags": [True, False]}
    pickles = [data_pkl(nnunet[0]), SMALL_PKL]
    pickles += [_torch_pkl(mixed, pickle_protocol=p) for p in (2, 3, 4, 5)]
    plain = {"a": [1, 2.5, None, True, "s", b"b", (1, 2), (1, 2, 3, 4), frozenset({1}), set(),
                   bytearray(b"x"), 10**30, -5, -(2**40), 300, 70000, "é"],
             "b": {"c": ((),) * 3, "d": OrderedDict(x=[[[]]])}, "shared": [[1]] * 3}
    pickles += [pickle.dumps(plain, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    return pickles


def test_prescan_accepts_real_pickles(real_pickles):
    for pkl in real_pickles:
        assert assert_same_verdict(pkl) == "accepted"


def test_fast_paths_match_torch_layout(real_pickles):
    # The walker applies a torch tensor record, and a run of _metadata entries, as a whole
    # when they match its patterns; if torch changes its layout the reader stays correct
    # but gets slower: this says so.
    state_dict = make_net().state_dict()
    pkl = _torch_pkl(state_dict)
    matched = list(_tensor_record_pattern().finditer(pkl))
    assert len(matched) == len(state_dict) - 1  # all but the first, which names its globals
    assert all(m.group(1) for m in matched)  # each with its name
    # torch.save (protocol 2) writes every tensor of the nnU-Net checkpoint that way, too
    assert len(list(_tensor_record_pattern().finditer(real_pickles[0]))) >= len(state_dict)
    run, _ = scan_module._dict_entry_patterns()
    metadata = pkl.index(_binunicode("_metadata"))
    first = pkl.index(_binunicode("encoder"), metadata)
    m = run.match(pkl, first)
    assert m is not None and pkl[m.end():m.end() + 1] == b"u"  # all entries after the first


def _mutate(rng: random.Random, pkl: bytes, donors: list[bytes]) -> bytes:
    out = bytearray(pkl)
    kind = rng.random()
    if kind < 0.35:  # overwrite bytes
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind < 0.5:  # insert a byte
        at = rng.randrange(len(out))
        out[at:at] = bytes([rng.randrange(256)])
    elif kind < 0.6:  # delete bytes
        at = rng.randrange(len(out))
        del out[at:at + rng.randint(1, 5)]
    elif kind < 0.7:  # truncate
        del out[rng.randrange(len(out)):]
    elif kind < 0.85:  # splice in a piece of another pickle
        donor = rng.choice(donors)
        start = rng.randrange(len(donor))
        at = rng.randrange(len(out))
        out[at:at] = donor[start:start + rng.randint(1, 40)]
    else:  # change a memo index: the argument of a PUT or GET
        spots = _memo_spots(pkl)
        if spots:
            at = rng.choice(spots) + 1
            out[at] = rng.choice([0, 1, 2, out[at] - 1 & 0xFF, out[at] + 1 & 0xFF, 0xFF])
    return bytes(out)


_MEMO_SPOTS: dict[bytes, list[int]] = {}


def _memo_spots(pkl: bytes) -> list[int]:
    """Positions of the BINPUT / LONG_BINPUT / BINGET / LONG_BINGET opcodes of *pkl*."""
    if pkl not in _MEMO_SPOTS:
        _MEMO_SPOTS[pkl] = [pos for op, _, pos in pickletools.genops(pkl)
                            if op.name in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET")]
    return _MEMO_SPOTS[pkl]


def test_prescan_matches_the_rule_on_mutated_pickles(real_pickles):
    rng = random.Random(20240611)
    small = real_pickles[1:]
    verdicts = Counter()
    for _ in range(1500):
        verdicts[assert_same_verdict(_mutate(rng, rng.choice(small), real_pickles))] += 1
    for _ in range(100):  # the nnU-Net checkpoint: tensor records, aliases, BINPUT -> LONG_BINPUT
        verdicts[assert_same_verdict(_mutate(rng, real_pickles[0], real_pickles))] += 1
    assert min(verdicts[v] for v in ("accepted", "memo index", "malformed")) >= 20, verdicts


def test_prescan_fast_path_agrees_with_opcode_by_opcode(real_pickles, monkeypatch):
    rng = random.Random(7)
    cases = [real_pickles[0]] + [_mutate(rng, real_pickles[0], real_pickles) for _ in range(100)]
    fast = [_verdict(_prescan, pkl) for pkl in cases]
    monkeypatch.setattr(scan_module, "_tensor_record_pattern", lambda: re.compile(rb"(?!)"))
    monkeypatch.setattr(scan_module, "_dict_entries", lambda *args: 0)
    assert [_verdict(_prescan, pkl) for pkl in cases] == fast


def _get(idx: int) -> bytes:
    return b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx)


def _put(idx: int) -> bytes:
    return b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx)


def _binunicode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


#: Memoizes what torch's tensor records GET: 0 _rebuild_tensor_v2, 1 "storage",
#: 2 FloatStorage, 3 "cpu", 4 OrderedDict -- all depth 0.
_RECORD_PRELUDE = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00" + _binunicode("storage")
                   + b"q\x01ctorch\nFloatStorage\nq\x02" + _binunicode("cpu") + b"q\x03"
                   + b"ccollections\nOrderedDict\nq\x04")


def _tensor_record(first_put: int, gets=(0, 1, 2, 3, 4), key: str | int = "7",
                   size: bytes = b"K\x02K\x03\x86", stride: bytes = b"K\x03K\x01\x86",
                   puts: list[int] | None = None, name: str | None = None) -> bytes:
    """A tensor as torch.save pickles it (after its *name*, in a state_dict); memo indices
    from *first_put* unless *puts* says."""
    n_puts = 5 + (name is not None) + isinstance(key, str) + (size != b")") + (stride != b")")
    idx = iter(puts if puts is not None else range(first_put, first_put + n_puts))
    fn, storage, stype, location, hooks = gets
    out = b"" if name is None else _binunicode(name) + _put(next(idx))
    out += _get(fn) + b"((" + _get(storage) + _get(stype)
    out += _binunicode(key) + _put(next(idx)) if isinstance(key, str) else _get(key)
    out += _get(location) + b"K\x06t" + _put(next(idx)) + b"QK\x00"
    out += size + (_put(next(idx)) if size != b")" else b"")
    out += stride + (_put(next(idx)) if stride != b")" else b"")
    out += b"\x89" + _get(hooks) + b")R" + _put(next(idx)) + b"t" + _put(next(idx))
    return out + b"R" + _put(next(idx))


def _version_entries(first_put: int, names=("a", "b.c", "d"), get: int = 0,
                     puts: list[int] | None = None) -> bytes:
    """{name: {"version": 1}, ...} entries as torch pickles a state_dict's _metadata."""
    idx = iter(puts if puts is not None else range(first_put, first_put + 2 * len(names)))
    return b"".join(_binunicode(name) + _put(next(idx)) + b"}" + _put(next(idx)) + _get(get)
                    + b"K\x01s" for name in names)


#: Memoizes "version" at index 0 (depth 0) and opens an (empty) dict for the entries.
_VERSION_PRELUDE = b"\x80\x02" + _binunicode("version") + b"q\x000}q\x01("


def _nested_tuple(depth: int) -> bytes:
    """An object of depth *depth* (>= 1) on the stack: ) then depth - 1 TUPLE1s."""
    return b")" + b"\x85" * (depth - 1)


EDGE_CASES = {
    # memo indices against the opcode's ordinal (PROTO is opcode 0)
    "BINPUT at its ordinal": (b"\x80\x02Nq\x02.", "accepted"),
    "BINPUT past its ordinal": (b"\x80\x02Nq\x03.", "memo index"),
    "LONG_BINPUT at its ordinal": (b"\x80\x02NNr\x03\x00\x00\x00h\x03.", "accepted"),
    "LONG_BINPUT past its ordinal": (b"\x80\x02NNr\x04\x00\x00\x00.", "memo index"),
    "LONG_BINPUT far past": (b"\x80\x02}r\xff\xff\xff\x7f.", "memo index"),
    "PUT past its ordinal, after sequential PUTs": (b"Nq\x00q\x01q\x02q\x05.", "memo index"),
    "PUT text at its ordinal": (b"Np1\n.", "accepted"),
    "PUT text past its ordinal": (b"Np2\n.", "memo index"),
    "PUT text negative": (b"Np-5\ng-5\n\x85.", "accepted"),
    "GET text negative never put": (b"Ng-5\n.", "malformed"),
    "PUT text 00 is index 0": (b"Np00\nh\x00.", "accepted"),
    "MEMOIZE fills len(memo)": (b"\x80\x04N\x94N\x94h\x01h\x00.", "accepted"),
    "MEMOIZE after a hole": (b"\x80\x04NNq\x02\x94h\x01.", "accepted"),
    "MEMOIZE overwrites": (b"\x80\x04NNq\x01\x94h\x00.", "malformed"),
    "GET never put": (b"Nq\x00h\x01.", "malformed"),
    "GET of a hole": (b"\x80\x02NNNq\x03h\x02.", "malformed"),
    "overwritten entry keeps the new depth": (
        b"\x80\x02Nq\x00" + _nested_tuple(200) + b"q\x00h\x00.", "accepted"),
    "overwritten entry nests too deep": (
        b"\x80\x02Nq\x00" + _nested_tuple(200) + b"q\x00h\x00\x85.", "too deep"),
    "a name, then LONG_BINPUT past its ordinal as the last opcode": (
        b"X\x01\x00\x00\x00ar\xff\xff\xff\x7f", "memo index"),
    "a name, then BINPUT past its ordinal as the last opcode": (
        b"\x80\x02X\x01\x00\x00\x00aq\xff", "memo index"),
    "a name, then LONG_BINPUT past its ordinal, then {": (
        b"X\x01\x00\x00\x00ar\xff\xff\xff\x7f}", "memo index"),
    # nesting around the limit
    "depth 200": (_nested_tuple(200) + b".", "accepted"),
    "depth 201": (_nested_tuple(201) + b".", "too deep"),
    "MARK tuples 200 deep": (b"(" * 200 + b"t" * 200 + b".", "accepted"),
    "MARK tuples 201 deep": (b"(" * 201 + b"t" * 201 + b".", "too deep"),
    "lists 201 deep by APPEND": (b"]" * 201 + b"a" * 200 + b".", "too deep"),
    "dict key 200 deep by SETITEM": (b"}" + _nested_tuple(199) + b"Ns.", "accepted"),
    "dict key 201 deep by SETITEM": (b"}" + _nested_tuple(200) + b"Ns.", "too deep"),
    "nesting through the memo": (b")q\x00" + b"h\x00\x85q\x00" * 199 + b".", "accepted"),
    "nesting through the memo, too deep": (b")q\x00" + b"h\x00\x85q\x00" * 200 + b".", "too deep"),
    # malformed
    "empty": (b"", "malformed"),
    "no STOP": (b"\x80\x02N", "malformed"),
    "only STOP": (b".", "accepted"),
    "bytes after STOP": (b"N.\xff\xff", "accepted"),
    "unknown opcode": (b"N\xff.", "malformed"),
    "truncated LONG_BINPUT": (b"Nr\x00\x00", "malformed"),
    "truncated BINUNICODE": (b"X\x05\x00\x00\x00abc", "malformed"),
    "BINUNICODE not UTF-8": (b"X\x02\x00\x00\x00\xff\xfe.", "malformed"),
    "BINUNICODE lone surrogate": (b"X\x03\x00\x00\x00\xed\xa0\x80.", "accepted"),
    "stack underflow": (b"NR.", "malformed"),
    "TUPLE without MARK": (b"Nt.", "malformed"),
    "MARK beyond the stack": (b"N(00t.", "malformed"),
    "PUT on an empty stack": (b"q\x00.", "malformed"),
    "text INT not a number": (b"Ix\n.", "malformed"),
    "text STRING without quotes": (b"Sab\n.", "malformed"),
    "GLOBAL without newline": (b"cos\nsystem", "malformed"),
    # tensor records: the fast path applies only when the rule gives the same answer
    "tensor record": (_RECORD_PRELUDE + _tensor_record(5) + b".", "accepted"),
    "tensor record, storage alias": (
        _RECORD_PRELUDE + _tensor_record(5) + _tensor_record(12, key=7) + b".", "accepted"),
    "tensor record, empty size and stride": (
        _RECORD_PRELUDE + _tensor_record(5, size=b")", stride=b")") + b".", "accepted"),
    "tensor record, flat size and stride": (
        _RECORD_PRELUDE + _tensor_record(5, size=b"(K\x01K\x02K\x03t", stride=b"(K\x06K\x03K\x01t")
        + b".", "accepted"),
    "tensor record GETs a tuple": (
        _RECORD_PRELUDE + b")q\x05" + _tensor_record(6, gets=(0, 1, 2, 3, 5)) + b".", "accepted"),
    "tensor record GETs a hole": (
        _RECORD_PRELUDE + b"Nq\x060" + _tensor_record(7, gets=(0, 1, 2, 3, 5)) + b".",
        "malformed"),
    "tensor record GETs what it PUTs before": (
        _RECORD_PRELUDE + _tensor_record(5, gets=(0, 1, 2, 3, 6)) + b".", "accepted"),
    "tensor record GETs what it PUTs later": (
        _RECORD_PRELUDE + _tensor_record(5, gets=(11, 1, 2, 3, 4)) + b".", "malformed"),
    "tensor record PUTs out of order": (
        _RECORD_PRELUDE + _tensor_record(5, puts=[5, 6, 8, 7, 9, 10, 11]) + b".", "accepted"),
    "tensor record PUTs past their ordinal": (
        _RECORD_PRELUDE + _tensor_record(5, puts=[5, 6, 7, 8, 9, 10, 90]) + b".", "memo index"),
    "tensor record PUTs overwrite": (
        _RECORD_PRELUDE + _tensor_record(5, puts=[5, 6, 7, 8, 9, 10, 4]) + b"h\x04.", "accepted"),
    "tensor record 198 tuples deep": (
        _RECORD_PRELUDE + b"(" * 198 + _tensor_record(5) + b"t" * 198 + b".", "accepted"),
    "tensor record 199 tuples deep": (
        _RECORD_PRELUDE + b"(" * 199 + _tensor_record(5) + b"t" * 199 + b".", "too deep"),
    "tensor record after its GET target was overwritten deeper": (
        _RECORD_PRELUDE + _tensor_record(5) + _nested_tuple(200) + b"q\x04"
        + _tensor_record(12) + b".", "too deep"),
    "tensor record after its GET target was overwritten": (
        _RECORD_PRELUDE + _tensor_record(5) + _nested_tuple(199) + b"q\x04"
        + _tensor_record(12) + b".", "accepted"),
    "version entries": (_VERSION_PRELUDE + _version_entries(2) + b"u.", "accepted"),
    "version entries, LONG_BINPUT from 256 on": (
        _VERSION_PRELUDE + _version_entries(2, names=[str(k) for k in range(200)]) + b"u.",
        "accepted"),
    "version entries, names of 127 and 128 bytes": (
        _VERSION_PRELUDE + _version_entries(2, names=("x" * 127, "y" * 128, "z")) + b"u.",
        "accepted"),
    "version entries, a name not ASCII": (
        _VERSION_PRELUDE + _version_entries(2, names=("a", "é", "b")) + b"u.", "accepted"),
    "version entries, a name not UTF-8": (
        _VERSION_PRELUDE + _version_entries(2, names=("a", "b"))
        + b"X\x01\x00\x00\x00\xffq\x06}q\x07h\x00K\x01su.", "malformed"),
    "version entries GET a dict": (
        _VERSION_PRELUDE + _version_entries(2, get=1) + b"u.", "accepted"),
    "version entries GET their own name": (
        _VERSION_PRELUDE + _version_entries(2, names=("a",)) + _version_entries(4, get=2)
        + b"u.", "accepted"),
    "version entries GET what they PUT later": (
        _VERSION_PRELUDE + _version_entries(2, get=7) + b"u.", "malformed"),
    "version entries PUT out of order": (
        _VERSION_PRELUDE + _version_entries(2, puts=[2, 3, 5, 4, 6, 7]) + b"u.", "accepted"),
    "version entries PUT past their ordinal": (
        _VERSION_PRELUDE + _version_entries(2, puts=[2, 3, 4, 5, 6, 90]) + b"u.", "memo index"),
    "version entries 198 tuples deep": (
        _VERSION_PRELUDE[:-3] + b"(" * 198 + b"}q\x01(" + _version_entries(2) + b"u"
        + b"t" * 198 + b".", "accepted"),
    "version entries 199 tuples deep": (
        _VERSION_PRELUDE[:-3] + b"(" * 199 + b"}q\x01(" + _version_entries(2) + b"u"
        + b"t" * 199 + b".", "too deep"),
    "named tensor records": (
        _RECORD_PRELUDE + b"}(" + _tensor_record(5, name="a") + _tensor_record(13, name="b.c")
        + _tensor_record(21, name="d", key=6) + b"u.", "accepted"),
    "named tensor records, names of 127 and 128 bytes": (
        _RECORD_PRELUDE + b"}(" + _tensor_record(5, name="a") + _tensor_record(13, name="x" * 127)
        + _tensor_record(21, name="y" * 128) + _tensor_record(29, name="z") + b"u.", "accepted"),
    "named tensor records, a name not ASCII": (
        _RECORD_PRELUDE + b"}(" + _tensor_record(5, name="a") + _tensor_record(13, name="é")
        + _tensor_record(21, name="b") + b"u.", "accepted"),
    "named tensor records, one GETs a tuple": (
        _RECORD_PRELUDE + b")q\x05}(" + _tensor_record(6, name="a")
        + _tensor_record(14, name="b", gets=(0, 1, 2, 3, 5)) + _tensor_record(22, name="c")
        + b"u.", "accepted"),
    "named tensor records, one GETs what it PUTs later": (
        _RECORD_PRELUDE + b"}(" + _tensor_record(5, name="a")
        + _tensor_record(13, name="b", gets=(0, 1, 2, 20, 4)) + b"u.", "malformed"),
    "named tensor records, one PUTs past its ordinal": (
        _RECORD_PRELUDE + b"}(" + _tensor_record(5, name="a")
        + _tensor_record(13, name="b", puts=[13, 14, 15, 16, 17, 18, 19, 99]) + b"u.",
        "memo index"),
    "named tensor records 197 tuples deep": (
        _RECORD_PRELUDE + b"(" * 197 + b"}(" + _tensor_record(5, name="a")
        + _tensor_record(13, name="b") + b"u" + b"t" * 197 + b".", "accepted"),
    "named tensor records 198 tuples deep": (
        _RECORD_PRELUDE + b"(" * 198 + b"}(" + _tensor_record(5, name="a")
        + _tensor_record(13, name="b") + b"u" + b"t" * 198 + b".", "too deep"),
    "tensor record crossing index 256": (
        _RECORD_PRELUDE + b"N" * 251 + b"".join(_put(k) for k in range(5, 256)) + b"0" * 251
        + _tensor_record(253, key=1) + b".", "accepted"),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_prescan_edge_cases(name):
    pkl, expected = EDGE_CASES[name]
    assert _verdict(_reference_prescan, pkl) == expected  # the case says what it means to
    assert assert_same_verdict(pkl) == expected


def _random_program(rng: random.Random) -> bytes:
    """A pickle, mostly well formed, aimed at the walker's corners: memo indices around the
    opcode's ordinal (out of order, overwriting, negative, MEMOIZE), nesting around the
    limit, text and rare opcodes, and tensor records that may or may not take the fast path."""
    ops: list[bytes] = []  # one entry per opcode (a record or a chain: several)
    height, marks = 0, []
    memo: set[int] = set()
    n_ops = 0  # opcodes so far: the ordinal of the next one

    def emit(code: bytes, effect: int = 0, count: int = 1) -> None:
        nonlocal height, n_ops
        ops.append(code)
        height = max(0, height + effect)
        n_ops += count

    def memo_index() -> int:
        nxt = max(memo, default=-1) + 1
        return rng.choice([nxt] * 6 + [n_ops, n_ops + 1, rng.randint(0, n_ops + 1), 2**31 - 1])

    if rng.random() < 0.9:
        emit(b"\x80" + bytes([rng.choice([2, 2, 2, 3, 4, 5])]))
    if rng.random() < 0.5:
        emit(_RECORD_PRELUDE[2:], 1, 10)
        height -= 1  # (PUT keeps the item; treat the prelude as leaving nothing usable)
        memo.update(range(5))
    leaves = [b"K\x07", b"M\x00\x01", b"J\xff\xff\xff\xff", b"N", b"\x88", b"\x89",
              b"G" + struct.pack(">d", 0.5), b"I12\n", b"I01\n", b"L5L\n", b"F1.5\n", b"S'ab'\n",
              b"Vx\\u00e9\n", b"U\x02ab", b"B\x01\x00\x00\x00z", b"C\x01z", b"\x8c\x01a",
              b"\x8a\x02\x00\x01", b"\x8b\x01\x00\x00\x00\x05", b"\x82\x01", b"Pid\n",
              b"cos\nsystem\n", _binunicode(rng.choice(["", "a", "é", "\ud800", "x" * 300])),
              b"X\x02\x00\x00\x00\xc3(", b"\x95" + struct.pack("<Q", 9)]
    for _ in range(rng.randint(1, 60)):
        r = rng.random()
        if r < 0.3:
            leaf = rng.choice(leaves)
            emit(leaf, 0 if leaf[:1] == b"\x95" else 1)
        elif r < 0.4:
            emit(rng.choice([b")", b"]", b"}", b"\x8f"]), 1)
        elif r < 0.5:
            marks.append(height)
            emit(b"(")
        elif r < 0.6 and marks:
            mark = marks.pop()
            code = rng.choice([b"t", b"l", b"d", b"\x91", b"e", b"u", b"\x90", b"1", b"o",
                               b"iuser\nThing\n"])
            emit(code, mark + (code in (b"t", b"l", b"d", b"\x91", b"o") or code[:1] == b"i")
                 - height)
        elif r < 0.7 and height:
            code, pops = rng.choice([(b"\x85", 0), (b"\x86", 1), (b"\x87", 2), (b"R", 1),
                                     (b"\x81", 1), (b"\x92", 2), (b"\x93", 1), (b"b", 1),
                                     (b"a", 1), (b"s", 2), (b"Q", 0), (b"0", 1), (b"2", -1)])
            emit(code, -pops)
        elif r < 0.82:  # a memo store
            idx = memo_index()
            form = rng.random()
            if form < 0.6 and idx < 256:
                emit(b"q" + bytes([idx]))
            elif form < 0.8 and idx < 2**32:
                emit(b"r" + struct.pack("<I", idx))
            elif form < 0.9:
                emit(b"p%d\n" % rng.choice([idx, -idx - 1]))
            else:
                idx = len(memo)
                emit(b"\x94")
            memo.add(idx)
        elif r < 0.9:  # a memo fetch
            idx = rng.choice(sorted(memo)) if memo and rng.random() < 0.9 else rng.randint(-2, 300)
            forms = [_get(idx), b"j" + struct.pack("<I", idx)] if 0 <= idx < 2**32 else []
            emit(rng.choice(forms + [b"g%d\n" % idx]), 1)
        elif r < 0.94:  # tensor records, one or a state_dict's worth (name, tensor, ...)
            batch = rng.random() < 0.5
            if batch:
                marks.append(height)
                emit(b"}(", 1, 2)
            for n in range(rng.randint(1, 4) if batch else 1):
                first = max(memo, default=-1) + 1 if rng.random() < 0.9 else memo_index()
                gets = tuple(rng.choice(range(5)) if rng.random() < 0.95
                             else rng.randint(0, first + 2) for _ in range(5))
                key: str | int = "1" if rng.random() < 0.7 else rng.choice(sorted(memo) or [0])
                size = rng.choice([b")", b"K\x02\x85", b"K\x02K\x03\x86", b"(K\x01K\x02K\x03K\x04t"])
                stride = rng.choice([b")", b"K\x01\x85", b"K\x03K\x01\x86",
                                     b"(K\x18K\x0cK\x04K\x01t"])
                name = None if not batch and rng.random() < 0.6 or batch and n == 0 else \
                    rng.choice(["w", "w", "w", "é", "x" * 128])
                emit(_tensor_record(first, gets, key, size, stride, name=name),
                     1 + (name is not None), 32)
                memo.update(range(first, first + 10))
            if batch and rng.random() < 0.9:
                marks.pop()
                emit(b"u", -2)
        elif r < 0.97:  # {name: {"version": 1}, ...} entries
            if rng.random() < 0.5 or not memo:
                emit(_binunicode("version") + _put(len(memo)), 1, 2)
                memo.add(len(memo))
            first = max(memo, default=-1) + 1 if rng.random() < 0.8 else memo_index()
            names = [rng.choice(["a", "b.c", "é", "x" * 127, "y" * 128, ""])
                     for _ in range(rng.randint(1, 4))]
            get = rng.choice(sorted(memo)) if rng.random() < 0.9 else rng.randint(0, first + 4)
            marks.append(height)
            emit(b"(" + _version_entries(first, names, get), 2 * len(names), 1 + 7 * len(names))
            memo.update(range(first, first + 2 * len(names)))
        elif r < 0.99:  # a chain around the nesting limit
            depth = rng.choice([1, 100, 198, 199, 200, 201])
            emit(rng.choice([_nested_tuple(depth), b"(" * depth + b")" + b"t" * depth]), 1, depth)
        else:
            emit(bytes([rng.randrange(256)]))
    return b"".join(ops) + (b"." if rng.random() < 0.95 else b"")


@settings(max_examples=300, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_prescan_matches_the_rule_on_generated_pickles(rng):
    assert_same_verdict(_random_program(rng))


def test_generated_pickles_reach_every_verdict():
    rng = random.Random(3)
    verdicts = Counter(assert_same_verdict(_random_program(rng)) for _ in range(3000))
    assert min(verdicts[v] for v in ("accepted", "too deep", "memo index", "malformed")) >= 30, verdicts


def test_unpickling_in_small_buffers_reads_the_same(nnunet, nnunet_read, monkeypatch):
    # The unpickler peeks at most _UNPICKLE_BUFFER bytes at a time; opcodes straddle the cut.
    for size in (1, 7, 4096):
        monkeypatch.setattr(unpickle_module, "_UNPICKLE_BUFFER", size)
        again = read_checkpoint(nnunet[0])
        assert again.state_dict == nnunet_read.state_dict
        assert again.init_args == nnunet_read.init_args
        assert again.top_level_keys == nnunet_read.top_level_keys


def test_expected_puts():
    run = scan_module._expected_puts(0, 70000)
    assert run.startswith(b"q\x00q\x01q\x02") and run[510:522] == b"q\xffr\x00\x01\x00\x00r\x01\x01\x00\x00"
    for first, stop in ((0, 1), (250, 260), (256, 300), (65530, 65600)):
        part = scan_module._expected_puts(first, stop)
        assert part == b"".join(_put(k) for k in range(first, stop))
        assert scan_module._sequential_puts(first, part)
        assert not scan_module._sequential_puts(first + 1, part)
        assert not scan_module._sequential_puts(first, part[:-1] + b"\x07")
    big = 2**31 - 3
    assert scan_module._sequential_puts(big, _put(big) + _put(big + 1))


def test_prescan_past_the_cached_puts(real_pickles, monkeypatch):
    # Past _PUT_RUN_INDICES the fast paths build the PUTs they check against themselves.
    monkeypatch.setattr(scan_module, "_PUT_RUN", b"")
    monkeypatch.setattr(scan_module, "_PUT_RUN_INDICES", 300)
    rng = random.Random(11)
    for pkl in [real_pickles[0]] + [_mutate(rng, real_pickles[0], real_pickles) for _ in range(30)]:
        assert_same_verdict(pkl)
    assert len(scan_module._PUT_RUN) <= scan_module._put_offset(300)
