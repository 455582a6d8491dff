"""``plancheck diff``: two plans files compared field by field, each difference in one category.

The comparison runs on what nnU-Net would use: each configuration resolved (``inherits_from``
applied, the old plans format converted, see :mod:`plancheck.inputs.plans`), the plan-wide fields
(``transpose_forward``, ``foreground_intensity_properties_per_channel``, ...) and, when a
dataset.json is given or sits next to the plans, its channels, labels and regions.
:mod:`plancheck.compare.jsondiff` finds the differences; paths stay tuples (:mod:`plancheck.inputs.paths`) until
they are
rendered, and each change also carries the path as it stands in each user's file.

Every difference gets exactly one :class:`Category` from a closed table (:func:`classify`):

* ``architecture``: changes weight shapes or the set of state_dict keys;
* ``io``: input channels, labels or regions (dataset.json; ``label_manager``; the number of
  entries of ``normalization_schemes``, which is the channel count when there is no dataset.json);
  blocking (``diff`` exits 1) only when the number of input channels changes: labels and
  regions change only the segmentation head, which nnU-Net never loads;
* ``preprocessing``: the weights load, but the network sees other data;
* ``training``: patch size, batch size, batch_dice, shape-neutral layer settings;
* ``identity``: names, ``data_identifier``, planner, statistics nothing reads.

This module imports neither torch nor nnU-Net (importing ``nnunetv2`` imports torch).
"""

from __future__ import annotations

import copy
import json
import os
import typing as t
from dataclasses import replace

from plancheck.errors import ConfigurationNotFound, PlansError, UsageError
from plancheck.compare.jsondiff import PERMUTATION_NOTE, differences, is_permutation
from plancheck.inputs.paths import DATASET_JSON, FieldPath, format_path, locate
from plancheck.inputs.plans import (
    _LEGACY_CLASS_PATHS,
    LEGACY_ARCHITECTURE_KEYS,
    DatasetJson,
    PlansFile,
    ResolvedConfiguration,
    find_dataset_json,
    load_dataset_json,
    load_plans,
    resolve_configuration,
)
from plancheck.records.diff import BLOCKING, Category, ChangeKind, PlanChange, PlansDiff

__all__ = [
    "BLOCKING",
    "Category",
    "ChangeKind",
    "PERMUTATION_NOTE",
    "PlanChange",
    "PlansDiff",
    "classify",
    "diff",
    "preprocessing_warnings",
]

Json = t.Any
PlansInput = t.Union[str, "os.PathLike[str]", dict, PlansFile]
DatasetInput = t.Union[str, "os.PathLike[str]", dict, DatasetJson]


# --- classification -------------------------------------------------------------------------------------------------

_ARCH_KWARGS = ("architecture", "arch_kwargs")

#: (arch_kwargs field, key) pairs that change no weight shape and no state_dict key.
_SHAPE_NEUTRAL = frozenset(
    {
        ("nonlin_kwargs", "inplace"),
        ("nonlin_kwargs", "negative_slope"),
        ("dropout_op_kwargs", "p"),
        ("dropout_op_kwargs", "inplace"),
        ("norm_op_kwargs", "eps"),
        ("norm_op_kwargs", "momentum"),
    }
)
_PERMUTED = ("kernel_sizes", "strides")
_STATISTIC_NOTE = "dataset statistic from planning; training does not read it"
_UNKNOWN_NOTE = "not an nnU-Net plans field; only custom code reads it"

