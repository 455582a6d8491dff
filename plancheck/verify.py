"""``plancheck verify``: the fine-tuning step itself, on a real device, and the memory it needs.

The pipeline: the meta-device check first (an incompatible pair stops here, before any
device memory is used); then the trainer's network, optimizer and loss
(:mod:`plancheck.run.training`); the memory predicted with fake tensors
(:mod:`plancheck.run.memory_predict`) next to nnU-Net's own planner estimate
(:mod:`plancheck.network.planner`); for a real device, the source weights loaded by nnU-Net's own
``load_pretrained_weights`` and N training steps run and measured. The result is the frozen
:class:`VerifyResult`, which the renderers in :mod:`plancheck.render.verify` read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
import typing as t

from plancheck._nnunet import captured_warnings, quiet
from plancheck.errors import InputError, PlancheckError, RunRefused, UsageError
from plancheck.records.units import bytes_text, seconds_text
from plancheck.records.verify import GiB, Measurement, NnunetEstimate, VerifyResult, WeightsLoad

if t.TYPE_CHECKING:
    from plancheck.check import PreparedSource
    from plancheck.network.spec import Side
    from plancheck.run.training import RunSetup

__all__ = [
    "CPU_MEMORY_LIMIT",
    "CPU_SECONDS_LIMIT",
    "Measurement",
    "NnunetEstimate",
    "RunRefused",
    "VerifyResult",
    "WeightsLoad",
    "verify",
]

Json = t.Any

#: A CPU run is refused (exit 2) without ``force`` when the prediction exceeds either limit.
CPU_MEMORY_LIMIT = 4 * GiB
CPU_SECONDS_LIMIT = 300.0
DEVICES = re.compile(r"^(cpu|meta|cuda(:[0-9]+)?)$")


# --------------------------------------------------------------------------- options


def _device(device: str) -> str:
    if not DEVICES.match(device):
        raise UsageError(f"`device` {device!r}: expected cpu, cuda, cuda:N or meta")
    return device


def _patch(patch_size: t.Sequence[int] | None, dim: int) -> tuple[int, ...] | None:
    if patch_size is None:
        return None
    patch = tuple(int(p) for p in patch_size)
    if len(patch) == 3 and dim == 2 and patch[0] == 0:
        patch = patch[1:]
    if len(patch) != dim or any(p < 1 for p in patch):
        raise UsageError(f"`patch_size` {list(patch_size)}: the configuration is {dim}D, give {dim} positive sizes")
    return patch


def _check_divisible(patch: tuple[int, ...], target: Side) -> None:
    """A --patch-size must be divisible, per axis, by the product of the network's strides (as nnU-Net plans it)."""
    from plancheck.network.planner import stride_divisor

    divisor = stride_divisor(target.spec.arch_kwargs, len(patch))
    if divisor is not None and any(p % d for p, d in zip(patch, divisor)):
        raise UsageError(f"`patch_size` {list(patch)}: each axis must be divisible by the product of the network's "
                         f"strides, {list(divisor)}")


# --------------------------------------------------------------------------- the source's weights


def _read_checkpoint_tensors(ckpt: t.Any) -> dict[str, Json]:
    """The checkpoint's state_dict as CPU tensors, read by plancheck's safe data reader.

    :func:`plancheck.inputs.checkpoint.read_tensors` reads the storages that the (already
    validated, never executed) pickle references, every size, stride and offset checked
    against the file before anything is allocated: nnU-Net's own ``checkpoint_final.pth``
    (numpy scalars in ``logging``) is read without unpickling any code.
    """
    from plancheck.inputs.checkpoint.data import read_tensors

    return read_tensors(ckpt, list(ckpt.state_dict))


