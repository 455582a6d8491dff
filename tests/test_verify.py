"""`plancheck verify`: nnU-Net's loader and training step on the CPU, the fake-tensor prediction against the
measured CPU allocations, and the paths that must not run anything.

Small configurations keep the CPU runs short: Dataset906_SmallImages 2d at patch 32x32 and 3d_fullres at 32^3
(its own plans: 4 stages, 32-256 features), batch 2.
"""

from __future__ import annotations

import json
import math
import sys
from unittest import mock

import pytest
import torch

from conftest import fixture, load
import plancheck
import plancheck.errors
from plancheck.verify import RunRefused, VerifyResult, verify

pytestmark = pytest.mark.slow

SMALL = fixture("Dataset906_SmallImages")
SMALL_DJ = SMALL.parent / "dataset.json"
CT = fixture("Dataset901_CTIsotropic")
CT_ANISO = fixture("Dataset902_CTAnisotropic")

#: The prediction (fake tensors under MemTracker) must be within this share of the allocation delta that
#: torch.profiler measures from PyTorch's CPU allocator. Both count the same tensors; what the fake run cannot
#: see is scratch memory that CPU kernels take from the allocator and the order in which autograd frees
#: buffers. Observed: +0.8 % (3d) and +1.3 % (2d); 5 % leaves room for other CPUs and kernel choices while
#: still failing on any missing category (momentum buffers alone are ~15 %).
#: One scratch buffer is known and bounded: with torch 2.14 oneDNN's convolution backward holds a copy the size
#: of the weight gradient outside any tensor (a lone Conv2d's backward peaks at 2.0x its weight, tested below),
#: so on the CPU the measured delta may exceed the prediction by up to the largest convolution weight.
TOLERANCE = 0.05

SMALL_RUNS = {
    "2d": dict(configuration="2d", patch_size=(32, 32), batch_size=2, iterations=3),
    "3d_fullres": dict(configuration="3d_fullres", patch_size=(32, 32, 32), batch_size=2, iterations=2),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[VerifyResult, mock.MagicMock]]:
    """One CPU run per small configuration, with nnU-Net's loader spied on."""
    from nnunetv2.run import load_pretrained_weights as module

    results = {}
    for name, kwargs in SMALL_RUNS.items():
        with mock.patch.object(module, "load_pretrained_weights", wraps=module.load_pretrained_weights) as spy:
            results[name] = (verify(SMALL, SMALL, device="cpu", **kwargs), spy)
    return results


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_weights_loaded_by_nnunets_loader(runs, name):
    result, spy = runs[name]
    assert spy.call_count == 1
    network, path = spy.call_args.args[:2]
    assert isinstance(network, torch.nn.Module)
    assert result.weights is not None and result.weights.loaded
    # every non-head tensor of the network holds the source's values after nnU-Net loaded them
    assert result.weights.tensors_checked == result.weights.tensors_equal > 100
    assert result.exit_code == 0 and result.ok


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_training_steps_ran_with_sane_figures(runs, name):
    result, _ = runs[name]
    m = result.measurement
    assert m is not None
    assert m.iterations == SMALL_RUNS[name]["iterations"] == len(m.losses)
    assert all(math.isfinite(v) and 0 < v < 10 for v in m.losses)  # CE + (negative) Dice on random labels
    assert m.seconds_per_iteration is not None and m.seconds_per_iteration > 0
    assert m.first_iteration_seconds is not None and m.first_iteration_seconds > 0
    assert m.cpu_peak_delta is not None and m.peak_allocated is None
    weights_bytes = result.prediction.by_category["Parameter"]
    # the steps hold at least gradients and momentum buffers of every parameter at some point
    assert m.cpu_peak_delta > weights_bytes
    assert result.patch_size == SMALL_RUNS[name]["patch_size"]
    assert result.batch_size == 2
    est = result.nnunet_estimate
    assert est is not None and est.planner == "ExperimentPlanner" and est.estimate and est.implied_bytes
    text = str(result)
    assert "Weights: loaded by nnU-Net's load_pretrained_weights" in text
    assert "measured CPU allocation delta" in text and "nnU-Net's estimate" in text


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_meta_prediction_within_tolerance_of_cpu_allocations(runs, name):
    result, _ = runs[name]
    measured = result.measurement.cpu_peak_delta
    predicted = result.prediction.step_bytes
    assert abs(predicted - measured) <= TOLERANCE * measured, (predicted, measured)


def test_json_output(runs):
    result, _ = runs["2d"]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ok"] is True and data["ran"] is True and data["compatible"] is True
    assert data["weights"]["loader"].endswith("load_pretrained_weights")
    assert data["measurement"]["losses_finite"] is True
    assert data["prediction"]["step_bytes"] == result.prediction.peak_bytes - result.prediction.baseline_bytes
    assert data["check"]["compatible"] is True