#: Configuration fields outside ``architecture``.
CONFIGURATION_FIELDS: dict[str, tuple[Category, str]] = {
    "data_identifier": (Category.IDENTITY, ""),
    "preprocessor_name": (Category.PREPROCESSING, ""),
    "batch_size": (Category.TRAINING, ""),
    "patch_size": (Category.TRAINING, ""),
    "median_image_size_in_voxels": (Category.IDENTITY, _STATISTIC_NOTE),
    "spacing": (Category.PREPROCESSING, ""),
    "normalization_schemes": (Category.PREPROCESSING, ""),
    "use_mask_for_norm": (Category.PREPROCESSING, ""),
    "resampling_fn_data": (Category.PREPROCESSING, ""),
    "resampling_fn_data_kwargs": (Category.PREPROCESSING, ""),
    "resampling_fn_seg": (Category.PREPROCESSING, ""),
    "resampling_fn_seg_kwargs": (Category.PREPROCESSING, ""),
    "resampling_fn_probabilities": (Category.PREPROCESSING, ""),
    "resampling_fn_probabilities_kwargs": (Category.PREPROCESSING, ""),
    "batch_dice": (Category.TRAINING, ""),
    "inherits_from": (Category.IDENTITY, ""),
    "next_stage": (Category.IDENTITY, "names the following cascade stage; this network is unchanged"),
    "previous_stage": (Category.PREPROCESSING, "the cascade input comes from another stage's predictions"),
    # old-format fields left in a configuration that has 'architecture': nnU-Net ignores them
    **{
        key: (Category.IDENTITY, "old-format field; nnU-Net ignores it when 'architecture' is present")
        for key in LEGACY_ARCHITECTURE_KEYS
    },
}

#: Plan-wide fields (everything but ``configurations``).
PLANS_FIELDS: dict[str, tuple[Category, str]] = {
    "dataset_name": (Category.IDENTITY, ""),
    "plans_name": (Category.IDENTITY, ""),
    "experiment_planner_used": (Category.IDENTITY, ""),
    "original_median_spacing_after_transp": (Category.IDENTITY, _STATISTIC_NOTE),
    "original_median_shape_after_transp": (Category.IDENTITY, _STATISTIC_NOTE),
    "image_reader_writer": (Category.PREPROCESSING, ""),
    "transpose_forward": (Category.PREPROCESSING, ""),
    "transpose_backward": (Category.PREPROCESSING, ""),
    "foreground_intensity_properties_per_channel": (Category.PREPROCESSING, ""),
    "label_manager": (Category.IO, "the label manager turns labels into the network's outputs"),
}

#: dataset.json fields that are compared (``modality`` is compared as ``channel_names``).
DATASET_FIELDS: dict[str, tuple[Category, str]] = {
    "channel_names": (Category.IO, ""),
    "labels": (Category.IO, "the segmentation head follows the labels"),
    "regions_class_order": (Category.IO, ""),
}

# Lists of numbers that are one value (an axis vector), compared whole rather than element by element.
_VECTOR_FIELDS = frozenset(
    {
        "patch_size",
        "spacing",
        "median_image_size_in_voxels",
        "transpose_forward",
        "transpose_backward",
        "original_median_spacing_after_transp",
        "original_median_shape_after_transp",
        "regions_class_order",
        "num_pool_per_axis",
    }
)

Scope = t.Literal["plans", "configuration", "dataset.json"]


def classify(
    scope: Scope, path: FieldPath, source: Json = None, target: Json = None, kind: str = "changed"
) -> tuple[Category, str]:
    """The category of a difference and a note, from the path inside its scope and both values.

    ``scope`` is ``"configuration"`` (``path`` starts inside a resolved configuration),
    ``"plans"`` (a plan-wide field) or ``"dataset.json"``.
    """
    if not path:
        return Category.ARCHITECTURE, ""
    top = path[0]
    if scope == "dataset.json":
        category, note = DATASET_FIELDS.get(str(top), (Category.IO, ""))
        if top == "channel_names":
            if kind in (ChangeKind.ADDED, ChangeKind.REMOVED) or _lengths_differ(source, target):
                note = _CHANNEL_COUNT
            else:
                note = "another channel here: the pretrained first layer expects A's channels in A's order"
        return category, note
    if scope == "plans":
        return PLANS_FIELDS.get(str(top), (Category.PREPROCESSING, _UNKNOWN_NOTE))
    if top == "architecture":
        return _classify_architecture(path, source, target)
    if top in ("normalization_schemes", "use_mask_for_norm") and len(path) == 1 and _lengths_differ(source, target):
        return Category.IO, f"one entry per input channel: {_CHANNEL_COUNT}"
    if top == "previous_stage" and (source is None) != (target is None):
        return Category.ARCHITECTURE, "a cascade stage takes the previous stage's segmentation as extra input channels"
    return CONFIGURATION_FIELDS.get(str(top), (Category.PREPROCESSING, _UNKNOWN_NOTE))


