"""nnU-Net's memory model, as its experiment planners use it: reference values and batch size.

:func:`planner_reference` reads a planner's reference values from nnU-Net's own planner
class; :func:`estimate_vram` is nnU-Net's ``compute_conv_feature_map_size`` on a
meta-device network; :func:`planner_batch_size` is the planner's batch-size formula.
``--fix`` sizes batches with these, and ``verify`` compares its measurements with them.

torch and nnU-Net are imported lazily (through :mod:`plancheck.network.build` and the planner lookup).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import math
import os
import re
import tempfile
import typing as t
from dataclasses import dataclass, replace

from plancheck._nnunet import captured_warnings, quiet
from plancheck.errors import FixError
from plancheck.network.spec import NetworkSpec

__all__ = [
    "PatchDecision",
    "choose_patch_size",
    "stride_divisor",
    "MIN_BATCH_SIZE",
    "PlannerReference",
    "estimate_vram",
    "planner_batch_size",
    "planner_reference",
]

Json = t.Any

#: The batch size ``--fix`` never goes below (the spec), whatever a planner's minimum says.
MIN_BATCH_SIZE = 2


# --- the planner's reference values ---------------------------------------------------------------------------------

_PLANNER_PACKAGE = "nnunetv2.experiment_planning"
_DEFAULT_PLANNER = "ExperimentPlanner"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PlannerReference:
    """The numbers an nnU-Net experiment planner sizes batches with, read from the planner itself."""

    name: str  #: the class name, as ``experiment_planner_used`` gives it
    class_path: str  #: where the class was found
    reference_val_3d: float
    reference_val_2d: float
    reference_val_corresp_GB: float
    reference_val_corresp_bs_2d: int
    reference_val_corresp_bs_3d: int
    vram_target_GB: float
    min_batch_size: int
    featuremap_min_edge_length: int
    max_dataset_covered: float
    #: ``"bs2"``: the planner shrinks patches while ``estimate / ref_bs * 2 > reference`` (ExperimentPlanner);
    #: ``"estimate"``: while ``estimate > reference`` (the residual-encoder planners).
    budget_rule: str = "bs2"
    note: str = ""

    def reference(self, dim: int) -> float:
        """The planner's reference value scaled to its GPU memory target (``reference`` in nnU-Net's code)."""
        base = self.reference_val_2d if dim == 2 else self.reference_val_3d
        return base * (self.vram_target_GB / self.reference_val_corresp_GB)

    def reference_batch_size(self, dim: int) -> int:
        return self.reference_val_corresp_bs_2d if dim == 2 else self.reference_val_corresp_bs_3d

    def budget_ratio(self, estimate: float, dim: int) -> float:
        """How many times the planner's budget the estimate uses (> 1: the planner would shrink the patch)."""
        reference = self.reference(dim)
        if self.budget_rule == "estimate":
            return estimate / reference
        return estimate / self.reference_batch_size(dim) * 2 / reference

    def to_dict(self) -> dict[str, Json]:
        return {
            "name": self.name,
            "class_path": self.class_path,
            "UNet_reference_val_3d": self.reference_val_3d,
            "UNet_reference_val_2d": self.reference_val_2d,
            "UNet_reference_val_corresp_GB": self.reference_val_corresp_GB,
            "UNet_reference_val_corresp_bs_2d": self.reference_val_corresp_bs_2d,
            "UNet_reference_val_corresp_bs_3d": self.reference_val_corresp_bs_3d,
            "UNet_vram_target_GB": self.vram_target_GB,
            "UNet_min_batch_size": self.min_batch_size,
            "UNet_featuremap_min_edge_length": self.featuremap_min_edge_length,
            "max_dataset_covered": self.max_dataset_covered,
            "budget_rule": self.budget_rule,
            "note": self.note,
        }


def _find_planner_class(name: str) -> tuple[type, str] | None:
    """The class ``name`` defined inside nnunetv2.experiment_planning, found by reading sources, one module imported."""
    from plancheck.network.classpath import find_defining_module

    if not _IDENTIFIER.match(name):
        return None
    module_name = find_defining_module(_PLANNER_PACKAGE, name)
    if module_name is None:
        return None
    with quiet(), captured_warnings():
        module = importlib.import_module(module_name)
    cls = getattr(module, name, None)
    return (cls, f"{module_name}.{name}") if inspect.isclass(cls) else None