def _source_network_weights(side: Side) -> dict[str, Json]:
    """The source network as nnU-Net initialises it (seed 0), built on the CPU from the source plans."""
    import torch

    from plancheck.network.spec import NetworkSpec

    spec: NetworkSpec = side.spec
    with torch.random.fork_rng(devices=[]), quiet(), captured_warnings():
        torch.manual_seed(0)
        if spec.trainer is not None:
            import copy
            import json

            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            from plancheck.network.trainers import load_trainer_class, trainer_signature

            cls = load_trainer_class(spec.trainer)
            assert spec.trainer_context is not None
            pm = PlansManager(json.loads(spec.trainer_context.plans_json))
            cm = pm.get_configuration(spec.trainer_context.configuration)
            if trainer_signature(cls) == "new":
                network = cls.build_network_architecture(pm, cm, spec.input_channels, spec.output_channels, True)
            else:
                network = cls.build_network_architecture(
                    cm.network_arch_class_name, copy.deepcopy(cm.network_arch_init_kwargs),
                    cm.network_arch_init_kwargs_req_import, spec.input_channels, spec.output_channels, True)
        else:
            from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

            network = get_network_from_plans(spec.class_path, spec.arch_kwargs, list(spec.requires_import),
                                             spec.input_channels, spec.output_channels, allow_init=True,
                                             deep_supervision=True)
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def _safe_weights_file(prepared: PreparedSource, folder: str) -> tuple[str, str]:
    """(a file nnU-Net's loader can read, how it was made): ``{'network_weights': tensors}``, written here.

    A plans-only source gives the source network's nnU-Net-initialised weights; a checkpoint
    gives its own tensors (:func:`_read_checkpoint_tensors`). Either way nnU-Net then loads a
    file plancheck wrote, which holds tensors only, so no code from the user's file runs.
    """
    import torch

    ckpt = prepared.input.checkpoint
    if ckpt is None:
        state = _source_network_weights(prepared.side)
        how = "the source network as nnU-Net initialises it (built on the CPU from the source plans, seed 0)"
    else:
        state = _read_checkpoint_tensors(ckpt)
        how = f"the checkpoint's tensors ({ckpt.path}), re-saved by plancheck as {{'network_weights': ...}}"
        if prepared.alias_conflicts:  # each alias holds the value nnU-Net's load_state_dict keeps
            from plancheck.inputs.prefixes import raw_keys

            raw = raw_keys(ckpt, prepared.prefix)
            for key, kept in prepared.alias_kept.items():
                state[raw[key]] = state[raw[kept]]
            how += "; disagreeing alias keys given the value nnU-Net keeps (the later key)"
    path = os.path.join(folder, "source_weights.pth")
    torch.save({"network_weights": state}, path)
    return path, how


def _load_weights(network: t.Any, path: str, how: str) -> WeightsLoad:
    """nnU-Net's ``load_pretrained_weights``, then every loaded tensor compared with the file's values."""
    import torch

    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    try:
        with quiet(), captured_warnings():
            load_pretrained_weights(network, path, verbose=False)
    except AssertionError as e:
        return WeightsLoad(False, how, 0, 0, str(e).splitlines()[0] if str(e) else "AssertionError")
    saved = torch.load(path, map_location="cpu", weights_only=True)["network_weights"]
    checked = equal = 0
    for key, value in network.state_dict().items():
        if ".seg_layers." in key:
            continue
        checked += 1
        if key in saved and torch.equal(value.detach().to("cpu"), saved[key].to(value.dtype)):
            equal += 1
    return WeightsLoad(checked == equal, how, checked, equal,
                       None if checked == equal else f"{checked - equal} tensors differ from the source after loading")


# --------------------------------------------------------------------------- set-up


def _run_setup(target: Side, trainer_class_path: str, patch_size: tuple[int, ...] | None,
               batch_size: int | None) -> tuple[RunSetup, list[str]]:
    import json

    from plancheck.run.training import RunSetup, with_overrides

    notes: list[str] = []
    name = target.configuration.name
    resolved = target.configuration.data
    patch = patch_size or tuple(int(p) for p in resolved["patch_size"])
    batch = batch_size or int(resolved["batch_size"])
    if patch_size is not None:
        notes.append(f"patch size {list(patch)} (--patch-size; the plans say {list(resolved['patch_size'])})")
    if batch_size is not None:
        notes.append(f"batch size {batch} (--batch-size; the plans say {resolved['batch_size']})")
    plans = with_overrides(target.plans.data, name, patch, batch)
    if target.dataset_json is not None:
        dataset_json = target.dataset_json.data
    else:
        n_in = target.spec.input_channels
        dataset_json = {
            "channel_names": {str(i): "channel" for i in range(n_in)},
            "labels": {"background": 0, **{f"label_{i}": i for i in range(1, target.spec.output_channels)}},
        }
        notes.append(f"no target dataset.json: {target.spec.output_channels} placeholder labels")
    return RunSetup(trainer_class_path, json.dumps(plans), name, json.dumps(dataset_json), tuple(patch), batch), notes