def _classify_architecture(path: FieldPath, source: Json, target: Json) -> tuple[Category, str]:
    if path[1:2] == ("network_class_name",) and isinstance(source, str) and isinstance(target, str):
        if source.rsplit(".", 1)[-1] == target.rsplit(".", 1)[-1]:
            return Category.ARCHITECTURE, "same class name in another module (the class moved?)"
        return Category.ARCHITECTURE, ""
    if len(path) >= 4 and path[:2] == _ARCH_KWARGS and (path[2], path[3]) in _SHAPE_NEUTRAL:
        return Category.TRAINING, "changes no weight shape"
    if len(path) == 4 and path[:2] == _ARCH_KWARGS and path[2] in _PERMUTED and is_permutation(source, target):
        return Category.ARCHITECTURE, PERMUTATION_NOTE
    return Category.ARCHITECTURE, ""


_CHANNEL_COUNT = "the number of input channels differs"
_CASCADE_NOTE = "a compared cascade stage takes the foreground labels as input channels, and their number differs"
_CHANNEL_COUNT_NOTES = frozenset({_CHANNEL_COUNT, f"one entry per input channel: {_CHANNEL_COUNT}"})


def _foreground_count(dataset: DatasetJson) -> int:
    """How many foreground labels a cascade stage receives as extra input channels.

    nnU-Net's ``determine_num_input_channels`` adds ``len(label_manager.foreground_labels)``;
    the label manager imports torch, so the count is read here from dataset.json as it
    does: every label value but background (0) and the ignore label, regions flattened.
    """
    labels = dataset.data.get("labels")
    if not isinstance(labels, dict):
        return 0
    values: set[int] = set()
    for name, value in labels.items():
        if name == "ignore":
            continue
        for v in value if isinstance(value, (list, tuple)) else (value,):
            try:
                values.add(int(v))
            except (TypeError, ValueError):
                continue
    return len(values - {0})


def _lengths_differ(a: Json, b: Json) -> bool:
    return isinstance(a, (list, dict)) and isinstance(b, (list, dict)) and len(a) != len(b)


# --- comparison -----------------------------------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: t.Any = _Missing()


def _get(obj: Json, path: FieldPath) -> Json:
    for item in path:
        if isinstance(obj, dict) and isinstance(item, str) and item in obj:
            obj = obj[item]
        elif isinstance(obj, list) and isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(obj):
            obj = obj[item]
        else:
            return _MISSING
    return obj


def _is_scalar(value: Json) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _is_vector(a: Json, b: Json, path: FieldPath) -> bool:
    if not (isinstance(a, list) and isinstance(b, list) and all(_is_scalar(v) for v in (*a, *b))):
        return False
    last = path[-1]
    if isinstance(last, int):  # an element of a list of lists: strides[4], kernel_sizes[0]
        return True
    return last in _VECTOR_FIELDS or (len(path) >= 2 and path[-2] == "labels")


def _collapse(a: Json, b: Json, path: FieldPath, kind: str) -> tuple[FieldPath, str]:
    """Report a change at the level a reader thinks in.

    A list whose length differs (a depth change) is one change on the whole list; an
    axis vector (``patch_size``, ``strides[4]``) is one change on the vector.
    """
    for n in range(1, len(path)):
        va, vb = _get(a, path[:n]), _get(b, path[:n])
        if isinstance(va, list) and isinstance(vb, list) and len(va) != len(vb):
            return path[:n], ChangeKind.CHANGED.value
    for n in range(1, len(path)):
        if _is_vector(_get(a, path[:n]), _get(b, path[:n]), path[:n]):
            return path[:n], ChangeKind.CHANGED.value
    return path, kind


