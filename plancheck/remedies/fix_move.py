"""``--fix --strategy move``: nnU-Net's ``nnUNetv2_move_plans_between_datasets``, reproduced.

The source's whole plans, renamed for the target dataset, with their own preprocessing; what
that changes in the target's preprocessing is said, never done silently.
"""

from __future__ import annotations

import contextlib
import copy
import typing as t

from plancheck._nnunet import captured_warnings, quiet
from plancheck.errors import FixError, PlancheckError
from plancheck.inputs.plans import PlansFile, resolve_configuration
from plancheck.network.spec import Side
from plancheck.remedies.commands import plans_identifier

__all__ = ["fix_move", "move_plans"]

Json = t.Any


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


def fix_move(source: Side, target: Side, plans_name: str) -> tuple[dict[str, Json], list[str], list[str]]:
    warnings: list[str] = []
    notes: list[str] = []
    target_dataset = target.plans.dataset_name
    if not target_dataset:
        raise FixError("the target plans name no dataset_name: cannot move plans to it", path=target.label)
    rw, how = _reader_writer(target)
    notes.append(f"image_reader_writer {rw}: {how}")
    source_identifier = plans_identifier(source)
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