def test_fake_step_is_nnunets_train_step():
    """The prediction's step does what nnU-Net's train_step does: the same parameters after one step."""
    from plancheck.run.training import (
        RunSetup, initialize, make_trainer, scalerless_train_step, synthetic_batch, with_overrides)

    plans = with_overrides(load(SMALL), "2d", (32, 32), 2)
    setup = RunSetup("nnunetv2.training.nnUNetTrainer.nnUNetTrainer.nnUNetTrainer", json.dumps(plans), "2d",
                     json.dumps(load(SMALL_DJ)), (32, 32), 2)
    trainers = []
    for _ in range(2):
        trainer = make_trainer(setup, torch.device("cpu"))
        torch.manual_seed(0)
        initialize(trainer)
        trainers.append(trainer)
    data, target = synthetic_batch(trainers[0])
    ours = scalerless_train_step(trainers[0], data, target, amp_device=None)
    theirs = trainers[1].train_step({"data": data, "target": target})["loss"]
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)
    for (k, a), (_, b) in zip(trainers[0].network.state_dict().items(), trainers[1].network.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_incompatible_pair_reported_before_anything_runs(run_cli):
    with mock.patch("plancheck.run.memory_predict.predict", side_effect=AssertionError("predicted")), \
            mock.patch("plancheck.run.training.make_trainer", side_effect=AssertionError("trainer built")):
        result = verify(CT, CT_ANISO, device="cpu")
        assert not result.report.compatible and not result.ran
        assert result.prediction is None and result.exit_code == 1
        code, out, err = run_cli("verify", CT, CT_ANISO)
    assert code == 1
    assert out.startswith("NOT RUN: the weights do not load")
    assert "INCOMPATIBLE" in out


def test_cpu_run_over_the_limits_is_refused_without_force(run_cli):
    with mock.patch.object(sys.modules["plancheck.verify"], "_run", side_effect=AssertionError("ran")):
        with pytest.raises(RunRefused, match=r"expected on the CPU: about .* pass `force`"):
            verify(SMALL, SMALL, "2d", device="cpu", batch_size=2, patch_size=(32, 32), cpu_memory_limit=1024)
        # a full-size 3D configuration is over the default limits
        code, out, err = run_cli("verify", CT, CT)
    assert code == 2, err
    assert "plancheck: error:" in err and "--force" in err and out == ""


def test_meta_device_predicts_and_compares_with_gpu_memory(run_cli):
    small = verify(SMALL, SMALL, "3d_fullres", device="meta", gpu_memory=64)
    assert small.measurement is None and small.weights is None
    assert small.prediction is not None and small.prediction.device == "cuda" and small.amp
    assert small.fits is True and small.exit_code == 0
    assert small.memory_compared == small.prediction.peak_bytes
    code, out, _ = run_cli("verify", SMALL, SMALL, "-c", "3d_fullres", "--device", "meta", "--gpu-memory", "0.01")
    assert code == 1
    assert "Fits in --gpu-memory 0.01 GiB: NO" in out


@pytest.mark.parametrize("args, message", [
    (("--amp",), "autocast on CUDA only"),
    (("--gpu-memory", "8"), "--gpu-memory needs --device"),
    (("--device", "tpu"), "expected cpu, cuda, cuda:N or meta"),
    pytest.param(("--device", "cuda:0"), "this torch has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
    (("-c", "3d_fullres", "--patch-size", "0", "32", "32"), "give 3 positive sizes"),
])
def test_usage_errors(run_cli, args, message):
    code, out, err = run_cli("verify", SMALL, SMALL, *args)
    assert code == 2 and message in err and out == ""


def test_checkpoint_tensors_are_what_nnunet_loads(tmp_path):
    """A state_dict file: its own values (not a fresh initialisation) are in the network nnU-Net loaded."""
    from nnunet_oracle import build_real

    module = sys.modules["plancheck.verify"]

    network = build_real(load(SMALL), "2d", load(SMALL_DJ))
    with torch.no_grad():  # new values per tensor; keys that alias one tensor keep sharing it, as in a real file
        for p in network.parameters():
            p.normal_()
    state = network.state_dict()
    path = tmp_path / "weights.pth"
    torch.save({"network_weights": state}, path)
    real = module._load_weights
    seen: dict[str, torch.Tensor] = {}

    def spy(net, file, how):
        out = real(net, file, how)
        seen.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        return out

    with mock.patch.object(module, "_load_weights", spy):
        result = verify(path, SMALL, "2d", source_plans=SMALL, device="cpu", batch_size=2, patch_size=(32, 32),
                        iterations=1)
    assert result.weights is not None and result.weights.loaded, result.weights
    assert "re-saved by plancheck" in result.weights.weights_from
    body = [k for k in state if ".seg_layers." not in k]
    assert body and all(torch.equal(seen[k], state[k]) for k in body)
    assert result.exit_code == 0


def test_nnunet_checkpoint_is_read_by_the_safe_reader(tmp_path, run_cli):
    """nnU-Net's own checkpoints hold numpy scalars, which weights_only refuses: plancheck's safe
    data reader reads their tensors, nnU-Net's loader loads them, and the values arrive."""
    import pickle

    from nnunet_oracle import build_real, nnunet_checkpoint

    plans, dj = load(SMALL), load(SMALL_DJ)
    network = build_real(plans, "2d", dj)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_()
    path = tmp_path / "checkpoint_final.pth"
    torch.save(nnunet_checkpoint(network, plans, dj, "2d"), path)
    with pytest.raises(pickle.UnpicklingError):  # the premise: torch's own safe mode refuses the file
        torch.load(path, weights_only=True)
    module = sys.modules["plancheck.verify"]
    real, read = module._read_checkpoint_tensors, {}

    def spy(ckpt):
        read.update(real(ckpt))
        return read

    with mock.patch.object(module, "_read_checkpoint_tensors", spy):
        result = verify(path, SMALL, device="cpu", batch_size=2, patch_size=(32, 32), iterations=1)
    state = network.state_dict()
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
    assert result.weights is not None and result.weights.loaded, result.weights
    assert result.weights.tensors_checked > 0 and result.weights.tensors_checked == result.weights.tensors_equal
    assert result.exit_code == 0
    code, out, err = run_cli("verify", path, SMALL, "--batch-size", "2", "--patch-size", "0", "32", "32",
                             "--iterations", "1")
    assert code == 0, err


def test_library_surface():
    assert plancheck.verify is verify and "verify" in plancheck.__all__
    with pytest.raises(plancheck.errors.UsageError, match="weights_only=False"):
        verify(SMALL, SMALL, trust_checkpoint=True)
    with pytest.raises(plancheck.errors.UsageError, match="unknown option"):
        verify(SMALL, SMALL, device="meta", no_such_option=1)


BRAIN = fixture("Dataset904_BrainMRI")  # 4 channels, region-based labels (DC_and_BCE_loss, bool region targets)


def test_region_based_training():
    result = verify(BRAIN, BRAIN, "2d", device="cpu", batch_size=2, patch_size=(64, 64), iterations=2)
    assert result.ok and result.weights.loaded
    assert result.measurement.losses_finite and len(result.measurement.losses) == 2
    measured, predicted = result.measurement.cpu_peak_delta, result.prediction.step_bytes
    scratch = largest_conv_weight_bytes(load(BRAIN), "2d", load(BRAIN.parent / "dataset.json"))
    assert scratch > 0.05 * predicted  # this network's largest weight is not lost in the tolerance
    assert (1 - TOLERANCE) * predicted <= measured <= (1 + TOLERANCE) * (predicted + scratch), \
        (predicted, measured, scratch)


def largest_conv_weight_bytes(plans: dict, configuration: str, dataset_json: dict) -> int:
    from nnunet_oracle import build_real

    network = build_real(plans, configuration, dataset_json)
    return max(m.weight.numel() * m.weight.element_size() for m in network.modules()
               if isinstance(m, torch.nn.modules.conv._ConvNd))


def test_cpu_convolution_backward_scratch_is_at_most_one_weight():
    """The bound the tolerance above allows for: measured the same way verify measures (torch.profiler)."""
    from plancheck.run.memory_predict import cpu_profile_peak

    conv = torch.nn.Conv2d(512, 256, 3, padding=1)
    y = conv(torch.randn(2, 512, 8, 8))
    weight = conv.weight.numel() * conv.weight.element_size()
    peak, _ = cpu_profile_peak(lambda: y.backward(torch.ones_like(y)))
    # the weight and bias gradients, plus at most one weight-sized scratch buffer (and a little)
    assert weight <= peak <= 2.05 * weight, (peak, weight)


def test_patch_size_nnunet_cannot_train_is_an_input_error(run_cli):
    code, out, err = run_cli("verify", BRAIN, BRAIN, "-c", "2d", "--patch-size", "0", "32", "48", "--batch-size", "2")
    assert code == 2 and "divisible by the product of the network's strides, [32, 32]" in err
    # divisible, but a 1x1 bottleneck: instance norm refuses to train on one element
    code, out, err = run_cli("verify", BRAIN, BRAIN, "-c", "2d", "--patch-size", "0", "32", "32", "--batch-size", "2")
    assert code == 3 and "nnU-Net's training step fails for '2d' at patch [32, 32]" in err and out == ""


def test_out_of_memory_during_the_steps_is_reported_not_raised(run_cli):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    boom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with mock.patch.object(nnUNetTrainer, "train_step", side_effect=boom):
        code, out, err = run_cli("verify", SMALL, SMALL, "-c", "2d", "--patch-size", "0", "32", "32",
                                 "--batch-size", "2", "--format", "json")
    assert code == 1, err
    data = json.loads(out)
    assert data["ok"] is False and data["weights"]["loaded"] is True
    assert data["measurement"]["out_of_memory"].startswith("CUDA out of memory")
    assert data["measurement"]["iterations"] == 0