def _order_key(a: Json, b: Json, path: FieldPath) -> tuple[int, ...]:
    """Document order: keys in A's order, then keys only B has; list elements by index."""
    key: list[int] = []
    na, nb = a, b
    for item in path:
        if isinstance(item, int):
            key.append(item)
        else:
            keys_a = list(na) if isinstance(na, dict) else []
            keys_b = [k for k in nb if k not in keys_a] if isinstance(nb, dict) else []
            if item in keys_a:
                key.append(keys_a.index(item))
            elif item in keys_b:
                key.append(len(keys_a) + keys_b.index(item))
            else:
                key.append(len(keys_a) + len(keys_b))
        na, nb = _get(na, (item,)), _get(nb, (item,))
    return tuple(key)


def _differences(a: Json, b: Json) -> list[tuple[FieldPath, str]]:
    """(path, kind) for each difference between two JSON values, collapsed and in document order."""
    found: dict[FieldPath, str] = {}
    for raw, kind in differences(a, b):  # 1 and 1.0 are the same spacing; one change per key
        path, k = _collapse(a, b, raw, kind)
        found.setdefault(path, k)
    return sorted(found.items(), key=lambda item: _order_key(a, b, item[0]))


def _changes(
    scope: Scope,
    a: Json,
    b: Json,
    prefix: FieldPath,
    where_a: t.Callable[[FieldPath], FieldPath],
    where_b: t.Callable[[FieldPath], FieldPath],
) -> list[PlanChange]:
    out = []
    for path, kind in _differences(a, b):
        va, vb = _get(a, path), _get(b, path)
        source = None if va is _MISSING else copy.deepcopy(va)
        target = None if vb is _MISSING else copy.deepcopy(vb)
        category, note = classify(scope, path, source, target, kind)
        out.append(
            PlanChange(
                path=(*prefix, *path),
                category=category,
                kind=kind,
                source=source,
                target=target,
                source_path=None if va is _MISSING else where_a(path),
                target_path=None if vb is _MISSING else where_b(path),
                note=note,
                input_channels=category is Category.IO and note in _CHANNEL_COUNT_NOTES,
            )
        )
    return out


def _resolve(plans: PlansFile, name: str, notes: list[str]) -> ResolvedConfiguration:
    """Resolve like nnU-Net; an old-format class nnU-Net cannot convert is compared under its written name."""
    try:
        return resolve_configuration(plans, name)
    except ConfigurationNotFound:
        raise
    except PlansError:
        configs = plans.data["configurations"]
        unconvertible = {
            n
            for n, c in configs.items()
            if "architecture" not in c and isinstance(c.get("UNet_class_name"), str)
            and c["UNet_class_name"] not in _LEGACY_CLASS_PATHS
        }
        if not unconvertible:
            raise
        patched = PlansFile(
            data={
                **plans.data,
                "configurations": {
                    n: ({**c, "UNet_class_name": "PlainConvUNet"} if n in unconvertible else c)
                    for n, c in configs.items()
                },
            },
            path=plans.path,
        )
        resolved = resolve_configuration(patched, name)
        owner = next((n for n in resolved.chain if "UNet_class_name" in configs[n]), None)
        if owner not in unconvertible:
            return resolved
        class_name = configs[owner]["UNet_class_name"]
        data = copy.deepcopy(resolved.data)
        data["architecture"]["network_class_name"] = class_name
        notes.append(
            f"{plans.label} [{name}]: old-format UNet_class_name '{class_name}' is not a class nnU-Net converts "
            "(only PlainConvUNet and ResidualEncoderUNet); compared as written"
        )
        return replace(resolved, data=data)


def _dataset_json(given: DatasetInput | None, plans: PlansFile) -> DatasetJson | None:
    if given is not None:
        return load_dataset_json(given)
    found = find_dataset_json(plans.path)
    return None if found is None else load_dataset_json(found)


