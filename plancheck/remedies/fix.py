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
import os
import re
import typing as t
from dataclasses import replace

from plancheck._nnunet import captured_warnings, quiet
from plancheck.atomic import atomic_write_text
from plancheck.remedies.commands import device_note, plans_identifier, trainer_note
from plancheck.errors import FixError, InputError, OutputExists, PlancheckError, Unfixable, UsageError
from plancheck.network.planner import (
    PatchDecision,
    choose_patch_size,
    stride_divisor,
)
from plancheck.inputs.plans import PlansFile, resolve_configuration
from plancheck.options import FixStrategy as Strategy
from plancheck.records.fix import FixResult, plans_json
from plancheck.network.spec import Side, prepare_side
from plancheck.remedies.fix_architecture import fix_architecture
from plancheck.remedies.fix_move import fix_move, move_plans

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
    target_identifier = plans_identifier(target)
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
                target_identifier, source.plans.dataset_name or plans_identifier(source)
            )
    if not _PLANS_NAME.match(plans_name):
        raise UsageError(f"invalid plans name {plans_name!r}: use letters, digits, '_', '-', '.', '+'")
    path = _output_path(target, plans_name, out_text)
    warnings: list[str] = []
    notes: list[str] = []
    patch: PatchDecision | None = None
    if strategy is Strategy.ARCHITECTURE:
        new_plans, patch, w, n = fix_architecture(source, target, plans_name)
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
        new_plans, w, n = fix_move(source, target, plans_name)
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
            "exists; not overwritten (pass `force` to replace it, or choose another `plans_name` / `out`)",
            path=result.path,
        ) from None
    except OSError as e:  # a missing or read-only folder: input that cannot be acted on (exit 3), nothing written
        raise InputError(f"cannot write the fixed plans: {e.strerror or e}", path=result.path) from e