def _budget_rule(cls: type) -> tuple[str, str]:
    """Which patch-shrinking condition the planner's get_plans_for_configuration uses, read from its source."""
    for klass in cls.__mro__:
        if "get_plans_for_configuration" in vars(klass):
            try:
                source = inspect.getsource(vars(klass)["get_plans_for_configuration"])
            except (OSError, TypeError):
                break
            if re.search(r"while\s*\(\s*estimate\s*/\s*ref_bs\s*\*\s*2\s*\)\s*>\s*reference", source):
                return "bs2", ""
            if re.search(r"while\s+\(?\s*estimate\s*>\s*reference", source):
                return "estimate", ""
            break
    return "bs2", f"{cls.__name__}: patch-shrinking condition not recognised; ExperimentPlanner's assumed"


@functools.lru_cache(maxsize=None)
def planner_reference(name: str | None) -> PlannerReference:
    """The reference values of planner ``name`` (``experiment_planner_used``), taken from nnU-Net's own code.

    The values are instance attributes set in the planner's ``__init__``, which reads a
    dataset from ``nnUNet_raw`` and ``nnUNet_preprocessed``. The planner is instantiated
    against a minimal temporary tree (a dataset.json listing one case, a fingerprint),
    with the two path globals of the modules in its class hierarchy pointed at it, with
    its default GPU memory target (plans do not record the target used). Only classes
    defined in ``nnunetv2.experiment_planning`` are used; any other name (or none) falls
    back to ``ExperimentPlanner``, with a note. Cached per planner name.
    """
    note = ""
    found = _find_planner_class(name) if name else None
    if found is not None:
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

        if not issubclass(found[0], ExperimentPlanner):
            found = None
    if found is None:
        note = (
            f"planner '{name}' is not a planner class in {_PLANNER_PACKAGE}; ExperimentPlanner's reference values used"
            if name
            else "the plans name no experiment_planner_used; ExperimentPlanner's reference values used"
        )
        found = _find_planner_class(_DEFAULT_PLANNER)
        if found is None:  # pragma: no cover - nnunetv2 without its default planner
            raise FixError(f"cannot find nnU-Net's {_DEFAULT_PLANNER} in {_PLANNER_PACKAGE}")
    cls, class_path = found
    try:
        planner = _instantiate_planner(cls)
    except FixError as e:
        if cls.__name__ == _DEFAULT_PLANNER:
            raise
        fallback = planner_reference(_DEFAULT_PLANNER)
        return replace(fallback, note=f"{e.message}; ExperimentPlanner's reference values used")
    rule, rule_note = _budget_rule(cls)

    def attr(attribute: str, default: Json) -> Json:
        return getattr(planner, attribute, default)

    return PlannerReference(
        name=cls.__name__,
        class_path=class_path,
        reference_val_3d=float(attr("UNet_reference_val_3d", 560000000)),
        reference_val_2d=float(attr("UNet_reference_val_2d", 85000000)),
        reference_val_corresp_GB=float(attr("UNet_reference_val_corresp_GB", 8)),
        reference_val_corresp_bs_2d=int(attr("UNet_reference_val_corresp_bs_2d", 12)),
        reference_val_corresp_bs_3d=int(attr("UNet_reference_val_corresp_bs_3d", 2)),
        vram_target_GB=float(attr("UNet_vram_target_GB", 8)),
        min_batch_size=int(attr("UNet_min_batch_size", 2)),
        featuremap_min_edge_length=int(attr("UNet_featuremap_min_edge_length", 4)),
        max_dataset_covered=float(attr("max_dataset_covered", 0.05)),
        budget_rule=rule,
        note="; ".join(n for n in (note, rule_note) if n),
    )


_REFERENCE_DATASET = "Dataset999_PlancheckPlannerReference"