def _io_view(dataset: DatasetJson) -> dict[str, Json]:
    view = {"channel_names": dataset.data.get(dataset.channel_key), "labels": dataset.data.get("labels")}
    if "regions_class_order" in dataset.data:
        view["regions_class_order"] = dataset.data["regions_class_order"]
    return view


def _dataset_where(dataset: DatasetJson) -> t.Callable[[FieldPath], FieldPath]:
    def where(path: FieldPath) -> FieldPath:
        if path and path[0] == "channel_names":
            path = (dataset.channel_key, *path[1:])
        return (DATASET_JSON, *path)

    return where


def _pairs(
    a: PlansFile, b: PlansFile, configurations: t.Sequence[str] | None, target: str | None, notes: list[str]
) -> tuple[tuple[str, str], ...]:
    if configurations is None:
        if target is not None:
            raise UsageError("a target configuration needs exactly one configuration to compare it with (-c NAME)")
        shared = [c for c in a.configurations if c in b.configurations]
        only_a = [c for c in a.configurations if c not in b.configurations]
        only_b = [c for c in b.configurations if c not in a.configurations]
        if only_a:
            notes.append(f"only in A, not compared: {', '.join(only_a)}")
        if only_b:
            notes.append(f"only in B, not compared: {', '.join(only_b)}")
        if not shared:
            notes.append(
                "no configuration in common: only plan-wide fields were compared "
                "(compare two by name with -c NAME --target-configuration NAME)"
            )
        return tuple((c, c) for c in shared)
    names = tuple(dict.fromkeys(configurations))  # a name given twice is compared once
    if not names:
        raise UsageError("no configuration to compare")
    if target is not None and len(names) != 1:
        raise UsageError(
            f"a target configuration needs exactly one configuration, got {len(names)}: {', '.join(names)}"
        )
    return tuple((name, target if target is not None else name) for name in names)


def diff(
    plans_a: PlansInput,
    plans_b: PlansInput,
    configurations: str | t.Sequence[str] | None = None,
    *,
    target_configuration: str | None = None,
    dataset_json_a: DatasetInput | None = None,
    dataset_json_b: DatasetInput | None = None,
) -> PlansDiff:
    """Compare plans A with plans B (paths, dicts or :class:`~plancheck.inputs.plans.PlansFile`).

    ``configurations`` names the configurations to compare; ``None`` (the default)
    compares every configuration both files have. ``target_configuration`` compares one
    configuration of A with another of B (``3d_fullres_bs4`` with ``3d_fullres``). A
    dataset.json is read when given, or when one sits next to a plans file; its channels,
    labels and regions are compared when both sides have one.
    """
    pa, pb = load_plans(plans_a), load_plans(plans_b)
    notes: list[str] = []
    if isinstance(configurations, str):
        configurations = (configurations,)
    pairs = _pairs(pa, pb, configurations, target_configuration, notes)

    changes: list[PlanChange] = []
    architectures: list[tuple[Json, Json]] = []
    top_a = {k: v for k, v in pa.data.items() if k != "configurations"}
    top_b = {k: v for k, v in pb.data.items() if k != "configurations"}
    changes += _changes("plans", top_a, top_b, (), lambda p: p, lambda p: p)

    cascade = False  # a compared configuration takes the previous stage's foreground labels as inputs
    for name_a, name_b in pairs:
        ra, rb = _resolve(pa, name_a, notes), _resolve(pb, name_b, notes)
        architectures.append((ra.data.get("architecture"), rb.data.get("architecture")))
        cascade = cascade or ra.data.get("previous_stage") is not None or rb.data.get("previous_stage") is not None
        changes += _changes(
            "configuration",
            ra.data,
            rb.data,
            ("configurations", name_a),
            lambda p, ra=ra: locate(pa, ra, p),
            lambda p, rb=rb: locate(pb, rb, p),
        )

    da, db = _dataset_json(dataset_json_a, pa), _dataset_json(dataset_json_b, pb)
    if da is not None and db is not None:
        labels_feed_inputs = cascade and _foreground_count(da) != _foreground_count(db)
        changes += [
            replace(c, input_channels=True, note=f"{c.note}; {_CASCADE_NOTE}" if c.note else _CASCADE_NOTE)
            if c.path[1:2] != ("channel_names",) and labels_feed_inputs else c
            for c in _changes("dataset.json", _io_view(da), _io_view(db), (DATASET_JSON,), _dataset_where(da),
                              _dataset_where(db))
        ]
    elif da is None and db is None:
        notes.append("no dataset.json for A or B: channels and labels not compared")
    else:
        side = "A" if da is not None else "B"
        notes.append(f"dataset.json only for {side}: channels and labels not compared")
    return PlansDiff(a=pa.label, b=pb.label, configurations=pairs, changes=tuple(changes), notes=tuple(notes),
                     architectures=tuple(architectures))


