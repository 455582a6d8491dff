"""``--fix --strategy architecture``: the source's network in the target's plans.

The target keeps its preprocessing (and so its ``data_identifier``); the configuration's
``architecture`` becomes the source's, the patch size is made valid for the new strides
(:func:`plancheck.network.planner.choose_patch_size`) and the batch size re-derived with the
rules of the planner named in ``experiment_planner_used``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import typing as t
from dataclasses import replace

from plancheck.errors import PlancheckError
from plancheck.inputs.plans import LEGACY_ARCHITECTURE_KEYS, resolve_configuration
from plancheck.network.planner import (
    PatchDecision,
    choose_patch_size,
    estimate_vram,
    planner_batch_size,
    planner_reference,
    stride_divisor,
)
from plancheck.network.spec import Side

__all__ = ["dataset_voxels", "fix_architecture", "planner_channels", "source_architecture"]

Json = t.Any


def source_architecture(source: Side) -> dict[str, Json]:
    """The source's resolved ``architecture``, with class paths as plancheck resolved them (moved classes fixed)."""
    arch = copy.deepcopy(source.configuration.architecture)
    arch["network_class_name"] = source.spec.class_path
    kwargs = arch.setdefault("arch_kwargs", {})
    for key in source.spec.requires_import:
        if kwargs.get(key) is not None:
            kwargs[key] = source.spec.arch_kwargs[key]
    arch["_kw_requires_import"] = list(source.spec.requires_import)
    return json.loads(json.dumps(arch))  # tuples -> lists, as in a file


def planner_channels(side: Side) -> tuple[int, int, str]:
    """The channel counts nnU-Net's planner estimates memory with (it ignores the cascade's extra inputs)."""
    if side.dataset_json is not None:
        data = side.dataset_json.data
        channels = data.get("channel_names", data.get("modality")) or {}
        labels = data.get("labels") or {}
        if channels and labels:
            return len(channels), len(labels), ""
    return (
        len(side.configuration.data.get("normalization_schemes") or []) or side.spec.input_channels,
        side.spec.output_channels,
        "no dataset.json: memory estimated with the channels of normalization_schemes and a placeholder head",
    )


def dataset_voxels(target: Side, dim: int) -> tuple[float | None, str]:
    """The planner's ``approximate_n_voxels_dataset``: median image voxels x numTraining."""
    if target.dataset_json is None:
        return None, "no dataset.json: the number of training cases is unknown"
    n = target.dataset_json.data.get("numTraining")
    if not isinstance(n, (int, float)) or isinstance(n, bool) or n <= 0:
        return None, "dataset.json has no numTraining"
    median = target.configuration.data.get("median_image_size_in_voxels")
    if dim == 2 and "3d_fullres" in target.plans.data["configurations"]:
        # the planner sizes the 2d batch against the whole 3d volume (3d_fullres's median shape)
        with contextlib.suppress(PlancheckError, KeyError, TypeError):
            median = resolve_configuration(target.plans, "3d_fullres").data.get("median_image_size_in_voxels")
    if not isinstance(median, list) or not median:
        return None, "the configuration has no median_image_size_in_voxels"
    return math.prod(float(m) for m in median) * float(n), ""


