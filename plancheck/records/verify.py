"""What ``plancheck verify`` returns: the load by nnU-Net, the steps run, and the memory predicted and measured."""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ExitCode
from plancheck.records.base import Rendered
from plancheck.records.units import GiB

if t.TYPE_CHECKING:
    from plancheck.records.report import Report
    from plancheck.run.memory_predict import Prediction


__all__ = ['Measurement', 'NnunetEstimate', 'VerifyResult', 'WeightsLoad']

Json = t.Any


@dataclass(frozen=True)
class WeightsLoad:
    """What nnU-Net's ``load_pretrained_weights`` did, checked by reading the network back."""

    loaded: bool
    weights_from: str  #: how the file nnU-Net loaded was made
    tensors_checked: int  #: target tensors (heads excluded) compared by value after loading
    tensors_equal: int  #: ... of which hold the source's values
    message: str | None = None  #: nnU-Net's assertion, when it refused

    def to_dict(self) -> dict[str, Json]:
        return {"loaded": self.loaded, "loader": "nnunetv2.run.load_pretrained_weights.load_pretrained_weights",
                "weights_from": self.weights_from, "tensors_checked": self.tensors_checked,
                "tensors_equal": self.tensors_equal, "message": self.message}


@dataclass(frozen=True)
class Measurement:
    """What the training steps on the device did."""

    device: str
    device_name: str
    iterations: int  #: completed
    losses: tuple[float, ...]
    first_iteration_seconds: float | None
    seconds_per_iteration: float | None  #: mean after the first (None with one iteration)
    peak_allocated: int | None = None  #: CUDA: torch.cuda.max_memory_allocated during the steps
    peak_reserved: int | None = None  #: CUDA: torch.cuda.max_memory_reserved
    cpu_peak_delta: int | None = None  #: CPU: peak allocation delta of the steps (torch.profiler)
    out_of_memory: str | None = None  #: the device ran out of memory (the message)
    #: the parameters in no optimizer group (a frozen phase) bit-identical after the steps; None: every one trains
    untrained_unchanged: bool | None = None

    @property
    def losses_finite(self) -> bool:
        return bool(self.losses) and all(math.isfinite(v) for v in self.losses)

    @property
    def loss_fell(self) -> bool | None:
        return None if len(self.losses) < 2 else self.losses[-1] < self.losses[0]

    def to_dict(self) -> dict[str, Json]:
        return {"device": self.device, "device_name": self.device_name, "iterations": self.iterations,
                "losses": list(self.losses), "losses_finite": self.losses_finite, "loss_fell": self.loss_fell,
                "first_iteration_seconds": self.first_iteration_seconds,
                "seconds_per_iteration": self.seconds_per_iteration, "peak_allocated": self.peak_allocated,
                "peak_reserved": self.peak_reserved, "cpu_peak_delta": self.cpu_peak_delta,
                "out_of_memory": self.out_of_memory, "untrained_unchanged": self.untrained_unchanged}


@dataclass(frozen=True)
class NnunetEstimate:
    """nnU-Net's planner estimate: ``compute_conv_feature_map_size`` against the planner's reference."""

    planner: str
    estimate: int | None  #: compute_conv_feature_map_size at the patch size (feature-map elements, not bytes)
    reference: float  #: the planner's reference, scaled to its GPU memory target
    reference_batch_size: int
    reference_gb: float  #: the GPU memory the reference corresponds to
    batch_size: int
    notes: tuple[str, ...] = ()

    @property
    def implied_bytes(self) -> int | None:
        """The memory the planner's model implies at this batch size: estimate x batch / ref_bs, scaled to GiB.

        The planner sizes batches so that ``estimate x batch / ref_bs`` meets ``reference``,
        which stands for ``vram_target`` GB; the same proportion turns the estimate into bytes.
        """
        if self.estimate is None or self.reference <= 0:
            return None
        vram_target = self.reference_gb
        return int(self.estimate * self.batch_size / self.reference_batch_size / self.reference * vram_target * GiB)

    def to_dict(self) -> dict[str, Json]:
        return {"planner": self.planner, "estimate": self.estimate, "reference": self.reference,
                "reference_batch_size": self.reference_batch_size, "vram_target_gb": self.reference_gb,
                "batch_size": self.batch_size, "implied_bytes": self.implied_bytes, "notes": list(self.notes)}


@dataclass(frozen=True)
class VerifyResult(Rendered):
    """Everything ``verify`` found; renderers read it, ``exit_code`` follows the README."""

    report: Report  #: the meta-device check that came first
    device: str
    configuration: str
    trainer: str
    patch_size: tuple[int, ...] | None = None
    batch_size: int | None = None
    amp: bool = False
    prediction: Prediction | None = None
    nnunet_estimate: NnunetEstimate | None = None
    weights: WeightsLoad | None = None
    measurement: Measurement | None = None
    gpu_memory: int | None = None  #: bytes (--gpu-memory GiB)
    expected_seconds: float | None = None  #: CPU: the expected time of the run, from the predicted FLOPs
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    phase: str | None = None  #: a fine-tuning trainer's phase the steps ran in (frozen, warmup, train)

    @property
    def ran(self) -> bool:
        return self.measurement is not None

    @property
    def memory_compared(self) -> int | None:
        """The figure ``--gpu-memory`` is compared with: measured reserved (CUDA), else the predicted peak."""
        if self.measurement is not None and self.measurement.peak_reserved is not None:
            return self.measurement.peak_reserved
        if self.prediction is not None and self.prediction.device == "cuda":
            return self.prediction.peak_bytes
        return None

    @property
    def fits(self) -> bool | None:
        if self.gpu_memory is None:
            return None
        if self.measurement is not None and self.measurement.out_of_memory:
            return False
        compared = self.memory_compared
        return None if compared is None else compared <= self.gpu_memory

    @property
    def ok(self) -> bool:
        if not self.report.compatible:
            return False
        if self.weights is not None and not self.weights.loaded:
            return False
        if self.measurement is not None and (self.measurement.out_of_memory or not self.measurement.losses_finite):
            return False
        if self.measurement is not None and self.measurement.untrained_unchanged is False:
            return False
        return self.fits is not False

    @property
    def exit_code(self) -> int:
        return int(ExitCode.OK if self.ok else ExitCode.INCOMPATIBLE)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "schema_version": 1,
            "plancheck_version": __version__,
            "ok": self.ok,
            "compatible": self.report.compatible,
            "ran": self.ran,
            "device": self.device,
            "configuration": self.configuration,
            "trainer": self.trainer,
            "phase": self.phase,
            "patch_size": None if self.patch_size is None else list(self.patch_size),
            "batch_size": self.batch_size,
            "amp": self.amp,
            "weights": None if self.weights is None else self.weights.to_dict(),
            "measurement": None if self.measurement is None else self.measurement.to_dict(),
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "nnunet_estimate": None if self.nnunet_estimate is None else self.nnunet_estimate.to_dict(),
            "gpu_memory": self.gpu_memory,
            "memory_compared": self.memory_compared,
            "fits": self.fits,
            "expected_seconds": self.expected_seconds,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "check": self.report.to_dict(),
        }