# --- warnings for `plancheck check` ---------------------------------------------------------------------------------

_HUMAN = {
    "spacing": "target spacing",
    "normalization_schemes": "normalisation scheme",
    "use_mask_for_norm": "use_mask_for_norm",
    "foreground_intensity_properties_per_channel": "foreground intensity statistics",
    "transpose_forward": "axis order (transpose_forward)",
    "transpose_backward": "axis order (transpose_backward)",
    "image_reader_writer": "image reader",
    "preprocessor_name": "preprocessor",
    "resampling_fn_data": "image resampling",
    "resampling_fn_data_kwargs": "image resampling",
    "resampling_fn_seg": "label resampling",
    "resampling_fn_seg_kwargs": "label resampling",
    "resampling_fn_probabilities": "probability resampling",
    "resampling_fn_probabilities_kwargs": "probability resampling",
    "previous_stage": "previous cascade stage",
}


def _rounded(value: Json) -> Json:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def short_value(value: Json, width: int = 60) -> str:
    """A value for a table cell: strings whole, numbers to 6 significant digits, long lists compacted."""
    if isinstance(value, str):
        return value
    value = _rounded(value)
    text = json.dumps(value, separators=(", ", ": "))
    if len(text) > width:
        text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(change: PlanChange, side: str) -> str:
    if (side == "A" and change.kind == ChangeKind.ADDED) or (side == "B" and change.kind == ChangeKind.REMOVED):
        return "absent"
    return short_value(change.source if side == "A" else change.target)


def display_path(change: PlanChange, *, sep: str = " ") -> str:
    """The path as it stands in the files: A's, with B's after it when B's differs."""
    a = None if change.source_path is None else format_path(change.source_path)
    b = None if change.target_path is None else format_path(change.target_path)
    if a is not None and b is not None and a != b:
        text = f"{a}{sep}(B: {b})"
    else:
        text = a or b or format_path(change.path)
    compared = change.path[1] if len(change.path) >= 2 and change.path[0] == "configurations" else None
    written = change.source_path or change.target_path
    if compared is not None and written is not None and written[:2] != ("configurations", compared):
        text += f"{sep}(inherited by {compared})"
    return text


