"""Reading tensor data: only the tensors asked for, bit for bit, and refusals before any allocation."""

from __future__ import annotations

import zipfile

import pytest
import torch

from plancheck.inputs.checkpoint import read_checkpoint
from plancheck.inputs.checkpoint.data import read_tensors, tensor_nbytes
from plancheck.errors import CheckpointError


@pytest.fixture
def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, generator=g)
    return {
        "a": a,
        "t": a.t(),  # same storage, transposed strides
        "s": a[1:, 2:],  # storage offset
        "x": torch.arange(3.0).expand(5, 3),  # stride 0 (how the nnU-Net oracle writes placeholders)
        "h": torch.randn(2, 3, generator=g).to(torch.bfloat16),
        "i": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "e": torch.empty(0, 3),
        "z": torch.tensor(2.5),
    }


def test_torch_zip_tensors_are_read_bit_for_bit(tmp_path, tensors):
    path = tmp_path / "w.pth"
    torch.save({"network_weights": tensors}, path)
    ckpt = read_checkpoint(path)
    got = read_tensors(ckpt, list(tensors))
    for key, value in tensors.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert torch.equal(got[key], value), key
        assert got[key].is_contiguous()


def test_safetensors_tensors_are_read_bit_for_bit(tmp_path, tensors):
    from safetensors.torch import save_file

    plain = {k: v.contiguous().clone() for k, v in tensors.items()}
    path = tmp_path / "w.safetensors"
    save_file(plain, str(path))
    ckpt = read_checkpoint(path)
    got = read_tensors(ckpt, ["a", "h", "z", "e"])
    assert set(got) == {"a", "h", "z", "e"}
    for key in got:
        assert torch.equal(got[key], plain[key]), key


def test_trusted_reading_gives_the_same_tensors(tmp_path, tensors):
    path = tmp_path / "w.pth"
    torch.save({"network_weights": tensors}, path)
    got = read_tensors(read_checkpoint(path, trust=True), ["a", "s"])
    assert torch.equal(got["a"], tensors["a"]) and torch.equal(got["s"], tensors["s"])


def test_only_the_requested_storages_are_opened(tmp_path, tensors, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save({"network_weights": {"a": tensors["a"], "h": tensors["h"]}, "optimizer": torch.zeros(1000)}, path)
    ckpt = read_checkpoint(path)
    reads: list[tuple[int, int]] = []
    import os

    real = os.preadv

    def spy(fd, buffers, offset):
        n = real(fd, buffers, offset)
        reads.append((offset, n))
        return n

    monkeypatch.setattr(os, "preadv", spy)
    read_tensors(ckpt, ["h"])
    assert sum(n for _, n in reads) == tensor_nbytes(ckpt.state_dict["h"]) == 12


def _rewrite(src, dst, edit_entry, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if "/data/" in info.filename:
                data = edit_entry(info.filename, data)
                zout.writestr(info.filename, data, compress_type=compress)
            else:
                zout.writestr(info, data)


def test_storage_that_claims_more_bytes_than_its_entry(tmp_path, tensors):
    src, bad = tmp_path / "w.pth", tmp_path / "bad.pth"
    torch.save({"network_weights": {"a": tensors["a"]}}, src)
    _rewrite(src, bad, lambda name, data: data[:8])
    ckpt = read_checkpoint(bad)  # the pickle alone is fine
    with pytest.raises(CheckpointError, match=r"claims 48 bytes, its zip entry holds 8") as e:
        read_tensors(ckpt, ["a"])
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_compressed_storage_is_refused(tmp_path, tensors):
    src, bad = tmp_path / "w.pth", tmp_path / "bad.pth"
    torch.save({"network_weights": {"a": tensors["a"]}}, src)
    _rewrite(src, bad, lambda name, data: data, compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match="compressed"):
        read_tensors(read_checkpoint(bad), ["a"])


def test_missing_storage_entry_is_refused(tmp_path, tensors):
    src, bad = tmp_path / "w.pth", tmp_path / "bad.pth"
    torch.save({"network_weights": {"a": tensors["a"]}}, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            if "/data/" not in info.filename:
                zout.writestr(info, zin.read(info))
    with pytest.raises(CheckpointError, match="not in the zip archive"):
        read_tensors(read_checkpoint(bad), ["a"])


def test_entry_past_the_end_of_the_file_is_refused(tmp_path, tensors):
    """A central directory that points a storage past the end of the file (a cut-off download, repaired badly)."""
    src = tmp_path / "w.pth"
    torch.save({"network_weights": {"a": tensors["a"]}}, src)
    ckpt = read_checkpoint(src)
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    # the local header's offset in the central directory: move it far past the end
    cd_start = data.rfind(b"PK\x01\x02" , 0, len(data))
    while cd_start != -1:
        name_len = int.from_bytes(data[cd_start + 28:cd_start + 30], "little")
        name = bytes(data[cd_start + 46:cd_start + 46 + name_len]).decode()
        if name == info.filename:
            data[cd_start + 42:cd_start + 46] = (len(data) + 10_000).to_bytes(4, "little")
            break
        cd_start = data.rfind(b"PK\x01\x02", 0, cd_start)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated zip archive|damaged zip archive") as e:
        read_tensors(ckpt.__class__(**{**{f: getattr(ckpt, f) for f in ckpt.__dataclass_fields__}, "path": str(bad)}),
                     ["a"])
    assert "\n" not in str(e.value)


def test_unknown_key_is_refused(tmp_path, tensors):
    path = tmp_path / "w.pth"
    torch.save({"network_weights": {"a": tensors["a"]}}, path)
    with pytest.raises(CheckpointError, match="no tensor 'b'"):
        read_tensors(read_checkpoint(path), ["b"])
