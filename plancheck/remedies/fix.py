"""``plancheck check --fix``: rewrite the target's plans so that the source's weights load.

Two strategies:

* ``architecture`` (the default) copies the source's network (``network_class_name``,
  ``arch_kwargs``, ``_kw_requires_import``) into the target configuration and keeps
  everything that decides the target's data: spacing, normalisation, intensity
  statistics, transpose, resampling and therefore ``data_identifier``, so data already
  preprocessed for the target is reused. The patch size is then made valid for the new
  strides (:func:`choose_patch_size`) and the batch size re-derived with the formula and
  the reference values of the planner named in ``experiment_planner_used``
  (:func:`plancheck.network.planner.planner_reference`, :func:`plancheck.network.planner.planner_batch_size`), with
  nnU-Net's own memory
  estimate (``compute_conv_feature_map_size`` on a meta-device network).
* ``move`` reproduces ``nnUNetv2_move_plans_between_datasets`` (:func:`move_plans`): the
  source's plans, renamed for the target dataset, with their own preprocessing. What
  that changes in the target's preprocessing is listed as warnings.

:func:`plan_fix` is pure: it returns a :class:`FixResult` with the new plans, the list of
changes, the patch decision, and the exact nnU-Net commands that follow. Only
:func:`write_fix` writes, atomically (:mod:`plancheck.atomic`), and never over an
existing file unless forced. Plans cannot fix everything: other input channels, 2D
weights for a 3D configuration and prefixed state_dict keys are refused with
:class:`Unfixable`, which carries the options.

torch and nnU-Net are imported lazily (through :mod:`plancheck.network.build` and the planner lookup).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import typing as t
from dataclasses import replace

from plancheck._nnunet import captured_warnings, quiet
from plancheck.atomic import atomic_write_text
from plancheck.remedies.commands import device_note, trainer_note
from plancheck.errors import FixError, InputError, OutputExists, PlancheckError, Unfixable, UsageError
from plancheck.network.planner import (
    PatchDecision,
    choose_patch_size,
    estimate_vram,
    planner_batch_size,
    planner_reference,
    stride_divisor,
)
from plancheck.inputs.plans import LEGACY_ARCHITECTURE_KEYS, PlansFile, resolve_configuration
from plancheck.options import FixStrategy as Strategy
from plancheck.records.fix import FixResult, plans_json
from plancheck.network.spec import Side, prepare_side

if t.TYPE_CHECKING:
    pass

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_FOLD",
    "FixResult",
    "OutputExists",
    "PatchDecision",
    "Strategy",
    "Unfixable",
    "choose_patch_size",
    "default_plans_name",
    "move_plans",
    "plan_fix",
    "plan_fixes",
    "plans_json",
    "stride_divisor",
    "write_fix",
]

Json = t.Any

#: Placeholders in the printed commands when the fold / the checkpoint are not known.
DEFAULT_FOLD = "FOLD"
DEFAULT_CHECKPOINT = "PATH/TO/checkpoint_final.pth"

#: Key prefixes that DDP and torch.compile put in front of every state_dict key.
KNOWN_KEY_PREFIXES = ("module.", "_orig_mod.")



# --- unfixable cases ------------------------------------------------------------------------------------------------


def _dimension(side: Side) -> int | None:
    dim = side.configuration.dimension
    if dim is not None:
        return dim
    conv = str(side.spec.arch_kwargs.get("conv_op", ""))
    match = re.search(r"Conv([123])d$", conv)
    return int(match.group(1)) if match else None


def _refuse_unfixable(source: Side, target: Side, strategy: Strategy, source_key_prefix: str | None) -> None:
    short: list[str] = []
    reasons: list[str] = []
    options: list[str] = []
    if source_key_prefix:
        short.append(f"source keys prefixed with '{source_key_prefix}'")
        reasons.append(
            f"the source's state_dict keys start with '{source_key_prefix}' (DDP adds 'module.', torch.compile "
            "'_orig_mod.'); nnU-Net's load_pretrained_weights matches keys by name and strips neither, so no key "
            "matches, whatever the plans say"
        )
        options.append(
            f"strip '{source_key_prefix}' from every key of the checkpoint's 'network_weights' and save it again "
            "(nnU-Net's own checkpoints never carry it: nnUNetTrainer.save_checkpoint removes it), then check again"
        )
    s_dim, t_dim = _dimension(source), _dimension(target)
    if strategy is Strategy.ARCHITECTURE and s_dim is not None and t_dim is not None and s_dim != t_dim:
        short.append(f"{s_dim}D weights for a {t_dim}D configuration")
        reasons.append(
            f"the source configuration '{source.configuration.name}' is {s_dim}D and the target configuration "
            f"'{target.configuration.name}' is {t_dim}D: {s_dim}D convolution weights cannot fill a {t_dim}D network"
        )
        options.append(
            f"fine-tune the target's {s_dim}D configuration instead (a '{source.configuration.name}'-like "
            f"configuration of the target, e.g. --target-configuration {'2d' if s_dim == 2 else '3d_fullres'})"
        )
        options.append(f"use pretrained weights of a {t_dim}D configuration for the target's {t_dim}D configuration")
    s_in, t_in = source.spec.input_channels, target.spec.input_channels
    if s_in != t_in:
        short.append(f"{s_in} input channel(s) in the source, {t_in} in the target")
        reasons.append(
            f"the source network takes {s_in} input channel(s) ({source.input_channels_from}) and the target "
            f"{t_in} ({target.input_channels_from}): the first convolution's weights have another shape, and "
            "the channel count comes from the data, not from the plans"
        )
        options.append(f"fine-tune on a dataset with the source's {s_in} channel(s), in the same order")
        options.append(
            f"adapt the first convolution's weights outside nnU-Net ({s_in} -> {t_in} input channels, e.g. "
            "repeat or average the pretrained kernels over the new channels), save the checkpoint, and check again"
        )
    if reasons:
        raise Unfixable(
            f"plans alone cannot fix this: {'; '.join(short)}", reasons=reasons, options=options, path=target.label
        )


# --- names, paths, commands -----------------------------------------------------------------------------------------

_PLANS_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _plans_identifier(side: Side) -> str:
    """The name nnU-Net knows the plans by: the file name (``-p``), else the ``plans_name`` field."""
    if side.plans.path:
        return os.path.splitext(os.path.basename(side.plans.path))[0]
    return side.plans.plans_name or "nnUNetPlans"


def default_plans_name(target_plans_name: str, source_dataset_name: str) -> str:
    """``<target plans name>_from_<source dataset name>``; idempotent (the suffix is added once)."""
    suffix = f"_from_{source_dataset_name}"
    return target_plans_name if target_plans_name.endswith(suffix) else target_plans_name + suffix


def _output_path(target: Side, plans_name: str, out: str | None) -> str | None:
    if out is not None:
        out = os.fspath(out)
        if out.endswith(".json"):
            return out
        return os.path.join(out, plans_name + ".json")
    if target.plans.path:
        return os.path.join(os.path.dirname(os.path.abspath(target.plans.path)), plans_name + ".json")
    return None


def _dataset_id(dataset_name: str | None) -> str:
    from plancheck.inputs.datasets import command_id

    return command_id(dataset_name)


def _commands(
    dataset_name: str | None,
    plans_name: str,
    configuration: str,
    *,
    preprocess: bool,
    fold: str | int | None,
    checkpoint: str | None,
    trainer: str | None = None,
) -> tuple[str, ...]:
    from plancheck.remedies.commands import preprocess_command, train_command

    out = []
    if preprocess:
        out.append(preprocess_command(dataset_name, plans_name, configuration))
    out.append(train_command(
        dataset_name, configuration, fold, plans_name, trainer=trainer, fold_placeholder=DEFAULT_FOLD,
        pretrained_weights=DEFAULT_CHECKPOINT if checkpoint is None else os.path.abspath(checkpoint)))
    return tuple(out)


def _preprocessed_exists(target: Side, data_identifier: str | None) -> bool:
    if not target.plans.path or not data_identifier:
        return False
    return os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(target.plans.path)), data_identifier))


def _location_notes(path: str | None, dataset_name: str | None, plans_name: str) -> list[str]:
    notes = []
    if path is None:
        return ["no output path: the target plans were not read from a file; pass out= (-o)"]
    if os.path.splitext(os.path.basename(path))[0] != plans_name:
        notes.append(
            f"the file is named {os.path.basename(path)} but the plans are called {plans_name}: nnU-Net looks for "
            f"{plans_name}.json (-p {plans_name})"
        )
    if dataset_name and os.path.basename(os.path.dirname(os.path.abspath(path))) != dataset_name:
        notes.append(
            f"nnU-Net reads plans from $nnUNet_preprocessed/{dataset_name}/{plans_name}.json: copy the file there "
            "before running the commands"
        )
    return notes


# --- the architecture strategy --------------------------------------------------------------------------------------


def _source_architecture(source: Side) -> dict[str, Json]:
    """The source's resolved ``architecture``, with class paths as plancheck resolved them (moved classes fixed)."""
    arch = copy.deepcopy(source.configuration.architecture)
    arch["network_class_name"] = source.spec.class_path
    kwargs = arch.setdefault("arch_kwargs", {})
    for key in source.spec.requires_import:
        if kwargs.get(key) is not None:
            kwargs[key] = source.spec.arch_kwargs[key]
    arch["_kw_requires_import"] = list(source.spec.requires_import)
    return json.loads(json.dumps(arch))  # tuples -> lists, as in a file