def _instantiate_planner(cls: type) -> t.Any:
    from unittest import mock

    with tempfile.TemporaryDirectory(prefix="plancheck-planner-") as tmp:
        raw = os.path.join(tmp, "nnUNet_raw")
        preprocessed = os.path.join(tmp, "nnUNet_preprocessed")
        os.makedirs(os.path.join(raw, _REFERENCE_DATASET))
        os.makedirs(os.path.join(preprocessed, _REFERENCE_DATASET))
        dataset_json = {
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "foreground": 1},
            "numTraining": 1,
            "file_ending": ".nii.gz",
            # an explicit case list: nnU-Net builds the file names without looking for the files
            "dataset": {"case": {"images": ["case_0000.nii.gz"], "label": "case.nii.gz"}},
        }
        fingerprint = {
            "spacings": [[1.0, 1.0, 1.0]],
            "shapes_after_crop": [[8, 8, 8]],
            "foreground_intensity_properties_per_channel": {},
            "median_relative_size_after_cropping": 1.0,
        }
        with open(os.path.join(raw, _REFERENCE_DATASET, "dataset.json"), "w") as fh:
            json.dump(dataset_json, fh)
        with open(os.path.join(preprocessed, _REFERENCE_DATASET, "dataset_fingerprint.json"), "w") as fh:
            json.dump(fingerprint, fh)
        with contextlib.ExitStack() as stack:
            # nnU-Net binds nnUNet_raw / nnUNet_preprocessed into each planner module at import time
            # (from nnunetv2.paths); point the ones the class hierarchy uses at the temporary tree.
            for module_name in {klass.__module__ for klass in cls.__mro__}:
                module = importlib.import_module(module_name)
                for attribute, value in (("nnUNet_raw", raw), ("nnUNet_preprocessed", preprocessed)):
                    if hasattr(module, attribute):
                        stack.enter_context(mock.patch.object(module, attribute, value))
            stack.enter_context(quiet())
            stack.enter_context(captured_warnings())
            try:
                return cls(_REFERENCE_DATASET)
            except Exception as e:
                raise FixError(
                    f"cannot read the reference values of nnU-Net planner {cls.__name__}: {type(e).__name__}: {e}"
                    .splitlines()[0]
                ) from e


# --- memory estimate and batch size ---------------------------------------------------------------------------------

_ESTIMATES: dict[tuple[str, tuple[int, ...]], int | None] = {}


def estimate_vram(
    spec: NetworkSpec, patch_size: t.Sequence[int], *, input_channels: int, output_channels: int
) -> int | None:
    """nnU-Net's memory estimate (``compute_conv_feature_map_size``) of the network at ``patch_size``.

    Built as the planner's ``static_estimate_VRAM_usage`` builds it (the class's own
    deep-supervision default, the planner's channel counts), on the meta device.
    ``None`` when the network class has no estimate.
    """
    from plancheck.network.build import build_meta_network

    # deep_supervision=None: get_network_from_plans then keeps the class default, as the planner does
    est_spec = replace(
        spec, input_channels=input_channels, output_channels=output_channels, deep_supervision=t.cast(bool, None)
    )
    key = (est_spec.key(), tuple(int(p) for p in patch_size))
    if key in _ESTIMATES:
        return _ESTIMATES[key]
    network = build_meta_network(est_spec)
    compute = getattr(network, "compute_conv_feature_map_size", None)
    value: int | None = None
    if callable(compute):
        with quiet():
            value = int(compute(tuple(int(p) for p in patch_size)))
    _ESTIMATES[key] = value
    return value


