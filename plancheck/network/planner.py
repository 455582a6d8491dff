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