def _planner_channels(side: Side) -> tuple[int, int, str]:
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


def _dataset_voxels(target: Side, dim: int) -> tuple[float | None, str]:
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


def _fix_architecture(
    source: Side, target: Side, plans_name: str
) -> tuple[dict[str, Json], PatchDecision, list[str], list[str]]:
    plans = copy.deepcopy(target.plans.data)
    name = target.configuration.name
    cfg = plans["configurations"][name]
    resolved = target.configuration.data
    warnings: list[str] = []
    notes: list[str] = []

    arch = _source_architecture(source)
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

    in_ch, out_ch, channel_note = _planner_channels(target)
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
        voxels, voxel_note = _dataset_voxels(target, dim)
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


# --- the move strategy ----------------------------------------------------------------------------------------------


def move_plans(
    source_plans: dict[str, Json],
    *,
    target_dataset_name: str,
    source_plans_identifier: str,
    target_plans_identifier: str | None,
    image_reader_writer: str,
) -> dict[str, Json]:
    """The plans ``nnUNetv2_move_plans_between_datasets`` saves, computed without an nnU-Net tree.

    A line-by-line twin of ``move_plans_between_datasets``: the source's plans with
    ``dataset_name`` set to the target dataset, every ``data_identifier`` re-based on
    the new plans identifier (when it differs), the target's image reader/writer and
    the new ``plans_name``; key order as in the source.
    """
    plans = copy.deepcopy(source_plans)
    if target_plans_identifier is None:
        target_plans_identifier = source_plans_identifier
    plans["dataset_name"] = target_dataset_name
    if target_plans_identifier != source_plans_identifier:
        for cfg in plans["configurations"].values():
            if "data_identifier" in cfg:
                old = cfg["data_identifier"]
                if old.startswith(source_plans_identifier):
                    cfg["data_identifier"] = target_plans_identifier + old[len(source_plans_identifier):]
                else:
                    cfg["data_identifier"] = target_plans_identifier + "_" + old
    plans["image_reader_writer"] = image_reader_writer
    plans["plans_name"] = target_plans_identifier
    return plans