def planner_batch_size(
    planner: PlannerReference, estimate: float, patch_size: t.Sequence[int], dataset_voxels: float | None
) -> tuple[int, str]:
    """The batch size nnU-Net's ``get_plans_for_configuration`` derives, and how.

    ``round(reference / estimate * reference_batch_size)``, capped so that one batch
    covers at most ``max_dataset_covered`` of the dataset's voxels (when they are known),
    and never below the planner's minimum or :data:`MIN_BATCH_SIZE`.
    """
    dim = len(patch_size)
    reference = planner.reference(dim)
    ref_bs = planner.reference_batch_size(dim)
    batch = round((reference / estimate) * ref_bs)
    parts = [
        f"{planner.name}: round(reference {reference:.4g} / estimate {estimate:.4g} x {ref_bs}) = {batch}"
    ]
    if dataset_voxels is not None:
        cap = round(dataset_voxels * planner.max_dataset_covered / math.prod(float(p) for p in patch_size))
        if cap < batch:
            parts.append(f"capped at {cap} so one batch covers at most {planner.max_dataset_covered:g} of the dataset")
        batch = min(batch, cap)
    else:
        parts.append("dataset size unknown (no numTraining or median shape): the dataset-coverage cap is not applied")
    floor = max(planner.min_batch_size, MIN_BATCH_SIZE)
    if batch < floor:
        parts.append(f"raised to the minimum of {floor}")
        batch = floor
    return int(batch), "; ".join(parts)


# --- patch size (the planner's rules, applied when --fix changes the strides) ---------------------------------------


def stride_divisor(arch_kwargs: dict[str, Json], dim: int) -> tuple[int, ...] | None:
    """Per axis, the product of the strides: the patch size must be divisible by it. ``None`` without strides."""
    strides = arch_kwargs.get("strides")
    if strides is None:
        return None
    if isinstance(strides, int):
        n_stages = arch_kwargs.get("n_stages")
        strides = [strides] * int(n_stages if isinstance(n_stages, int) else 1)
    divisor = [1] * dim
    for stage in strides:
        per_axis = [stage] * dim if isinstance(stage, int) else list(stage)
        if len(per_axis) != dim:
            raise FixError(f"strides {strides} do not have {dim} axes")
        for axis, s in enumerate(per_axis):
            divisor[axis] *= int(s)
    return tuple(divisor)


