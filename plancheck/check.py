"""The check pipeline: load, normalise, build, compare, (attribute), report.

``check(source, target)`` answers whether nnU-Net's ``load_pretrained_weights`` would
load weights trained with the source plans into the network the target plans describe.
"""

from __future__ import annotations

import os
import typing as t

from plancheck.build import network_shapes
from plancheck.compare import compare, first_failure
from plancheck.plans import DatasetJson, PlansFile, find_dataset_json, load_dataset_json, load_plans
from plancheck.report import Report, SideSummary, summarise
from plancheck.shapes import ShapeTable
from plancheck.spec import Side, prepare_side

__all__ = ["DEFAULT_CONFIGURATION", "check", "load_side", "report_for"]

DEFAULT_CONFIGURATION = "3d_fullres"
Json = t.Any
PlansInput = t.Union[str, "os.PathLike[str]", dict, PlansFile]
DatasetInput = t.Union[str, "os.PathLike[str]", dict, DatasetJson, None]


def load_side(
    role: str,
    plans: PlansInput,
    configuration: str,
    dataset_json: DatasetInput = None,
    *,
    allow: t.Iterable[str] = (),
) -> Side:
    """Load one side: the plans, its dataset.json (given, or the one next to the plans), nnU-Net's view."""
    plans_file = load_plans(plans)
    if dataset_json is None:
        dataset_json = find_dataset_json(plans_file.path)
    dj = None if dataset_json is None else load_dataset_json(dataset_json)
    return prepare_side(role, plans_file, configuration, dj, allow=allow)


def side_summary(side: Side, *, kind: str = "plans", notes: t.Iterable[str] = ()) -> SideSummary:
    return SideSummary(
        role=side.role,
        plans=side.label,
        configuration=side.configuration.name,
        dataset_json=None if side.dataset_json is None else side.dataset_json.label,
        network_class=side.spec.class_name,
        input_channels=side.spec.input_channels,
        input_channels_from=side.input_channels_from,
        segmentation_heads=side.spec.output_channels if side.heads_known else None,
        kind=kind,
        notes=(*side.notes, *notes),
    )


def report_for(
    source: SideSummary,
    target: SideSummary,
    source_shapes: ShapeTable,
    target_shapes: ShapeTable,
    *,
    notes: t.Iterable[str] = (),
) -> Report:
    """Compare two shape tables and assemble the report (without attribution)."""
    rows = compare(source_shapes, target_shapes)
    failure = first_failure(source_shapes, target_shapes)
    return Report(
        compatible=failure is None,
        source=source,
        target=target,
        first_failure=failure,
        tensors=rows,
        summary=summarise(rows),
        notes=tuple(notes),
    )


def check(
    source: PlansInput,
    target: PlansInput,
    configuration: str = DEFAULT_CONFIGURATION,
    target_configuration: str | None = None,
    source_dataset_json: DatasetInput = None,
    target_dataset_json: DatasetInput = None,
    *,
    allow_import: t.Iterable[str] = (),
) -> Report:
    """Check whether weights trained with ``source`` plans load into the ``target`` plans' network.

    Plans and dataset.json files are accepted as paths or as already-loaded dicts. Each
    side's dataset.json defaults to the ``dataset.json`` next to its plans file.
    """
    allow = tuple(allow_import)
    src = load_side("source", source, configuration, source_dataset_json, allow=allow)
    tgt = load_side("target", target, target_configuration or configuration, target_dataset_json, allow=allow)
    source_shapes = network_shapes(src.spec, source=src.label)
    target_shapes = network_shapes(tgt.spec, source=tgt.label)
    return report_for(side_summary(src), side_summary(tgt), source_shapes, target_shapes)