def _trainer_path(name: str | None, allow: tuple[str, ...], ignore: bool) -> tuple[str, list[str]]:
    from plancheck.network.trainers import DEFAULT_TRAINER, TrainerError, resolve_trainer

    try:
        return resolve_trainer(name or DEFAULT_TRAINER, allow=allow).class_path, []
    except TrainerError:
        if not ignore:
            raise
        ref = resolve_trainer(DEFAULT_TRAINER)
        return ref.class_path, [f"trainer {name} not found: ran nnUNetTrainer (--ignore-trainer)"]


def _nnunet_estimate(target: Side, patch: tuple[int, ...], batch: int) -> NnunetEstimate:
    from plancheck.remedies.fix_architecture import planner_channels
    from plancheck.network.planner import estimate_vram, planner_reference

    planner = planner_reference(target.plans.data.get("experiment_planner_used"))
    in_ch, out_ch, note = planner_channels(target)
    estimate = estimate_vram(target.spec, patch, input_channels=in_ch, output_channels=out_ch)
    dim = len(patch)
    return NnunetEstimate(
        planner=planner.name, estimate=estimate, reference=planner.reference(dim),
        reference_batch_size=planner.reference_batch_size(dim), reference_gb=planner.vram_target_GB,
        batch_size=batch, notes=tuple(n for n in (planner.note, note) if n))


def _cpu_flops_per_second() -> float:
    """This machine's CPU throughput on an nnU-Net-like convolution (FLOPs/s), measured in a fraction of a second."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv3d(32, 32, 3, padding=1)
    x = torch.randn(1, 32, 24, 24, 24)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    flops = counter.get_total_flops()
    with torch.no_grad():
        conv(x)
        start = time.perf_counter()
        runs = 0
        while time.perf_counter() - start < 0.2:
            conv(x)
            runs += 1
    return flops * runs / max(time.perf_counter() - start, 1e-9)


# --------------------------------------------------------------------------- the run


def _run(setup: RunSetup, prepared: PreparedSource, device: str, iterations: int, amp: bool
         ) -> tuple[WeightsLoad, Measurement]:
    import torch

    from plancheck.run.memory_predict import cpu_profile_peak
    from plancheck.run.training import initialize, make_trainer, scalerless_train_step, synthetic_batch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    with tempfile.TemporaryDirectory(prefix="plancheck-weights-") as folder:
        path, how = _safe_weights_file(prepared, folder)
        trainer = make_trainer(setup, dev)
        if not amp:
            trainer.grad_scaler = None
        try:
            initialize(trainer)
            weights = _load_weights(trainer.network, path, how)
            in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
            untrained = [(p, p.detach().clone()) for p in trainer.network.parameters() if id(p) not in in_optimizer]
        except torch.OutOfMemoryError as e:
            oom = str(e).splitlines()[0]
            return (WeightsLoad(False, how, 0, 0, "out of memory while building the network or loading the weights"),
                    Measurement(device, name, 0, (), None, None, out_of_memory=oom))
    if not weights.loaded:
        return weights, Measurement(device, name, 0, (), None, None)
    data, target = synthetic_batch(trainer)
    losses: list[float] = []
    times: list[float] = []
    oom: str | None = None

    def steps() -> None:
        nonlocal oom
        for _ in range(iterations):
            start = time.perf_counter()
            try:
                with quiet():
                    if amp or dev.type != "cuda":
                        loss = float(trainer.train_step({"data": data, "target": target})["loss"])
                    else:  # --no-amp on CUDA: nnU-Net's train_step always autocasts there
                        on_device = [x.to(dev) for x in target] if isinstance(target, list) else target.to(dev)
                        loss = float(scalerless_train_step(trainer, data.to(dev), on_device, amp_device=None))
            except torch.OutOfMemoryError as e:
                oom = str(e).splitlines()[0]
                return
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
            losses.append(loss)

    if dev.type == "cuda":
        from torch.backends import cudnn

        saved = cudnn.deterministic, cudnn.benchmark
        cudnn.deterministic, cudnn.benchmark = False, True  # as nnUNetv2_train sets them
        try:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            steps()
            allocated, reserved = torch.cuda.max_memory_allocated(dev), torch.cuda.max_memory_reserved(dev)
        finally:
            cudnn.deterministic, cudnn.benchmark = saved
        cpu_delta = None
    else:
        cpu_delta, _ = cpu_profile_peak(steps)
        allocated = reserved = None
    after_first = times[1:]
    return weights, Measurement(
        device=device, device_name=name, iterations=len(losses), losses=tuple(losses),
        first_iteration_seconds=times[0] if times else None,
        seconds_per_iteration=sum(after_first) / len(after_first) if after_first else None,
        peak_allocated=allocated, peak_reserved=reserved, cpu_peak_delta=cpu_delta, out_of_memory=oom,
        untrained_unchanged=all(torch.equal(before, p) for p, before in untrained) if untrained else None)


def _phase_start(trainer_path: str, phase: str | None) -> tuple[int, str | None]:
    """A fine-tuning trainer's (first epoch of ``phase``, phase name); (0, None) for any other trainer."""
    from plancheck.finetune.schedule import Phase, Schedule
    from plancheck.finetune.trainer import nnUNetTrainerFinetune
    from plancheck.network.trainers import load_trainer_class

    cls = load_trainer_class(trainer_path)
    if not issubclass(cls, nnUNetTrainerFinetune):
        if phase is not None:
            raise UsageError(f"`phase` {phase}: only plancheck's fine-tuning trainers have phases "
                             f"({cls.__name__} is not one)")
        return 0, None
    try:
        chosen = Phase(phase or Phase.FROZEN.value)
    except ValueError:
        raise UsageError(f"`phase` {phase!r}: one of {', '.join(p.value for p in Phase)}") from None
    schedule = Schedule(cls.EPOCHS, cls.FROZEN_EPOCHS, cls.WARMUP_EPOCHS, 0.01)
    return schedule.first_epoch(chosen), chosen.value