def fix_architecture(
    source: Side, target: Side, plans_name: str
) -> tuple[dict[str, Json], PatchDecision, list[str], list[str]]:
    plans = copy.deepcopy(target.plans.data)
    name = target.configuration.name
    cfg = plans["configurations"][name]
    resolved = target.configuration.data
    warnings: list[str] = []
    notes: list[str] = []

    arch = source_architecture(source)
    if source.spec.declared_class_path and source.spec.declared_class_path != source.spec.class_path:
        notes.append(
            f"network_class_name written as {source.spec.class_path}: the source's plans name "
            f"{source.spec.declared_class_path}, which moved"
        )
    if target.configuration.is_legacy:
        dropped = [k for k in LEGACY_ARCHITECTURE_KEYS if k in cfg]
        for key in dropped:
            del cfg[key]
        notes.append(
            f"the target configuration '{name}' was in the old plans format: "
            + (f"its old architecture fields ({', '.join(dropped)}) were replaced by " if dropped else "")
            + "'architecture', which nnU-Net now reads alone"
        )
    cfg["architecture"] = arch
    inheritors = [
        other for other, c in plans["configurations"].items()
        if isinstance(c, dict) and c.get("inherits_from") == name and "architecture" not in c
    ]
    if inheritors:
        warnings.append(
            f"configuration(s) {', '.join(inheritors)} inherit from '{name}' and get the new architecture, patch "
            "and batch size too"
        )

    # patch size and batch size
    old_patch = tuple(int(p) for p in resolved["patch_size"])
    dim = len(old_patch)
    planner = planner_reference(plans.get("experiment_planner_used"))
    if planner.note:
        notes.append(planner.note)
    divisor = stride_divisor(arch["arch_kwargs"], dim)
    patch_notes: list[str] = []
    if divisor is None:
        divisor = (1,) * dim
        patch_notes.append("the architecture has no 'strides': divisibility cannot be checked; patch size kept")
    median_raw = resolved.get("median_image_size_in_voxels")
    median = tuple(float(m) for m in median_raw) if isinstance(median_raw, list) and len(median_raw) == dim else None
    if median is None:
        patch_notes.append("no median_image_size_in_voxels: the patch size is not bounded by the image size")
    new_patch, patch_given_up = choose_patch_size(old_patch, divisor, median, planner.featuremap_min_edge_length)
    given_up = list(patch_given_up)

    in_ch, out_ch, channel_note = planner_channels(target)
    if channel_note:
        patch_notes.append(channel_note)
    new_spec = replace(
        source.spec, input_channels=target.spec.input_channels, output_channels=target.spec.output_channels
    )
    memory_old = estimate_vram(target.spec, old_patch, input_channels=in_ch, output_channels=out_ch)
    memory_new = estimate_vram(new_spec, new_patch, input_channels=in_ch, output_channels=out_ch)
    if new_patch == old_patch and memory_new and planner.budget_ratio(memory_new, dim) > 1:
        # nnU-Net's patch fits the new strides, but not the planner's memory budget: the planner would shrink it
        smaller, smaller_given_up = choose_patch_size(
            old_patch, divisor, median, planner.featuremap_min_edge_length, keep_valid=False
        )
        memory_smaller = estimate_vram(new_spec, smaller, input_channels=in_ch, output_channels=out_ch)
        if smaller != old_patch and memory_smaller is not None and memory_smaller < memory_new:
            given_up = [
                f"memory: the target's patch {list(old_patch)} fits the source's strides, but the new network "
                f"needs about {planner.budget_ratio(memory_new, dim):.1f}x the budget {planner.name} plans for "
                f"there; patch changed to {list(smaller)}, the nearest valid size within the median image shape",
                *smaller_given_up,
            ]
            new_patch, memory_new = smaller, memory_smaller
    reference = planner.reference(dim)
    old_bs = resolved.get("batch_size")
    old_bs = int(old_bs) if isinstance(old_bs, (int, float)) and not isinstance(old_bs, bool) else None
    if memory_new is None or memory_new <= 0:
        new_bs = old_bs
        reason = f"{source.spec.class_name} has no memory estimate (compute_conv_feature_map_size): batch size kept"
    else:
        voxels, voxel_note = dataset_voxels(target, dim)
        new_bs, reason = planner_batch_size(planner, memory_new, new_patch, voxels)
        if voxel_note:
            reason += f" ({voxel_note})"
        ratio = planner.budget_ratio(memory_new, dim)
        if ratio > 1:
            given_up.append(
                f"memory: at batch size {new_bs} the new network at patch {list(new_patch)} needs about "
                f"{ratio:.1f}x the budget {planner.name} plans for ({planner.vram_target_GB:g} GB); the planner "
                "would have shrunk the patch, so expect to need a larger GPU (or lower the patch size yourself)"
            )
    decision = PatchDecision(
        old=old_patch,
        new=new_patch,
        divisor=tuple(divisor),
        median_shape=median,
        min_bottleneck_edge=planner.featuremap_min_edge_length,
        given_up=tuple(given_up),
        memory_old=memory_old,
        memory_new=memory_new,
        memory_reference=reference,
        planner=planner,
        batch_size_old=old_bs,
        batch_size_new=new_bs,
        batch_size_reason=reason,
        notes=tuple(patch_notes),
    )
    if new_patch != old_patch:
        cfg["patch_size"] = list(new_patch)
    if new_bs is not None and new_bs != old_bs:
        cfg["batch_size"] = new_bs
    plans["plans_name"] = plans_name
    return plans, decision, warnings, notes