def preprocessing_warnings(
    result: PlansDiff,
    *,
    names: tuple[str, str] = ("A", "B"),
    schemes: tuple[t.Sequence[str] | None, t.Sequence[str] | None] | None = None,
) -> list[str]:
    """One short sentence per ``preprocessing`` difference (``plancheck check`` lists them as warnings).

    Per-channel intensity statistics are summarised in one sentence per channel: they
    matter together (CT clipping and scaling), and seven lines for one channel hide the rest.
    ``schemes`` (each side's ``normalization_schemes``) words that sentence from the scheme
    each side really uses, and drops it when neither reads the statistics (ZScoreNormalization).
    """
    out: list[t.Any] = []
    statistics: dict[tuple, list[PlanChange]] = {}
    for change in result.changes:
        if change.category is not Category.PREPROCESSING:
            continue
        inner = change.path[2:] if change.path[:1] == ("configurations",) else change.path
        field = next((str(p) for p in inner if isinstance(p, str)), "")
        if field == "foreground_intensity_properties_per_channel" and len(change.path) >= 2:
            group = change.path[:2]
            if group not in statistics:
                statistics[group] = []
                out.append(group)  # placeholder keeps the order of first appearance
            statistics[group].append(change)
            continue
        what = _HUMAN.get(field, format_path(inner) or "field")
        where = display_path(change)
        sentence = f"{what} differs ({where}): {_shown(change, 'A')} in {names[0]}, {_shown(change, 'B')} in {names[1]}"
        if change.note:
            sentence += f"; {change.note}"
        out.append(sentence)
    for index, item in enumerate(out):
        if isinstance(item, tuple):
            out[index] = _statistics_sentence(item, statistics[item], names, schemes)
    return [w for w in out if w]


def _scheme_of(schemes: t.Sequence[str] | None, channel: Json) -> tuple[str | None, frozenset[str] | None]:
    """(scheme name, the statistics it reads) of one channel; (None, frozenset()) where there is no such channel."""
    from plancheck.network.normalization import statistics_read

    try:
        index = int(channel)
    except (TypeError, ValueError):
        return None, None
    if schemes is None or not 0 <= index < len(schemes):
        return None, frozenset()
    return str(schemes[index]), statistics_read(str(schemes[index]))


def _reads(name: str | None, read: frozenset[str] | None) -> str:
    if read is None:
        return f"{name}, which is not one of nnU-Net's schemes (plancheck cannot tell whether it reads them)"
    if not read:
        return f"{name}, which reads none of them"
    return f"{name}, which reads {', '.join(sorted(read))}"


def _statistics_sentence(
    group: tuple, changes: list[PlanChange], names: tuple[str, str],
    schemes: tuple[t.Sequence[str] | None, t.Sequence[str] | None] | None,
) -> str | None:
    """The sentence for one channel's statistics, worded from each side's scheme (None: nothing to say)."""
    channel = group[1]
    head = f"foreground intensity statistics of channel {channel}"
    if schemes is None:
        shown = ", ".join(f"{c.path[-1]} {_shown(c, 'A')} vs {_shown(c, 'B')}" for c in changes)
        return (f"{head} differ ({format_path(group)}; {names[0]} vs {names[1]}: {shown}): "
                "a normalisation scheme that reads them (CTNormalization) clips and scales with these")
    (name_a, read_a), (name_b, read_b) = _scheme_of(schemes[0], channel), _scheme_of(schemes[1], channel)
    if read_a is not None and read_b is not None and not read_a and not read_b:
        return None  # ZScoreNormalization and the like: the statistics are never read
    relevant = None if read_a is None or read_b is None else read_a | read_b
    changes = [c for c in changes if len(c.path) == 2 or relevant is None or c.path[-1] in relevant]
    if not changes:
        return None
    if any(len(c.path) == 2 for c in changes):  # the whole channel's statistics on one side only
        shown = f"{_shown(changes[0], 'A')} in {names[0]}, {_shown(changes[0], 'B')} in {names[1]}"
    else:
        shown = f"{names[0]} vs {names[1]}: " + ", ".join(
            f"{c.path[-1]} {_shown(c, 'A')} vs {_shown(c, 'B')}" for c in changes)
    if name_a is not None and name_a == name_b:
        how = f"{names[0]} and {names[1]} normalise it with {_reads(name_a, read_a)}"
    else:
        sides = [f"{names[0]} has no channel {channel}" if name_a is None else
                 f"{names[0]} normalises it with {_reads(name_a, read_a)}",
                 f"{names[1]} has no channel {channel}" if name_b is None else
                 f"{names[1]} with {_reads(name_b, read_b)}"]
        how = "; ".join(sides)
    return f"{head} differ ({format_path(group)}; {shown}): {how}"