def _reader_writer(target: Side) -> tuple[str, str]:
    """The reader/writer nnU-Net's move would pick for the target dataset, and where the answer came from.

    nnU-Net's move opens one of the target's raw images. Without them, the answer is
    taken as nnU-Net's planner took it from those same images: dataset.json's
    ``overwrite_image_reader_writer``, else the target plans' ``image_reader_writer``,
    else the first reader nnU-Net lists for dataset.json's ``file_ending``.
    """
    data = target.dataset_json.data if target.dataset_json is not None else {}
    override = data.get("overwrite_image_reader_writer")
    if isinstance(override, str) and override != "None":
        return override, "dataset.json overwrite_image_reader_writer"
    current = target.plans.data.get("image_reader_writer")
    if isinstance(current, str) and current:
        return current, "the target plans' image_reader_writer (chosen by nnU-Net's planner from the same images)"
    ending = data.get("file_ending")
    if isinstance(ending, str):
        with quiet(), captured_warnings():
            from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

            try:
                rw = determine_reader_writer_from_file_ending(ending, None, False, verbose=False)
                return rw.__name__, f"the first nnU-Net reader for {ending}"
            except RuntimeError:
                pass
    raise FixError("cannot tell which image reader/writer the target dataset uses", path=target.label)


_PREPROCESSING_FIELDS = (
    "spacing",
    "normalization_schemes",
    "use_mask_for_norm",
    "preprocessor_name",
    "resampling_fn_data",
    "resampling_fn_data_kwargs",
    "resampling_fn_seg",
    "resampling_fn_seg_kwargs",
    "previous_stage",
)
_PLANS_PREPROCESSING_FIELDS = ("transpose_forward", "foreground_intensity_properties_per_channel")


