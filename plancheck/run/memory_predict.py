"""Predict and measure the memory of nnU-Net training steps with PyTorch's own tools.

Prediction (:func:`predict`): the trainer's network, optimizer, loss and a synthetic batch
are created as fake tensors (``torch._subclasses.fake_tensor.FakeTensorMode``: shapes,
dtypes and devices, no data), and two training steps run under
``torch.distributed._tools.mem_tracker.MemTracker``, which follows every storage's life
(weak references) and keeps the peak of the live bytes, per device, by category
(parameters, gradients, activations, temporaries, optimizer state). Two steps, because
the SGD momentum buffers exist from the second on. On a CUDA device MemTracker rounds each
storage up to the caching allocator's 512-byte block, as ``max_memory_allocated`` counts
it. ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of one step at the same
time (for the expected CPU time).

Without a CUDA build of torch, fake CUDA tensors cannot run convolutions, so a CUDA
prediction is made on fake CPU tensors with autocast in float16 (CUDA's AMP dtype); the
512-byte rounding is then not applied (under 1 MB for nnU-Net networks) and CPU autocast's
op lists stand in for CUDA's (the prediction says so).

Measurement on the CPU (:func:`cpu_profile_peak`): ``torch.profiler`` with
``profile_memory=True`` records every allocation and free of PyTorch's CPU allocator; the
peak of their running sum is the allocation delta, not the process's RSS.
"""

from __future__ import annotations

import contextlib
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    import torch

    from plancheck.run.training import RunSetup

__all__ = ["Prediction", "cpu_profile_peak", "predict"]

Json = t.Any


@dataclass(frozen=True)
class Prediction:
    """The fake-tensor prediction of a training step's memory."""

    device: str  #: the device predicted for ("cuda" or "cpu")
    simulated_on: str  #: where the fake tensors lived ("cuda", or "cpu" standing in for cuda)
    amp: bool
    peak_bytes: int  #: peak live bytes over the steps (everything: weights, batch, optimizer state...)
    baseline_bytes: int  #: live bytes before the first step (weights, buffers, the batch)
    flops_per_step: int
    by_category: dict[str, int] = field(default_factory=dict)  #: MemTracker's breakdown at the peak
    notes: tuple[str, ...] = ()
    parameters_total: int = 0  #: the network's parameters
    parameters_trained: int = 0  #: those in the trainer's optimizer (fewer in a fine-tuning trainer's frozen phase)

    @property
    def step_bytes(self) -> int:
        """What the steps add to the baseline at their peak (the allocation delta a profiler sees)."""
        return self.peak_bytes - self.baseline_bytes

    def to_dict(self) -> dict[str, Json]:
        return {
            "device": self.device,
            "simulated_on": self.simulated_on,
            "amp": self.amp,
            "peak_bytes": self.peak_bytes,
            "baseline_bytes": self.baseline_bytes,
            "step_bytes": self.step_bytes,
            "flops_per_step": self.flops_per_step,
            "by_category": dict(self.by_category),
            "notes": list(self.notes),
            "parameters_total": self.parameters_total,
            "parameters_trained": self.parameters_trained,
        }


def _cuda_usable() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def predict(setup: RunSetup, *, device: str, amp: bool, steps: int = 2) -> Prediction:
    """Peak memory of ``steps`` training steps of ``setup`` on ``device`` ("cpu" or "cuda"), with fake tensors."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.utils.flop_counter import FlopCounterMode

    from plancheck._nnunet import captured_warnings, quiet
    from plancheck.run.training import (
        build_on_meta, initialize, make_trainer, refake, scalerless_train_step, synthetic_batch)

    notes: list[str] = []
    simulate = device
    if device == "cuda" and not _cuda_usable():
        simulate = "cpu"
        notes.append(
            "no CUDA in this torch: predicted on fake CPU tensors with float16 autocast; CUDA's 512-byte block "
            "rounding and CUDA autocast's op lists are approximated"
        )
    fake_device = torch.device(simulate)
    amp_device = simulate if amp else None
    amp_dtype = torch.float16 if amp else None
    trainer = make_trainer(setup, fake_device)
    meta_network = build_on_meta(trainer)
    with FakeTensorMode(), quiet(), captured_warnings():
        refake(meta_network, fake_device)
        initialize(trainer, network=meta_network)
        total = sum(p.numel() for p in trainer.network.parameters())
        trained = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"])
        data, target = synthetic_batch(trainer)  # on the CPU, as nnU-Net's data loader delivers it
        data = data.to(fake_device)  # then on the device for the whole step (train_step's .to(device))
        target = [x.to(fake_device) for x in target] if isinstance(target, list) else target.to(fake_device)
        tracker = MemTracker()
        tracker.track_external(trainer.network, trainer.optimizer, data, target)
        flops = 0
        with tracker:
            baseline = _total(tracker.get_tracker_snapshot("current"), fake_device)
            for step in range(steps):
                if step == 0:
                    with FlopCounterMode(display=False) as counter:
                        scalerless_train_step(trainer, data, target, amp_device=amp_device, amp_dtype=amp_dtype)
                    flops = int(counter.get_total_flops())
                else:
                    scalerless_train_step(trainer, data, target, amp_device=amp_device, amp_dtype=amp_dtype)
                tracker.reset_mod_stats()  # per-module statistics only; the peak is kept
        peak_snapshot = tracker.get_tracker_snapshot("peak")
    peak = _total(peak_snapshot, fake_device)
    categories = {str(getattr(k, "value", k)): int(v) for k, v in _device_snapshot(peak_snapshot, fake_device).items()
                  if str(getattr(k, "value", k)) != "Total"}
    return Prediction(
        device=device,
        simulated_on=simulate,
        amp=amp,
        peak_bytes=peak,
        baseline_bytes=baseline,
        flops_per_step=flops,
        by_category=categories,
        notes=tuple(notes),
        parameters_total=int(total),
        parameters_trained=int(trained),
    )


def _device_snapshot(snapshot: dict[t.Any, dict[t.Any, int]], device: torch.device) -> dict[t.Any, int]:
    for dev, values in snapshot.items():
        if dev.type == device.type:
            return values
    return {}


def _total(snapshot: dict[t.Any, dict[t.Any, int]], device: torch.device) -> int:
    values = _device_snapshot(snapshot, device)
    return int(values.get("Total", 0))


@contextlib.contextmanager
def _stderr_silenced() -> t.Iterator[None]:
    """File descriptor 2 sent to /dev/null (C++ logging that Python's redirections do not reach)."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_profile_peak(fn: t.Callable[[], t.Any]) -> tuple[int, t.Any]:
    """(peak allocation delta in bytes, ``fn()``): PyTorch's CPU allocator events, recorded by torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    from plancheck._nnunet import quiet

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _stderr_silenced():  # kineto logs its start and stop on file descriptor 2
        prof.start()
    try:
        with quiet():
            result = fn()
    finally:
        with _stderr_silenced():
            prof.stop()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    running = peak = 0
    for event in events:
        if str(event.device_type()).endswith("CPU"):
            running += int(event.nbytes())
            peak = max(peak, running)
    return peak, result