def _nearest_multiple(value: float, step: int, low: int, high: float) -> int:
    """The multiple of ``step`` in [low, high] nearest ``value`` (a tie goes to the smaller).

    ``low`` is a multiple of ``step``; ``high`` is one too, or infinite.
    """
    k_min = low // step
    k_max = math.inf if high == math.inf else int(high // step)
    candidates = {min(max(k, k_min), k_max) for k in (math.floor(value / step), math.ceil(value / step))}
    best = min(candidates, key=lambda k: (abs(k * step - value), k))
    return int(best * step)


def choose_patch_size(
    old: t.Sequence[int],
    divisor: t.Sequence[int],
    median: t.Sequence[float] | None,
    min_edge: int,
    *,
    keep_valid: bool = True,
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """A patch size valid for the strides, and the preferences given up for it (one sentence each).

    With ``keep_valid`` (the default), a patch that already keeps the hard rules is kept
    as it is: nnU-Net's planner chose it for this dataset (only memory may then force a
    change, which :func:`plan_fix` decides and reports). Hard rules: every axis is a
    multiple of ``divisor`` (the product of the strides along it), and the bottleneck
    (patch / divisor) holds at least two voxels, because nnU-Net's instance normalisation
    cannot normalise a one-voxel feature map (training stops with "Expected more than 1
    spatial element"). Among the valid sizes the one nearest ``old``
    is taken (a tie goes to the smaller), within two preferences:

    * not past the median image shape, read as nnU-Net's planner reads it: the median
      rounded up to the next multiple of the divisor (the planner clips its patch to the
      median, then pads it to that multiple);
    * a bottleneck edge of at least ``min_edge``, the planner's ``UNet_featuremap_min_edge_length``.

    When both cannot hold on an axis (strides that pool a thin axis often), the median
    wins and the bottleneck edge is given up: keeping the edge would make most of each
    patch padding along that axis, for memory and time on every step, while a short
    bottleneck only limits what the deepest stage sees along that axis. When every axis
    would end with a one-voxel bottleneck, the axis that overshoots its median least is
    doubled. Each preference given up gets a sentence, and so does a patch that ends up
    past the median by more than the target's old one.
    """
    dim = len(old)
    divisor = [int(d) for d in divisor]
    if keep_valid and all(int(o) % d == 0 and int(o) >= d for o, d in zip(old, divisor)) and math.prod(
        int(o) // d for o, d in zip(old, divisor)
    ) >= 2:
        return tuple(int(o) for o in old), ()
    medians = [None if median is None else float(median[a]) for a in range(dim)]
    new: list[int] = []
    for axis in range(dim):
        d, med = divisor[axis], medians[axis]
        lower = max(min_edge * d, d)
        upper = math.inf if med is None else max(math.ceil(med / d) * d, d)
        if lower <= upper:
            new.append(_nearest_multiple(old[axis], d, lower, upper))
        else:
            new.append(_nearest_multiple(old[axis], d, d, upper))
    given_up: list[str] = []
    if math.prod(v // d for v, d in zip(new, divisor)) < 2:
        # a single bottleneck voxel: raise the axis whose doubled size overshoots its median least
        axis = min(range(dim), key=lambda a: (2 * divisor[a] / (medians[a] or 1.0), a))
        new[axis] = 2 * divisor[axis]
        given_up.append(
            f"axis {axis} raised to {new[axis]} voxels (bottleneck 2): with the source's strides every other choice "
            "leaves a one-voxel bottleneck, which nnU-Net's instance normalisation cannot train on; the deepest "
            f"stage normalises over only {math.prod(v // d for v, d in zip(new, divisor))} voxels"
        )
    for axis in range(dim):
        d, med, value = divisor[axis], medians[axis], new[axis]
        lower = max(min_edge * d, d)
        edge = value // d
        if edge < min_edge and value < lower:
            given_up.append(
                f"bottleneck edge on axis {axis} is {edge} voxel{'s' if edge != 1 else ''}, below the planner's "
                f"minimum of {min_edge}: the source's strides divide this axis by {d}, and a patch that keeps the "
                f"minimum ({lower} voxels) would be {lower / med:.1f}x the median image size ({med:g} voxels), "
                "mostly padding; the deepest stages see little context along this axis"
                if med
                else f"bottleneck edge on axis {axis} is {edge}, below the planner's minimum of {min_edge}"
            )
        if med is not None and value > med and value > old[axis]:
            padding = 100.0 * (value - med) / value
            given_up.append(
                f"patch exceeds the median image shape on axis {axis} ({value} > {med:g} voxels): about "
                f"{padding:.0f} % of each patch along this axis is padding, which costs memory and time but adds "
                "no image content"
            )
    return tuple(new), tuple(given_up)


@dataclass(frozen=True)
class PatchDecision:
    """How the patch size and the batch size were chosen for the new strides, and what that costs."""

    old: tuple[int, ...]
    new: tuple[int, ...]
    divisor: tuple[int, ...]  #: per axis, the product of the new strides
    median_shape: tuple[float, ...] | None
    min_bottleneck_edge: int
    given_up: tuple[str, ...]  #: one sentence per preference given up: which, and what it costs
    memory_old: int | None  #: nnU-Net's estimate of the target's old network at the old patch size
    memory_new: int | None  #: ... of the new network at the new patch size
    memory_reference: float | None  #: the planner's reference, scaled to its GPU memory target
    planner: PlannerReference | None
    batch_size_old: int | None
    batch_size_new: int | None
    batch_size_reason: str
    notes: tuple[str, ...] = ()

    @property
    def bottleneck(self) -> tuple[int, ...]:
        return tuple(p // d for p, d in zip(self.new, self.divisor))

    @property
    def changed(self) -> bool:
        return self.old != self.new or self.batch_size_old != self.batch_size_new

    def to_dict(self) -> dict[str, Json]:
        return {
            "old": list(self.old),
            "new": list(self.new),
            "divisor": list(self.divisor),
            "bottleneck": list(self.bottleneck),
            "median_shape": None if self.median_shape is None else list(self.median_shape),
            "min_bottleneck_edge": self.min_bottleneck_edge,
            "given_up": list(self.given_up),
            "memory": {
                "old": self.memory_old,
                "new": self.memory_new,
                "reference": self.memory_reference,
                "planner": None if self.planner is None else self.planner.to_dict(),
            },
            "batch_size": {"old": self.batch_size_old, "new": self.batch_size_new, "reason": self.batch_size_reason},
            "notes": list(self.notes),
        }

