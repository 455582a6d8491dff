"""nnU-Net's training step, set up the way ``nnUNetTrainer`` sets it up, on a real or a fake device.

``verify`` runs what ``nnUNetv2_train`` runs for one fine-tuning step, without a dataset:

- the trainer is nnU-Net's own class (or the custom trainer named), constructed by its own
  ``__init__`` (so a custom trainer's learning rate, weight decay and loss hold), with
  ``nnUNet_results``/``nnUNet_preprocessed`` pointed at a temporary folder for its log files;
- :func:`initialize` is ``nnUNetTrainer.initialize`` without the parts that need
  preprocessed data, DDP or ``torch.compile``: the trainer's ``_set_batch_size_and_oversample``,
  ``determine_num_input_channels``, ``build_network_architecture`` (deep supervision on),
  ``configure_optimizers`` and ``_build_loss``;
- :func:`synthetic_batch` makes the batch nnU-Net's data loader would deliver: float32 images
  of the plan's patch and batch size, int16 segmentations, converted to regions and
  downsampled for deep supervision by the same batchgeneratorsv2 transforms the trainer's
  ``get_training_transforms`` ends with;
- the real run calls the trainer's own ``train_step``; the fake-tensor prediction (and a CUDA
  run with ``--no-amp``, where ``train_step`` would autocast regardless) calls
  :func:`scalerless_train_step`, the same sequence without the GradScaler, whose host syncs fake
  tensors cannot answer (a test holds it to ``train_step`` on the CPU).

``torch.compile`` stays off (``nnUNet_compile=f``): nnU-Net compiles by default on CUDA, and a
compiled network usually needs less memory than the eager one measured here. torch and
nnU-Net are imported lazily.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import typing as t
from dataclasses import dataclass

from plancheck._nnunet import captured_warnings, quiet
from plancheck.errors import BuildError

if t.TYPE_CHECKING:
    import torch

__all__ = [
    "RunSetup", "build_on_meta", "initialize", "make_trainer", "refake", "scalerless_train_step", "synthetic_batch",
    "with_overrides",
]

Json = t.Any


@dataclass(frozen=True)
class RunSetup:
    """What a training step is built from: the trainer class, the (overridden) plans, the dataset.json."""

    trainer_class_path: str
    plans_json: str  #: the target plans, with the patch and batch size overrides applied
    configuration: str
    dataset_json_json: str
    patch_size: tuple[int, ...]
    batch_size: int
    start_epoch: int = 0  #: the trainer's current_epoch before it is initialised (a fine-tuning trainer's phase)

    @property
    def plans(self) -> dict[str, Json]:
        return t.cast(dict, json.loads(self.plans_json))

    @property
    def dataset_json(self) -> dict[str, Json]:
        return t.cast(dict, json.loads(self.dataset_json_json))


def with_overrides(
    plans: dict[str, Json], configuration: str, patch_size: t.Sequence[int] | None, batch_size: int | None
) -> dict[str, Json]:
    """A copy of ``plans`` whose configuration has the given patch and batch size (``None``: unchanged).

    The values are written into the configuration itself (not its ``inherits_from`` parent), so
    nnU-Net's ConfigurationManager reads them as it reads any configuration's own fields.
    """
    plans = copy.deepcopy(plans)
    cfg = plans["configurations"][configuration]
    if patch_size is not None:
        cfg["patch_size"] = [int(p) for p in patch_size]
    if batch_size is not None:
        cfg["batch_size"] = int(batch_size)
    return plans


@contextlib.contextmanager
def _nnunet_environment(trainer_cls: type | None = None) -> t.Iterator[str]:
    """nnU-Net's path variables pointed at a temporary folder (the trainer writes its log there); compile off.

    nnU-Net binds ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` into each module
    at import time (``from nnunetv2.paths import ...``) as plain strings in releases before 2.7,
    which join them unconditionally in the trainer's ``__init__``: those globals, in the
    modules of the trainer's class hierarchy, are pointed at the temporary folder too.
    """
    import importlib
    from unittest import mock

    with tempfile.TemporaryDirectory(prefix="plancheck-verify-") as tmp, contextlib.ExitStack() as stack:
        env = {
            "nnUNet_results": os.path.join(tmp, "nnUNet_results"),
            "nnUNet_preprocessed": os.path.join(tmp, "nnUNet_preprocessed"),
            "nnUNet_raw": os.path.join(tmp, "nnUNet_raw"),
            "nnUNet_compile": "f",
        }
        stack.enter_context(mock.patch.dict(os.environ, env))
        for module_name in {klass.__module__ for klass in (trainer_cls.__mro__ if trainer_cls else ())}:
            module = importlib.import_module(module_name)
            for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
                # plain strings (or None) in releases before 2.7; newer ones read the environment themselves
                if hasattr(module, name) and (getattr(module, name) is None or isinstance(getattr(module, name), str)):
                    stack.enter_context(mock.patch.object(module, name, env[name]))
        yield tmp


def make_trainer(setup: RunSetup, device: torch.device) -> t.Any:
    """The trainer, constructed by its own ``__init__`` for ``device`` (its files go to a temporary folder)."""
    import torch

    from plancheck.network.trainers import load_trainer_class

    trainer_cls = load_trainer_class(setup.trainer_class_path)
    plans = setup.plans
    plans["continue_training"] = False  # nnUNetv2_train sets this before constructing the trainer
    # nnU-Net forces cuda:N to cuda:0 ("use CUDA_VISIBLE_DEVICES"); the device is set back below
    init_device = torch.device("cuda") if device.type == "cuda" else device
    with _nnunet_environment(trainer_cls), quiet(), captured_warnings():
        try:
            trainer = trainer_cls(plans=plans, configuration=setup.configuration, fold=0,
                                  dataset_json=setup.dataset_json, device=init_device)
        except Exception as e:  # arbitrary trainer code
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BuildError(f"{trainer_cls.__name__}(...) cannot be constructed: {type(e).__name__}: {first}") from e
    trainer.device = device
    trainer.current_epoch = setup.start_epoch
    return trainer


def _build_network(trainer: t.Any) -> torch.nn.Module:
    """``trainer.build_network_architecture`` as ``nnUNetTrainer.initialize`` calls it (either signature)."""
    import inspect

    sig = inspect.signature(trainer.build_network_architecture)
    if "plans_manager" in sig.parameters:
        return t.cast("torch.nn.Module", trainer.build_network_architecture(
            trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
            trainer.label_manager.num_segmentation_heads, trainer.enable_deep_supervision))
    cm = trainer.configuration_manager
    return t.cast("torch.nn.Module", trainer.build_network_architecture(
        cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
        trainer.num_input_channels, trainer.label_manager.num_segmentation_heads, trainer.enable_deep_supervision))


def initialize(trainer: t.Any, *, network: torch.nn.Module | None = None) -> None:
    """``nnUNetTrainer.initialize`` minus dataset, DDP and compile: network on the device, optimizer, loss.

    ``network``: an already-built network to use instead of building one (the fake-tensor
    prediction builds on the meta device and re-creates the tensors as fake ones).
    """
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    with _nnunet_environment() as tmp, quiet(), captured_warnings():
        if not os.path.isdir(os.path.dirname(str(getattr(trainer, "log_file", "")))):
            trainer.log_file = os.path.join(tmp, "training_log.txt")  # what configure_optimizers logs goes here
        trainer._set_batch_size_and_oversample()
        trainer.num_input_channels = determine_num_input_channels(
            trainer.plans_manager, trainer.configuration_manager, trainer.dataset_json)
        if network is None:
            network = _build_network(trainer).to(trainer.device)
        trainer.network = network
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.loss = trainer._build_loss()
        trainer.was_initialized = True


def build_on_meta(trainer: t.Any) -> torch.nn.Module:
    """The trainer's network built on the meta device (nothing allocated), for the fake-tensor prediction."""
    import torch

    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    with _nnunet_environment(), quiet(), captured_warnings():
        trainer.num_input_channels = determine_num_input_channels(
            trainer.plans_manager, trainer.configuration_manager, trainer.dataset_json)
        with torch.device("meta"):
            return _build_network(trainer)


def refake(network: torch.nn.Module, device: torch.device) -> None:
    """Replace every parameter and buffer (built on meta) by an empty tensor on ``device``, in place.

    Called inside a FakeTensorMode: the new tensors are fake. Tensors registered under
    several names (dynamic_network_architectures shares modules) stay shared.
    """
    import torch

    memo: dict[int, torch.Tensor] = {}
    for module in network.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in list(store.items()):
                if tensor is None:
                    continue
                if id(tensor) not in memo:
                    new = torch.empty(tensor.shape, dtype=tensor.dtype, device=device)
                    if isinstance(tensor, torch.nn.Parameter):
                        new = torch.nn.Parameter(new, requires_grad=tensor.requires_grad)
                    memo[id(tensor)] = new
                store[name] = memo[id(tensor)]


def synthetic_batch(trainer: t.Any, *, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
    """A batch as nnU-Net's data loader and transforms deliver it, on the CPU (``train_step`` moves it).

    Images: float32, ``(batch, input channels, *patch)``, standard normal. Segmentations: int16
    label values drawn from the label manager, then nnU-Net's ``ConvertSegmentationToRegionsTransform``
    (region-based training) and ``DownsampleSegForDSTransform`` with the trainer's deep-supervision
    scales, sample by sample, stacked as the collate function does. Under a FakeTensorMode the
    tensors are fake (and not seeded).
    """
    import torch

    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

    cm = trainer.configuration_manager
    patch = tuple(int(p) for p in cm.patch_size)
    batch = int(trainer.batch_size)
    lm = trainer.label_manager
    generator = None if _in_fake_mode() else torch.Generator().manual_seed(seed)
    data = torch.randn((batch, trainer.num_input_channels, *patch), generator=generator)
    labels = sorted({int(v) for v in lm.all_labels if v is not None and int(v) >= 0}) or [0, 1]
    index = torch.randint(0, len(labels), (batch, 1, *patch), generator=generator)
    seg = torch.tensor(labels, dtype=torch.int16)[index]
    transforms: list[t.Any] = []
    if lm.has_regions:
        regions = list(lm.foreground_regions) + ([lm.ignore_label] if lm.ignore_label is not None else [])
        transforms.append(ConvertSegmentationToRegionsTransform(regions=regions, channel_in_seg=0))
    scales = trainer._get_deep_supervision_scales()
    if scales is not None:
        transforms.append(DownsampleSegForDSTransform(ds_scales=scales))
    samples: list[t.Any] = []
    for b in range(batch):
        sample = seg[b]
        for transform in transforms:
            sample = transform(segmentation=sample)["segmentation"]
        samples.append(sample)
    target: list[torch.Tensor] | torch.Tensor
    if scales is not None:
        target = [torch.stack([s[i] for s in samples]) for i in range(len(samples[0]))]
    else:
        target = torch.stack(samples)
    return data, target


def _in_fake_mode() -> bool:
    from torch._guards import active_fake_mode

    return active_fake_mode() is not None


def scalerless_train_step(trainer: t.Any, data: torch.Tensor, target: list[torch.Tensor] | torch.Tensor,
                    *, amp_device: str | None, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``nnUNetTrainer.train_step``, step for step, returning the loss tensor; no GradScaler (real or fake tensors).

    The GradScaler's ``scale`` multiplies the loss, ``unscale_`` works in place and ``step``
    asks the host whether gradients are finite (``.item()``), which fake tensors cannot
    answer; its memory is a few scalars. ``amp_device``: autocast's device type, or None
    for no autocast (nnU-Net: autocast on CUDA only).
    """
    import torch

    trainer.optimizer.zero_grad(set_to_none=True)
    if amp_device is not None:
        ctx: t.Any = torch.autocast(amp_device, enabled=True, dtype=amp_dtype)
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        output = trainer.network(data)
        loss = trainer.loss(output, target)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), 12)
    trainer.optimizer.step()
    return loss.detach()