def verify(
    source: Json,
    target: Json,
    configuration: str | None = None,
    *,
    device: str = "cpu",
    iterations: int = 3,
    batch_size: int | None = None,
    patch_size: t.Sequence[int] | None = None,
    gpu_memory: float | None = None,
    amp: bool | None = None,
    force: bool = False,
    cpu_memory_limit: int = CPU_MEMORY_LIMIT,
    cpu_seconds_limit: float = CPU_SECONDS_LIMIT,
    progress: t.Callable[[str], None] | None = None,
    phase: str | None = None,
    **options: Json,
) -> VerifyResult:
    """Check, then predict, then (on ``cpu``/``cuda``) load the weights with nnU-Net and train ``iterations`` steps.

    ``device``: ``cpu``, ``cuda``, ``cuda:N``, or ``meta`` (predict the CUDA memory of a
    step, nothing allocated). ``amp``: autocast and GradScaler as nnU-Net uses them
    (default: on for CUDA and for the meta prediction; nnU-Net never uses AMP on the CPU).
    ``gpu_memory``: GiB the step must fit in (measured reserved memory on CUDA, the
    prediction with ``meta``). A CPU run predicted above ``cpu_memory_limit`` bytes or
    ``cpu_seconds_limit`` seconds raises :class:`RunRefused` unless ``force``. ``options``
    are those of :func:`plancheck.check` (``target_configuration``, ``trainer``, ...).
    ``phase``: with one of plancheck's fine-tuning trainers (``target_trainer``), the phase the
    steps run in (``frozen``, the default, ``warmup`` or ``train``): its optimizer groups, its
    memory, and after the steps whether every parameter outside the optimizer is unchanged.
    """
    from plancheck.check import check_target, prepare_source, split_options

    say = progress or (lambda message: None)
    device = _device(device)
    if iterations < 1:
        raise UsageError(f"`iterations` {iterations}: at least 1")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"`batch_size` {batch_size}: at least 1")
    if gpu_memory is not None and gpu_memory <= 0:
        raise UsageError(f"`gpu_memory` {gpu_memory}: a positive number of GiB")
    is_cuda = device != "cpu"  # meta predicts CUDA
    if amp is None:
        amp = is_cuda
    if amp and not is_cuda:
        raise UsageError("`amp`: nnU-Net uses autocast on CUDA only (its train_step disables it on the CPU)")
    if gpu_memory is not None and device == "cpu":
        raise UsageError("`gpu_memory` needs `device` cuda, cuda:N or meta")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"`device` {device}: this torch has no CUDA device (`device` meta predicts without one)")
    if options.get("trust_checkpoint"):
        raise UsageError("verify never reads a checkpoint with torch.load(weights_only=False): no `trust_checkpoint`")
    target_configuration = options.pop("target_configuration", None)
    target_dataset_json = options.pop("target_dataset_json", None)
    source_options, target_options = split_options(options)

    prepared = prepare_source(source, configuration=configuration, **source_options)
    checked = check_target(prepared, target, target_configuration=target_configuration,
                           target_dataset_json=target_dataset_json, **target_options)
    report, target_side = checked.report, checked.target
    trainer_name = target_options.get("target_trainer") or prepared.trainer_name
    common = dict(report=report, device=device, configuration=target_side.configuration.name,
                  trainer=trainer_name or "nnUNetTrainer", amp=amp,
                  gpu_memory=None if gpu_memory is None else int(gpu_memory * GiB))
    if not report.compatible:
        return VerifyResult(notes=("the weights do not load (see the check): nothing was run",), **common)

    trainer_path, notes = _trainer_path(trainer_name, prepared.allow, prepared.ignore_trainer)
    dim = len(target_side.configuration.data["patch_size"])
    patch = _patch(patch_size, dim)
    if patch is not None:
        _check_divisible(patch, target_side)
    setup, setup_notes = _run_setup(target_side, trainer_path, patch, batch_size)
    start_epoch, phase = _phase_start(trainer_path, phase)
    setup = dataclasses.replace(setup, start_epoch=start_epoch)
    common["phase"] = phase
    notes += setup_notes
    notes.append("torch.compile off (nnU-Net compiles on CUDA by default; a compiled step usually needs less memory)")
    common.update(patch_size=setup.patch_size, batch_size=setup.batch_size, trainer=trainer_path.rsplit(".", 1)[1])
    estimate = _nnunet_estimate(target_side, setup.patch_size, setup.batch_size)

    from plancheck.run.memory_predict import predict

    say("predicting the memory of a training step with fake tensors ...")
    try:
        prediction = predict(setup, device="cpu" if device == "cpu" else "cuda", amp=amp)
    except PlancheckError:
        raise
    except Exception as e:  # the network's or the loss's own checks, e.g. a 1-voxel bottleneck in training
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(
            f"nnU-Net's training step fails for '{setup.configuration}' at patch {list(setup.patch_size)}, batch "
            f"{setup.batch_size}: {type(e).__name__}: {first[:200]}",
            path=target_side.label,
        ) from e
    if device == "meta":
        return VerifyResult(prediction=prediction, nnunet_estimate=estimate, notes=tuple(notes), **common)

    expected = None
    if device == "cpu":
        expected = prediction.flops_per_step * (iterations + 1) / _cpu_flops_per_second()  # + the first's overhead
        what = (f"expected on the CPU: about {seconds_text(expected)} and {bytes_text(prediction.peak_bytes)} "
                f"for {iterations} iteration(s)")
        too_big = prediction.peak_bytes > cpu_memory_limit or expected > cpu_seconds_limit
        if too_big and not force:
            raise RunRefused(
                f"{what}, above the limits ({bytes_text(cpu_memory_limit)}, {seconds_text(cpu_seconds_limit)}); "
                "pass `force` to run anyway, use `patch_size`/`batch_size`, or `device` meta for a prediction only")
        say(what)
    say(f"running {iterations} training iteration(s) on {device} ...")
    weights, measurement = _run(setup, prepared, device, iterations, amp)
    return VerifyResult(prediction=prediction, nnunet_estimate=estimate, weights=weights, measurement=measurement,
                        expected_seconds=expected, notes=tuple(notes), **common)


