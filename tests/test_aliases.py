"""Alias keys that disagree (issue 17, item 4): warned, and the value nnU-Net keeps is the one used.

nnU-Net's state_dict holds each convolution under two keys, one tensor. A checkpoint edited
by key changes one of them; nnU-Net's ``load_state_dict`` then loads both in order and the
later key wins. What "the later key wins" means is checked here against nnU-Net's own
``load_pretrained_weights`` on a real CPU network, not taken from plancheck.
"""
from __future__ import annotations

import json

import pytest
import torch

import nnunet_oracle as oracle
from conftest import fixture, load
from plancheck import check

D906 = "Dataset906_SmallImages"
# one parameter, four keys (the encoder is also decoder.encoder); in state_dict order:
EARLY = "encoder.stages.0.0.convs.0.conv.weight"
LATE = "decoder.encoder.stages.0.0.convs.0.all_modules.0.weight"  # the last of the four


def _data():
    path = fixture(D906)
    return load(path), load(path.parent / "dataset.json")


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """Checkpoints of the real 906 network, one alias edited by key: the early name, or the late one."""
    plans, dj = _data()
    torch.manual_seed(0)
    net = oracle.build_real(plans, "3d_fullres", dj)
    folder = tmp_path_factory.mktemp("aliases")
    out = {}
    for which in (EARLY, LATE):
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}  # clone: one storage per key
        state[which] = state[which] + 1.0  # the user's edit, of one name only
        path = folder / f"edited_{which.split('.')[-2]}.pth"
        torch.save(oracle.nnunet_checkpoint(net, plans, dj, "3d_fullres", weights=state), path)
        out[which] = (path, state)
    unedited = folder / "clones.pth"  # separate storages, equal values: nothing to say
    torch.save(oracle.nnunet_checkpoint(net, plans, dj, "3d_fullres",
                                        weights={k: v.detach().clone() for k, v in net.state_dict().items()}),
               unedited)
    out["clones"] = (unedited, None)
    return out


def _nnunet_loads(path) -> torch.Tensor:
    """The value nnU-Net's load_pretrained_weights leaves in the shared parameter."""
    plans, dj = _data()
    target = oracle.build_real(plans, "3d_fullres", dj)
    assert oracle.load_outcome(target, path).loaded
    return target.state_dict()[EARLY].detach().clone()


@pytest.mark.parametrize("which", [EARLY, LATE], ids=["early-key-edited", "kept-key-edited"])
def test_nnunet_keeps_the_later_key_and_plancheck_says_so(edited, which):
    path, state = edited[which]
    loaded = _nnunet_loads(path)
    assert torch.equal(loaded, state[LATE])  # nnU-Net itself: the later key wins
    assert torch.equal(state[EARLY], state[LATE]) is False
    report = check(path, fixture(D906))
    [warning] = [w for w in report.warnings if "name one tensor" in w]
    assert EARLY in warning and LATE in warning
    assert f"keeps the later key, {LATE}" in warning
    edited_keys = [k for k in state if k.endswith("stages.0.0.convs.0.conv.weight")
                   or k.endswith("stages.0.0.convs.0.all_modules.0.weight")]
    assert len(edited_keys) == 4  # the group, as nnU-Net's network registers it


def test_aliases_that_agree_are_silent(edited):
    report = check(edited["clones"][0], fixture(D906))
    assert not [w for w in report.warnings if "name one tensor" in w]


@pytest.mark.parametrize("which", [EARLY, LATE], ids=["early-key-edited", "kept-key-edited"])
def test_transfer_writes_the_value_nnunet_would_load(edited, which, tmp_path, run_cli):
    path, state = edited[which]
    out = tmp_path / "t.pth"
    code, stdout, err = run_cli("transfer", path, fixture(D906), "-o", out, "--format", "json")
    assert code == 0, err
    assert any("name one tensor" in w for w in json.loads(stdout)["warnings"])
    written = torch.load(out, weights_only=True)["network_weights"]
    assert torch.equal(written[EARLY], state[LATE]) and torch.equal(written[LATE], state[LATE])
    assert torch.equal(_nnunet_loads(out), _nnunet_loads(path))  # the same network as nnU-Net's own load


def test_verify_loads_what_nnunet_would(edited, run_cli):
    path, _ = edited[EARLY]
    code, stdout, err = run_cli("verify", path, fixture(D906), "--device", "cpu", "--iterations", "1",
                                "--format", "json")
    assert code == 0, err  # before: "N tensors differ from the source after loading"
    d = json.loads(stdout)
    assert d["weights"]["loaded"] is True
    assert any("name one tensor" in w for w in d["check"]["warnings"])