def _preprocessing_view(plans: PlansFile, configuration: str) -> Json:
    resolved = resolve_configuration(plans, configuration).data
    return (
        {k: resolved.get(k) for k in _PREPROCESSING_FIELDS},
        {k: plans.data.get(k) for k in _PLANS_PREPROCESSING_FIELDS},
    )


def _fix_move(source: Side, target: Side, plans_name: str) -> tuple[dict[str, Json], list[str], list[str]]:
    warnings: list[str] = []
    notes: list[str] = []
    target_dataset = target.plans.dataset_name
    if not target_dataset:
        raise FixError("the target plans name no dataset_name: cannot move plans to it", path=target.label)
    rw, how = _reader_writer(target)
    notes.append(f"image_reader_writer {rw}: {how}")
    source_identifier = _plans_identifier(source)
    plans = move_plans(
        source.plans.data,
        target_dataset_name=target_dataset,
        source_plans_identifier=source_identifier,
        target_plans_identifier=plans_name,
        image_reader_writer=rw,
    )
    # Never let the moved plans' data land in a folder the target's own preprocessing uses.
    target_file = target.plans
    used: dict[str, str] = {}
    for name in target_file.data["configurations"]:
        with contextlib.suppress(PlancheckError, KeyError, TypeError):
            ident = resolve_configuration(target_file, name).data.get("data_identifier")
            if isinstance(ident, str):
                used.setdefault(ident, name)
    moved_file = PlansFile(data=plans)
    for name, cfg in plans["configurations"].items():
        ident = cfg.get("data_identifier") if isinstance(cfg, dict) else None
        if not isinstance(ident, str) or ident not in used:
            continue
        same = False
        with contextlib.suppress(PlancheckError, KeyError, TypeError):
            same = _preprocessing_view(moved_file, name) == _preprocessing_view(target_file, used[ident])
        if same:
            notes.append(f"data_identifier {ident} is shared with the target's '{used[ident]}', which is preprocessed "
                         "the same way")
            continue
        renamed = f"{ident}_{source.plans.dataset_name or 'moved'}"
        cfg["data_identifier"] = renamed
        warnings.append(
            f"data_identifier of '{name}' set to {renamed}, not {ident} as nnUNetv2_move_plans_between_datasets "
            f"would: {ident} is the target's '{used[ident]}' data, preprocessed differently, and would be overwritten"
        )
    lost = [c for c in target_file.data["configurations"] if c not in plans["configurations"]]
    if lost:
        warnings.append(f"configuration(s) of the target's plans not in the moved plans: {', '.join(lost)}")
    added = [c for c in plans["configurations"] if c not in target_file.data["configurations"]]
    if added:
        warnings.append(f"configuration(s) added by the moved plans (the source's, not in the target's plans): "
                        f"{', '.join(added)}")
    if source.configuration.name != target.configuration.name:
        notes.append(
            f"the moved plans are trained with the source's configuration '{source.configuration.name}' "
            f"(the target's '{target.configuration.name}' is not used)"
        )
    return plans, warnings, notes


# --- plan_fix / write_fix -------------------------------------------------------------------------------------------


def _strategy(value: str | Strategy) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise UsageError(
            f"unknown fix strategy {value!r}; valid: {', '.join(s.value for s in Strategy)}"
        ) from None


def _plans_diff(old: PlansFile, new: PlansFile, old_configuration: str, new_configuration: str,
                target: Side) -> t.Any:
    """Every change from the target's plans to the new plans (the listed changes, and for ``move`` its warnings).

    The fixed configuration first (compared with the one it replaces when the names differ),
    then every other configuration both files have: the written file changes them too (the
    moved plans are the source's whole plans; an inheriting configuration gets the new
    architecture). Plan-wide fields once.
    """
    from dataclasses import replace as replace_record

    from plancheck.compare.plansdiff import diff

    dataset_jsons = {"dataset_json_a": target.dataset_json, "dataset_json_b": target.dataset_json}
    first = diff(old, new, configurations=(old_configuration,), target_configuration=new_configuration,
                 **dataset_jsons)
    others = [name for name in old.data["configurations"]
              if name in new.data["configurations"] and name not in (old_configuration, new_configuration)]
    changes = list(first.changes)
    pairs = list(first.configurations)
    if others:
        rest = diff(old, new, configurations=others, **dataset_jsons)
        seen = {c.path for c in changes}
        changes += [c for c in rest.changes if c.path not in seen]
        pairs += rest.configurations
    return replace_record(first, changes=tuple(changes), configurations=tuple(pairs))


