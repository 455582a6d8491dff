"""The check pipeline: load, normalise, build, compare, (attribute), report.

``check(source, target)`` answers whether nnU-Net's ``load_pretrained_weights`` would
load the source's weights into the network the target plans describe. The source is
plans (a network is built from them) or actual weights: a checkpoint, a trained-model
folder, a bare state_dict or a safetensors file (:mod:`plancheck.inputs.sources`), whose tensors
are compared as they are. Imports no torch until a network is built.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t

from plancheck.compare.attribution import attribute
from plancheck.network.build import network_shapes
from plancheck.compare.loading import compare, first_failure
from plancheck.compare.aliases import AliasConflict, alias_conflicts
from plancheck.errors import UnknownOption, UsageError
from plancheck.inputs.plans import DatasetJson, PlansFile, find_dataset_json, load_dataset_json, load_plans
from plancheck.records.report import Cause, Report, RootCause, SideSummary, Status, summarise
from plancheck.inputs.shapes import ShapeTable, is_head
from plancheck.inputs.sources import DEFAULT_PLANS_IDENTIFIER, SourceInput, resolve_source, resolve_target
from plancheck.network.spec import Side, prepare_side
from plancheck.compare.warnings import (
    channel_pairs,
    channel_warning,
    checkpoint_notes,
    loader_warnings,
    preprocessing_warnings,
)
from plancheck.inputs.prefixes import KEY_PREFIXES, checkpoint_shapes, key_prefix, raw_keys, strip_key, strip_prefixes

if t.TYPE_CHECKING:
    from plancheck.inputs.checkpoint import Checkpoint
    from plancheck.network.trainers import TrainerRef

__all__ = [
    "DEFAULT_CONFIGURATION",
    "KEY_PREFIXES",
    "CheckResult",
    "PreparedSource",
    "check",
    "check_target",
    "checkpoint_shapes",
    "load_side",
    "prepare_source",
    "report_for",
    "split_options",
]

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


def side_summary(
    side: Side, *, kind: str = "plans", notes: t.Iterable[str] = (), details: dict[str, Json] | None = None
) -> SideSummary:
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
        details=dict(details or {}),
    )


def report_for(
    source: SideSummary,
    target: SideSummary,
    source_shapes: ShapeTable,
    target_shapes: ShapeTable,
    *,
    sides: tuple[Side, Side] | None = None,
    warnings: t.Iterable[str] = (),
    notes: t.Iterable[str] = (),
    weights_configuration: str | None = None,
) -> Report:
    """Compare two shape tables and assemble the report; attribute failures when ``sides`` are given.

    ``weights_configuration``: the configuration a checkpoint was trained as, when known.
    """
    rows = compare(source_shapes, target_shapes)
    failure = first_failure(source_shapes, target_shapes)
    root_causes: tuple = ()
    if sides is not None:
        rows, root_causes = attribute(sides[0], sides[1], source_shapes, target_shapes, rows,
                                      weights_configuration=weights_configuration)
    return Report(
        compatible=failure is None,
        source=source,
        target=target,
        first_failure=failure,
        tensors=rows,
        summary=summarise(rows),
        root_causes=root_causes,
        warnings=tuple(warnings),
        notes=tuple(notes),
    )


#: Keyword options of :func:`check` that shape the source, and those that shape each target
#: (some do both). :func:`split_options` sorts them for callers that check one source many times.
SOURCE_OPTIONS = frozenset({
    "allow_import", "fold", "trainer", "plans_identifier", "source_plans", "source_dataset_json",
    "trust_checkpoint", "ignore_trainer",
})
TARGET_OPTIONS = frozenset({
    "allow_import", "plans_identifier", "target_plans_identifier", "target_dataset_json", "target_trainer",
    "ignore_trainer", "explain",
})


@dataclasses.dataclass(frozen=True)
class PreparedSource:
    """A source resolved once: its side (plans, spec), the shapes compared, and what was found on the way."""

    input: SourceInput
    side: Side
    summary: SideSummary
    shapes: ShapeTable  #: what is compared: the checkpoint's tensors, or the network built from the plans
    trainer_name: str | None  #: the source's trainer, the default for the target's
    trainer_by: str
    prefix: str | None = None  #: DDP/torch.compile key prefix most checkpoint keys carry
    unprefixed: ShapeTable | None = None
    warnings: tuple[str, ...] = ()
    #: alias keys of one tensor whose values disagree (plancheck.compare.aliases): nnU-Net keeps each group's last
    alias_conflicts: tuple[AliasConflict, ...] = ()
    notes: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    ignore_trainer: bool = False

    @property
    def alias_kept(self) -> dict[str, str]:
        """Each key of a disagreeing alias group -> the key whose value nnU-Net loads."""
        return {key: c.kept for c in self.alias_conflicts for key in c.keys}

    def fix_options(self, target_trainer: str | None = None) -> dict[str, Json]:
        """Keyword arguments of :func:`plancheck.remedies.fix.plan_fix` that this source determines (and the
        fine-tuning trainer the check assumed: ``target_trainer``, else the source's)."""
        ckpt = self.input.checkpoint
        return {
            "source_key_prefix": self.prefix,
            "fold": self.input.fold,
            "checkpoint": None if ckpt is None else ckpt.path,
            "allow_import": self.allow,
            "trainer": target_trainer or self.trainer_name,
            "trainer_by": "--target-trainer" if target_trainer else (self.trainer_by or None),
        }


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One target checked against a prepared source."""

    report: Report
    target: Side


def check_options() -> frozenset[str]:
    """The keyword options of :func:`check` (everything after ``source`` and ``target``)."""
    import inspect

    return frozenset(
        name for name, p in inspect.signature(check).parameters.items()
        if name not in ("source", "target") and p.kind is not inspect.Parameter.VAR_KEYWORD
    )


def split_options(options: t.Mapping[str, Json]) -> tuple[dict[str, Json], dict[str, Json]]:
    """(source options, target options) of :func:`check`'s keyword options; unknown ones are refused."""
    unknown = sorted(set(options) - SOURCE_OPTIONS - TARGET_OPTIONS)
    if unknown:
        valid = ", ".join(sorted(SOURCE_OPTIONS | TARGET_OPTIONS))
        raise UsageError(f"unknown option(s) {', '.join(unknown)}; valid: {valid}")
    return ({k: v for k, v in options.items() if k in SOURCE_OPTIONS},
            {k: v for k, v in options.items() if k in TARGET_OPTIONS})


def prepare_source(
    source: PlansInput,
    *,
    configuration: str | None = None,
    source_dataset_json: DatasetInput = None,
    allow_import: t.Iterable[str] = (),
    fold: int | str | None = None,
    trainer: str | None = None,
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
    source_plans: PlansInput | None = None,
    trust_checkpoint: bool = False,
    ignore_trainer: bool = False,
) -> PreparedSource:
    """Resolve, read and build the source once (see :func:`check` for the options)."""
    allow = tuple(allow_import)
    src_in = resolve_source(
        source,
        configuration=configuration,
        fold=fold,
        trainer=trainer,
        plans_identifier=plans_identifier,
        source_plans=source_plans,
        source_dataset_json=source_dataset_json,
        trust_checkpoint=trust_checkpoint,
    )
    trainers = _Trainers(allow, ignore_trainer)
    name, by = (trainer, "--trainer") if trainer else (src_in.trainer, src_in.trainer_from)
    ref = trainers.get(name, by)
    notes = list(trainers.notes)
    if trainer and src_in.trainer and trainer != src_in.trainer:
        notes.append(f"built with --trainer {trainer}; the weights come from {src_in.trainer} ({src_in.trainer_from})")
    side = prepare_side("source", src_in.plans, src_in.configuration, src_in.dataset_json, allow=allow, trainer=ref)
    details = dict(src_in.details)
    if src_in.checkpoint is not None or name:
        details["network_built_by"] = _built_by(ref)
    summary = side_summary(side, kind=src_in.kind, notes=src_in.notes, details=details)
    common = dict(input=src_in, side=side, summary=summary, trainer_name=name, trainer_by=by, allow=allow,
                  ignore_trainer=ignore_trainer)
    if src_in.checkpoint is None:
        return PreparedSource(shapes=network_shapes(side.spec, source=side.label, layout=True),
                              warnings=src_in.warnings,
                              notes=tuple(notes), **common)

    weights = checkpoint_shapes(src_in.checkpoint)
    prefix = key_prefix(weights)
    unprefixed = strip_prefixes(weights) if prefix else weights
    own_network = network_shapes(side.spec, source=side.label, layout=True)
    mismatch = _own_plans_mismatch(src_in, side, ref, unprefixed, own_network)
    if mismatch is None:
        notes.append(f"the checkpoint's tensors match the network built from {_own_plans(src_in)}")
    notes.extend(checkpoint_notes(src_in.checkpoint))
    conflicts = alias_conflicts(src_in.checkpoint, own_network, raw_keys(src_in.checkpoint, prefix))
    warnings = (*([mismatch] if mismatch else []), *(c.message() for c in conflicts), *loader_warnings(src_in),
                *src_in.warnings)
    return PreparedSource(shapes=weights, prefix=prefix, unprefixed=unprefixed, warnings=warnings,
                          notes=tuple(notes), alias_conflicts=conflicts, **common)


def check_target(
    prepared: PreparedSource,
    target: PlansInput,
    *,
    target_configuration: str | None = None,
    target_dataset_json: DatasetInput = None,
    target_trainer: str | None = None,
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
    target_plans_identifier: str | None = None,
    allow_import: t.Iterable[str] | None = None,
    ignore_trainer: bool | None = None,
    explain: bool = True,
) -> CheckResult:
    """Check one target against a prepared source (see :func:`check`); ``explain=False`` skips attribution."""
    allow = prepared.allow if allow_import is None else tuple(allow_import)
    tgt_in = resolve_target(target, plans_identifier=target_plans_identifier or plans_identifier,
                            target_dataset_json=target_dataset_json)
    trainers = _Trainers(allow, prepared.ignore_trainer if ignore_trainer is None else ignore_trainer)
    name, by = (target_trainer, "--target-trainer") if target_trainer else (prepared.trainer_name, prepared.trainer_by)
    ref = trainers.get(name, by)
    src = prepared.side
    tgt = prepare_side("target", tgt_in.plans, target_configuration or src.configuration.name, tgt_in.dataset_json,
                       allow=allow, trainer=ref)
    details = dict(tgt_in.details)
    if name:
        details["network_built_by"] = _built_by(ref)
    tgt_summary = side_summary(tgt, kind=tgt_in.kind, notes=tgt_in.notes, details=details)
    target_shapes = network_shapes(tgt.spec, source=tgt.label, layout=True)  # the layout for pictures, same build
    channels = channel_pairs(src, tgt)
    first = channel_warning(channels)
    warnings = [*([first] if first else []), *prepared.warnings, *preprocessing_warnings(src, tgt)]
    notes = [*prepared.notes, *(n for n in trainers.notes if n not in prepared.notes)]
    sides = (src, tgt) if explain and prepared.prefix is None else None
    own = prepared.input.details.get("configuration") if prepared.input.checkpoint is not None else None
    report = report_for(prepared.summary, tgt_summary, prepared.shapes, target_shapes, sides=sides,
                        warnings=warnings, notes=notes, weights_configuration=own if isinstance(own, str) else None)
    report = dataclasses.replace(report, channels=channels)
    if prepared.prefix is not None:
        assert prepared.unprefixed is not None
        report = _with_prefix_cause(report, prepared.prefix, prepared.shapes, prepared.unprefixed, target_shapes)
    ckpt = prepared.input.checkpoint
    if ckpt is not None and (ckpt.format == "safetensors" or ckpt.container_key != "network_weights"):
        report = _with_container_failure(report, ckpt)
    from plancheck.network.build import check_layout

    report = dataclasses.replace(report, layout=check_layout(src, tgt))
    if prepared.input.nnssl is not None:
        report = _with_pretrained_trainer(report, prepared, tgt, target_shapes)
    return CheckResult(report=report, target=tgt)


def _with_pretrained_trainer(report: Report, prepared: PreparedSource, tgt: Side, target_shapes: ShapeTable) -> Report:
    """nnssl sources: add what nnU-Net master's PretrainedTrainer would load (encoder and stem only)."""
    from plancheck.network.build import build_meta_network
    from plancheck.inputs.nnssl import pretrained_trainer_verdict

    plan = prepared.input.nnssl
    assert plan is not None
    network = build_meta_network(tgt.spec, source=tgt.label)
    patch = tgt.configuration.data.get("patch_size") or []
    verdict = pretrained_trainer_verdict(
        plan,
        prepared.shapes.shapes,
        target_shapes.shapes,
        target_key_to_encoder=getattr(network, "key_to_encoder", None),
        target_key_to_stem=getattr(network, "key_to_stem", None),
        target_key_to_lpe=getattr(network, "key_to_lpe", None),
        target_input_channels=tgt.spec.input_channels,
        target_patch_size=tuple(patch),
    )
    return dataclasses.replace(report, pretrained_trainer=verdict)


def _with_container_failure(report: Report, ckpt: Checkpoint) -> Report:
    """nnU-Net's loader fails before it compares a key: the file is not ``{'network_weights': ...}``.

    The verdict follows nnU-Net (incompatible as the file stands); the tensor table still
    shows what would load once the file is re-saved, so the user sees both.
    """
    from plancheck.records.report import FirstFailure

    if ckpt.format == "safetensors":
        found = "a safetensors file, which torch.load cannot read"
    elif ckpt.container_key is None:
        found = "a bare state_dict without a 'network_weights' key"
    else:
        found = f"a state_dict under '{ckpt.container_key}', not under 'network_weights'"
    note = (
        f"load_pretrained_weights reads torch.load(file)['network_weights'] and stops at once on {found}; "
        "re-save the tensors as torch.save({'network_weights': state_dict}, path). "
        + ("After that, the weights would load." if report.compatible else "Even then, the tensors below do not fit.")
    )
    cause = RootCause(Cause("checkpoint container", ckpt.container_key or ckpt.format, "network_weights"),
                      0, 0, note)
    return dataclasses.replace(
        report,
        compatible=False,
        first_failure=FirstFailure(key="network_weights", reason="container", source_shape=None, target_shape=None),
        root_causes=(cause, *report.root_causes),
    )


def check(
    source: PlansInput,
    target: PlansInput,
    configuration: str | None = None,
    target_configuration: str | None = None,
    source_dataset_json: DatasetInput = None,
    target_dataset_json: DatasetInput = None,
    *,
    allow_import: t.Iterable[str] = (),
    fold: int | str | None = None,
    trainer: str | None = None,
    target_trainer: str | None = None,
    plans_identifier: str = DEFAULT_PLANS_IDENTIFIER,
    target_plans_identifier: str | None = None,
    source_plans: PlansInput | None = None,
    trust_checkpoint: bool = False,
    ignore_trainer: bool = False,
    explain: bool = True,
    **unknown: t.Any,
) -> Report:
    """Check whether the ``source``'s weights load into the network of the ``target`` plans.

    ``source``: a plans.json (path or dict), an nnU-Net checkpoint, a trained-model folder
    (``fold`` picks the fold; default the first with a checkpoint), a bare state_dict or
    safetensors file (with ``source_plans``), or a dataset ID resolved through
    ``nnUNet_results`` (with ``trainer``, ``plans_identifier`` and ``configuration``).
    ``target``: a plans.json (path or dict), a preprocessed dataset folder, or a dataset
    ID resolved through ``nnUNet_preprocessed`` (``plans_identifier`` names the plans, of both
    sides; ``target_plans_identifier``, when given, those of the target alone).

    ``configuration`` defaults to a checkpoint's own configuration, else ``3d_fullres``;
    ``target_configuration`` defaults to the source's. Each side's dataset.json defaults
    to the one embedded in the checkpoint or next to its plans file.

    Networks are built through ``trainer`` (default: the checkpoint's ``trainer_name``)
    when that trainer overrides ``build_network_architecture``; ``target_trainer``
    defaults to the source's trainer. A trainer that cannot be found or imported is an
    error unless ``ignore_trainer``, which builds from the plans alone. ``trust_checkpoint``
    reads checkpoints with ``torch.load(weights_only=False)`` (runs code from the file).
    ``explain=False`` skips the attribution of failures to plans fields (faster). Any other
    keyword is refused with :class:`UnknownOption` (a ``UsageError`` and a ``TypeError``)
    naming it and the valid options.
    """
    if unknown:
        names = ", ".join(sorted(check_options()))
        raise UnknownOption(f"unknown option {', '.join(repr(k) for k in sorted(unknown))}; valid options: {names}")
    prepared = prepare_source(
        source,
        configuration=configuration,
        source_dataset_json=source_dataset_json,
        allow_import=allow_import,
        fold=fold,
        trainer=trainer,
        plans_identifier=plans_identifier,
        source_plans=source_plans,
        trust_checkpoint=trust_checkpoint,
        ignore_trainer=ignore_trainer,
    )
    return check_target(
        prepared,
        target,
        target_configuration=target_configuration,
        target_dataset_json=target_dataset_json,
        target_trainer=target_trainer,
        plans_identifier=plans_identifier,
        target_plans_identifier=target_plans_identifier,
        explain=explain,
    ).report


# --------------------------------------------------------------------------- trainers


class _Trainers:
    """Resolve trainer names once per check; ``ignore`` turns a missing trainer into a note."""

    def __init__(self, allow: tuple[str, ...], ignore: bool) -> None:
        self.allow = allow
        self.ignore = ignore
        self.notes: list[str] = []
        self._cache: dict[str, TrainerRef | None] = {}

    def get(self, name: str | None, requested_by: str) -> TrainerRef | None:
        from plancheck.network.trainers import TrainerError, resolve_trainer

        if not name:
            return None
        if name not in self._cache:
            try:
                self._cache[name] = resolve_trainer(name, allow=self.allow, requested_by=requested_by)
            except TrainerError as e:
                if not self.ignore:
                    raise
                self._cache[name] = None
                reason = "not found" if " not found " in e.message else f"cannot be imported ({e.message})"
                self.notes.append(f"built from plans, trainer {name} {reason} (--ignore-trainer)")
            ref = self._cache[name]
            if ref is not None and ref.overrides_build:
                self.notes.append(f"network built by {ref.class_path}.build_network_architecture ({requested_by})")
        return self._cache[name]


def _built_by(ref: TrainerRef | None) -> str:
    if ref is None or not ref.overrides_build:
        return "get_network_from_plans" + (f" ({ref.name})" if ref is not None else "")
    return f"{ref.class_path}.build_network_architecture"


# --------------------------------------------------------------------------- checkpoints


def _own_plans(src_in: SourceInput) -> str:
    return {
        "init_args": f"its own plans (init_args.plans, {src_in.configuration})",
        "--source-plans": f"--source-plans ({src_in.configuration})",
        "model folder": f"the model folder's plans.json ({src_in.configuration})",
        "plancheck_transfer": f"the target plans its transfer record names ({src_in.configuration})",
    }.get(src_in.plans_from, f"its plans ({src_in.configuration})")


def _own_plans_mismatch(
    src_in: SourceInput, side: Side, ref: TrainerRef | None, weights: ShapeTable, network: ShapeTable
) -> str | None:
    """A warning when the checkpoint's tensors are not the network its plans describe, else None."""
    def counted(key: str) -> bool:
        return side.heads_known or not is_head(key)

    only_weights = [k for k in weights.shapes if k not in network and counted(k)]
    only_network = [k for k in network.shapes if k not in weights and counted(k)]
    shapes = [k for k in network.shapes if k in weights and counted(k) and weights.shapes[k] != network.shapes[k]]
    total = len(only_weights) + len(only_network) + len(shapes)
    if not total:
        return None
    from plancheck.inputs.shapes import format_shape

    if shapes:
        k = shapes[0]
        example = f"e.g. {k}: weights {format_shape(weights.shapes[k])}, network {format_shape(network.shapes[k])}"
    elif only_network:
        example = f"e.g. {only_network[0]} is not in the weights"
    else:
        example = f"e.g. {only_weights[0]} is not in the network"
    built = _built_by(ref)
    return (
        f"the checkpoint's tensors are not those of the network built from {_own_plans(src_in)} by {built}: "
        f"{total} keys differ ({len(shapes)} in shape, {len(only_network)} only in the network, "
        f"{len(only_weights)} only in the weights; {example}). Likely a custom trainer, edited plans, or weights "
        "from outside nnU-Net; the check uses the checkpoint's actual tensors"
    )


def _with_prefix_cause(
    report: Report, prefix: str, weights: ShapeTable, unprefixed: ShapeTable, target: ShapeTable
) -> Report:
    """Blame the failures on the key prefix, and say what stripping it would give."""
    counted = [k for k in target.shapes if not is_head(k)]
    would_match = sum(1 for k in counted if k in unprefixed and unprefixed.shapes[k] == target.shapes[k])
    after = first_failure(unprefixed, target)
    if after is None:
        outcome = "with the prefix stripped, nnU-Net would load these weights"
    else:
        why = "missing" if after.reason == "missing" else "shape differs"
        outcome = f"with the prefix stripped, it would still stop at {after.key} ({why})"
    explained = (
        f"nnU-Net's load_pretrained_weights does not strip '{prefix}' (added by DDP or torch.compile outside "
        f"nnU-Net); {would_match} of {len(counted)} target keys match once stripped"
    )
    cause = Cause(f"state_dict key prefix '{prefix}'", prefix, None)
    rows = []
    tensors = parameters = 0
    for row in report.tensors:
        if row.status in (Status.MISSING, Status.MISMATCH, Status.UNUSED):
            row = dataclasses.replace(row, causes=(cause,))
            if row.status is not Status.UNUSED:
                tensors += 1
                parameters += row.parameters
        rows.append(row)
    warning = f"{sum(1 for k in weights.shapes if strip_key(k)[1])} of {len(weights)} checkpoint keys start with " \
              f"'{prefix}': {explained}; {outcome}"
    return dataclasses.replace(
        report,
        tensors=tuple(rows),
        root_causes=(RootCause(cause, tensors, parameters, explained),),
        warnings=(warning, *report.warnings),
    )