def _move_warnings(result: t.Any) -> list[str]:
    from plancheck.compare.plansdiff import preprocessing_warnings

    return [
        f"preprocessing changes: {w}"
        for w in preprocessing_warnings(result, names=("the target's plans", "the moved plans"))
    ]


def plan_fix(
    source: Side,
    target: Side,
    *,
    strategy: str | Strategy = Strategy.ARCHITECTURE,
    plans_name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    source_key_prefix: str | None = None,
    fold: str | int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    allow_import: t.Iterable[str] = (),
    trainer: str | None = None,
    trainer_by: str | None = None,
) -> FixResult:
    """Work out new target plans that load the source's weights; write nothing.

    ``plans_name`` defaults to :func:`default_plans_name` (``<target plans>_from_<source
    dataset>``), or to the file name of ``out`` when ``out`` names a ``.json`` file.
    ``out`` is a file or a directory; by default the plans go next to the target's.
    ``source_key_prefix`` is the prefix the source checkpoint's keys carry, if any (the
    lead's checkpoint reader knows it). ``fold`` and ``checkpoint`` fill in the printed
    ``nnUNetv2_train`` command. Raises :class:`Unfixable` when plans cannot help, and
    :class:`UsageError` for an unknown strategy or an invalid plans name.
    """
    strategy = _strategy(strategy)
    allow = tuple(allow_import)
    _refuse_unfixable(source, target, strategy, source_key_prefix)

    from plancheck.network.build import network_shapes
    from plancheck.compare.loading import first_failure

    source_shapes = network_shapes(source.spec, source=source.label)
    target_shapes = network_shapes(target.spec, source=target.label)
    target_identifier = _plans_identifier(target)
    dataset_name = target.plans.dataset_name
    if first_failure(source_shapes, target_shapes) is None:
        ident = target.configuration.data.get("data_identifier")
        return FixResult(
            strategy=strategy,
            source=source.label,
            target=target.label,
            source_configuration=source.configuration.name,
            configuration=target.configuration.name,
            plans_name=target_identifier,
            path=target.plans.path,
            old_plans=target.plans.data,
            new_plans=copy.deepcopy(target.plans.data),
            changes=(),
            data_identifier_kept=True,
            data_identifier_note="already compatible, nothing to change: the target's plans and preprocessed data "
            "are used as they are",
            patch=None,
            warnings=(),
            commands=_commands(
                dataset_name,
                target_identifier,
                target.configuration.name,
                preprocess=not _preprocessed_exists(target, ident),
                fold=fold,
                checkpoint=None if checkpoint is None else os.fspath(checkpoint),
                trainer=trainer,
            ),
            compatible=True,
            already_compatible=True,
            notes=("already compatible, nothing to change",),
        )

    out_text = None if out is None else os.fspath(out)
    if plans_name is None:
        if out_text is not None and out_text.endswith(".json"):
            plans_name = os.path.splitext(os.path.basename(out_text))[0]
        else:
            plans_name = default_plans_name(
                target_identifier, source.plans.dataset_name or _plans_identifier(source)
            )
    if not _PLANS_NAME.match(plans_name):
        raise UsageError(f"invalid plans name {plans_name!r}: use letters, digits, '_', '-', '.', '+'")
    path = _output_path(target, plans_name, out_text)
    warnings: list[str] = []
    notes: list[str] = []
    patch: PatchDecision | None = None
    if strategy is Strategy.ARCHITECTURE:
        new_plans, patch, w, n = _fix_architecture(source, target, plans_name)
        configuration = target.configuration.name
        ident = target.configuration.data.get("data_identifier")
        kept = True
        identifier_note = (
            f"data_identifier {ident} kept: spacing, normalisation, intensity properties, transpose and resampling "
            f"are the target's, so the data preprocessed for {target_identifier} is reused as it is"
        )
        preprocess = not _preprocessed_exists(target, ident)
        if preprocess:
            identifier_note += (
                f" (not found next to the target's plans: preprocess once, into {ident})" if target.plans.path
                else " (run the preprocessing below unless it already exists)"
            )
    else:
        new_plans, w, n = _fix_move(source, target, plans_name)
        configuration = source.configuration.name
        new_ident = new_plans["configurations"][configuration].get("data_identifier")
        with contextlib.suppress(PlancheckError, KeyError):
            new_ident = resolve_configuration(PlansFile(data=new_plans), configuration).data.get("data_identifier")
        old_ident = target.configuration.data.get("data_identifier")
        kept = new_ident == old_ident
        identifier_note = (
            f"data_identifier changed from {old_ident} to {new_ident}: the moved plans bring the source's "
            "preprocessing, so the target is preprocessed again into a new folder and nothing preprocessed before "
            "is overwritten"
            if not kept
            else f"data_identifier {new_ident} kept: the moved plans preprocess '{configuration}' as the target did"
        )
        preprocess = True
    warnings += w
    notes += n

    new_file = PlansFile(data=new_plans, path=path)
    with quiet(), captured_warnings():
        try:
            fixed = prepare_side("target", new_file, configuration, target.dataset_json, allow=allow)
        except PlancheckError as e:
            raise FixError(f"nnU-Net cannot read the fixed plans: {e.message}", path=path) from e
    fixed_failure = first_failure(source_shapes, network_shapes(fixed.spec, source=new_file.label))
    if fixed_failure is not None:  # pragma: no cover - a bug in the fix, not in the input
        raise FixError(
            f"the fixed plans still do not load the weights: nnU-Net would stop at {fixed_failure.key}", path=path
        )
    old_file = target.plans
    plans_diff = _plans_diff(old_file, new_file, target.configuration.name, configuration, target)
    if strategy is Strategy.MOVE:
        warnings += _move_warnings(plans_diff)
    changes = plans_diff.changes
    if path is not None and target.plans.path and os.path.abspath(path) == os.path.abspath(target.plans.path):
        warnings.append(f"the new plans would replace the target's own plans file {target.plans.path}")
    notes += _location_notes(path, dataset_name, plans_name)
    commands = _commands(
        dataset_name,
        plans_name,
        configuration,
        preprocess=preprocess,
        fold=fold,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        trainer=trainer,
    )
    notes += [trainer_note(trainer, trainer_by), *filter(None, [device_note()])]
    return FixResult(
        strategy=strategy,
        source=source.label,
        target=target.label,
        source_configuration=source.configuration.name,
        configuration=configuration,
        plans_name=plans_name,
        path=path,
        old_plans=target.plans.data,
        new_plans=new_plans,
        changes=changes,
        data_identifier_kept=kept,
        data_identifier_note=identifier_note,
        patch=patch,
        warnings=tuple(warnings),
        commands=commands,
        compatible=True,
        notes=tuple(notes),
    )


def plan_fixes(
    pairs: t.Sequence[tuple[Side, Side]],
    *,
    strategy: str | Strategy = Strategy.ARCHITECTURE,
    plans_name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    source_key_prefix: str | None = None,
    fold: str | int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    allow_import: t.Iterable[str] = (),
    trainer: str | None = None,
    trainer_by: str | None = None,
) -> tuple[FixResult | FixError, ...]:
    """Fix several configurations of ONE target plans file into one new plans file; write nothing.

    ``pairs`` holds a (source, target) pair per configuration, every target side read from
    the same plans. Each configuration's fix (:func:`plan_fix`) starts from the plans the
    fixes before it left, so one file holds them all. Every configuration is then checked
    again in those final plans, because a later fix can change an earlier configuration
    (one that inherits from it, or a move that replaces them all): ``compatible`` says
    whether it loads there. Returns, per pair, its :class:`FixResult` (all sharing
    ``new_plans``, ``path``, ``plans_name`` and the full list of ``changes``), or the
    :class:`FixError` (:class:`Unfixable`) that refused it.
    """
    from plancheck.network.build import network_shapes
    from plancheck.compare.loading import first_failure

    strategy = _strategy(strategy)
    allow = tuple(allow_import)
    if not pairs:
        return ()
    original = pairs[0][1]
    current = original.plans
    outcomes: list[FixResult | FixError] = []
    for source, target in pairs:
        if current is not original.plans:
            with quiet(), captured_warnings():
                target = prepare_side("target", current, target.configuration.name, target.dataset_json, allow=allow)
        try:
            result = plan_fix(source, target, strategy=strategy, plans_name=plans_name, out=out,
                              source_key_prefix=source_key_prefix, fold=fold, checkpoint=checkpoint,
                              allow_import=allow, trainer=trainer, trainer_by=trainer_by)
        except FixError as e:
            outcomes.append(e)
            continue
        outcomes.append(result)
        if not result.already_compatible and result.changed:
            current = PlansFile(data=result.new_plans, path=original.plans.path)
            plans_name = result.plans_name  # every later configuration goes into the same file
    changing = [o for o in outcomes if isinstance(o, FixResult) and not o.already_compatible]
    if not changing:
        return tuple(outcomes)
    last = changing[-1]
    final = PlansFile(data=last.new_plans, path=last.path)
    changes = _plans_diff(original.plans, final, changing[0].configuration, changing[0].configuration,
                          original).changes
    combined: list[FixResult | FixError] = []
    for (source, target), outcome in zip(pairs, outcomes):
        if isinstance(outcome, FixError):
            combined.append(outcome)
            continue
        try:
            with quiet(), captured_warnings():
                fixed = prepare_side("target", final, outcome.configuration, target.dataset_json, allow=allow)
            loads = first_failure(network_shapes(source.spec, source=source.label),
                                  network_shapes(fixed.spec, source=final.label)) is None
        except PlancheckError:
            loads = False
        notes = outcome.notes
        identifier = {"data_identifier_kept": outcome.data_identifier_kept,
                      "data_identifier_note": outcome.data_identifier_note}
        if outcome.already_compatible:
            notes = (*notes, f"'{outcome.configuration}' needs no change of its own: the fixes of the other "
                     "configurations in this file already make it load")
            old_ident = _data_identifier(original.plans, outcome.configuration)
            new_ident = _data_identifier(final, outcome.configuration)
            identifier = {
                "data_identifier_kept": old_ident == new_ident,
                "data_identifier_note": f"data_identifier {new_ident} kept" if old_ident == new_ident
                else f"data_identifier changed from {old_ident} to {new_ident} by the fixes of the other "
                "configurations: preprocess into the new folder",
            }
        combined.append(replace(
            outcome,
            **identifier,
            plans_name=last.plans_name,
            path=last.path,
            old_plans=original.plans.data,
            new_plans=last.new_plans,
            changes=changes,
            already_compatible=False,
            compatible=loads,
            notes=notes,
            commands=_commands(
                original.plans.dataset_name,
                last.plans_name,
                outcome.configuration,
                preprocess=any(c.startswith("nnUNetv2_preprocess ") for c in outcome.commands),
                fold=fold,
                checkpoint=None if checkpoint is None else os.fspath(checkpoint),
                trainer=trainer,
            ),
        ))
    return tuple(combined)


def _data_identifier(plans: PlansFile, configuration: str) -> str | None:
    with contextlib.suppress(PlancheckError, KeyError, TypeError):
        ident = resolve_configuration(plans, configuration).data.get("data_identifier")
        return ident if isinstance(ident, str) else None
    return None


def write_fix(result: FixResult, *, force: bool = False, check: t.Callable[[str], None] | None = None) -> str:
    """Write the new plans atomically to ``result.path``; return the path.

    ``check(temporary_path)`` reads the complete file back before it takes its name and
    raises (:class:`~plancheck.errors.ReadBackError`, exit 5) to keep it from doing so.

    Writes nothing when the plans did not change (``result.changed`` is false: already
    compatible). Raises :class:`OutputExists` (a usage error, exit 2) when the file
    exists and ``force`` is false, and :class:`UsageError` when there is no path. The
    old file, if any, is intact whenever this raises.
    """
    if result.path is None:
        raise UsageError("no output path for the fixed plans: the target was not read from a file; pass -o FILE")
    if not result.changed:
        return result.path
    try:
        return atomic_write_text(result.path, result.new_text(), overwrite=force, check=check)
    except FileExistsError:
        raise OutputExists(
            "exists; not overwritten (pass --force to replace it, or choose another --plans-name / -o)",
            path=result.path,
        ) from None
    except OSError as e:  # a missing or read-only folder: input that cannot be acted on (exit 3), nothing written
        raise InputError(f"cannot write the fixed plans: {e.strerror or e}", path=result.path) from e
