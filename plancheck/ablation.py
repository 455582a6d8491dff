"""``plancheck ablation``: the arms of a fine-tuning ablation against nnU-Net's standard baseline, prepared.

Every arm trains the same target dataset, configuration and folds, with a trainer of the same
length; each has its own plans identifier or trainer, so that nnU-Net gives each its own results
folder (``TRAINER__PLANS__CONFIGURATION``). The plans of an arm that only adds weights are a copy of
the plans it shares with another arm, under a new identifier with the same ``data_identifier``,
so no data is preprocessed twice.

===================== ================================ ========================================
arm                    plans                            weights
===================== ================================ ========================================
baseline               the target's own                 none (nnU-Net's standard result)
unified                ``check --fix``'s                none
unified_pretrained     a copy of ``--fix``'s            SOURCE (``-pretrained_weights``)
transfer               a copy of the target's own       ``plancheck transfer``'s file
transfer_schedule      ``transfer --schedule``'s         the same file, plancheck's fine-tuning trainer
===================== ================================ ========================================

Every destination is checked before the first file is written; everything written is read back.
The manifest (``ablation.json``) is what ``plancheck compare --manifest`` reads; the script
(``ablation.sh``) runs the commands.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import typing as t

from plancheck.errors import InputError, OutputExists, PlancheckError, ReadBackError, Unfixable, UsageError
from plancheck.records.ablation import ARM_DESCRIPTIONS, Ablation, Arm

__all__ = ["ARMS", "Ablation", "ablation"]

Json = t.Any
ARMS = tuple(ARM_DESCRIPTIONS)
#: nnU-Net's default trainer length, and the naming habit of its variants (nnUNetTrainer_250epochs)
DEFAULT_EPOCHS = 1000
_EPOCHS = re.compile(r"_(\d+)epochs$")


def trainer_epochs(trainer: str) -> int | None:
    """The epochs a trainer's name says (nnU-Net's habit); None when its name does not say."""
    if trainer == "nnUNetTrainer":
        return DEFAULT_EPOCHS
    m = _EPOCHS.search(trainer)
    return int(m.group(1)) if m else None


def _finetune_trainer(trainer: str, schedule_trainer: str | None) -> tuple[str | None, str | None]:
    """The fine-tuning trainer of the same length as ``trainer`` (or ``schedule_trainer``), or why there is none."""
    if schedule_trainer:
        return schedule_trainer, None
    from plancheck.finetune import TRAINERS

    epochs = trainer_epochs(trainer)
    for name, (n, *_rest) in TRAINERS.items():
        if n == epochs and "AdamW" not in name:
            return name, None
    return None, (f"no fine-tuning trainer of the same length as {trainer} "
                  f"({'epochs unknown' if epochs is None else f'{epochs} epochs'}): plancheck's run 1000, 250 or "
                  "100 epochs; name a subclass of your own with `schedule_trainer`")


def _train(dataset: str | None, configuration: str, fold: str, plans: str, trainer: str,
           weights: str | None = None) -> str:
    from plancheck.inputs.datasets import command_id
    from plancheck.remedies.commands import DEFAULT_TRAINER

    parts = ["nnUNetv2_train", command_id(dataset), shlex.quote(configuration), shlex.quote(fold), "-p",
             shlex.quote(plans)]
    if trainer != DEFAULT_TRAINER:
        parts += ["-tr", shlex.quote(trainer)]
    if weights:
        parts += ["-pretrained_weights", shlex.quote(weights)]
    return " ".join(parts)


def _copy_plans(plans: dict[str, Json], name: str) -> dict[str, Json]:
    new = copy.deepcopy(plans)
    new["plans_name"] = name
    return new


def _write_plans_copy(path: str, new: dict[str, Json], original: dict[str, Json], *, force: bool) -> str:
    """A plans copy under a new name, read back: every field but ``plans_name`` as the original's."""
    from plancheck.atomic import atomic_write_text
    from plancheck.records.fix import plans_json

    def check(tmp: str) -> None:
        with open(tmp, encoding="utf-8") as fh:
            back = json.load(fh)
        if {k: v for k, v in back.items() if k != "plans_name"} != \
                {k: v for k, v in original.items() if k != "plans_name"}:
            raise ReadBackError("the plans copy read back differs from the plans it copies", path=path)

    try:
        return atomic_write_text(path, plans_json(new), overwrite=force, check=check)
    except FileExistsError:
        raise OutputExists("exists; not overwritten (pass `force` to replace it)", path=path) from None
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror or e}", path=path) from e


def ablation(
    source: t.Any,
    target: t.Any,
    out: str | os.PathLike[str],
    *,
    configuration: str | None = None,
    folds: t.Sequence[str | int] = (0, 1, 2, 3, 4),
    arms: t.Sequence[str] = ARMS,
    trainer: str = "nnUNetTrainer",
    schedule: str = "encoder",
    schedule_trainer: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    **options: t.Any,
) -> Ablation:
    """Prepare the ``arms`` (default: all five) of ``source``'s weights on ``target``; write into ``out``.

    ``source``: a checkpoint (or anything :func:`plancheck.transfer` takes); ``target``: anything
    ``check`` takes as a target, its plans file known. ``trainer``: every arm's trainer (the
    schedule arm's is the fine-tuning trainer of the same length, or ``schedule_trainer``).
    ``schedule``: ``encoder`` or ``carried``. Writes the plans next to the target's, the
    transferred weights, ``ablation.json`` and ``ablation.sh`` into ``out``; ``dry_run`` writes nothing.
    Other keyword options are those of :func:`plancheck.check`.
    """
    from plancheck.check import check_target, prepare_source, split_options
    from plancheck.remedies.commands import plans_identifier

    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise UsageError(f"`arms`: {', '.join(unknown) or 'none given'}; choose from {', '.join(ARMS)}")
    arms = [a for a in ARMS if a in arms or a == "baseline"]  # the baseline always: every arm is compared with it
    fold_names = [str(f) for f in folds]
    if not fold_names or len(set(fold_names)) != len(fold_names):
        raise UsageError(f"`folds`: distinct folds, at least one (got {', '.join(fold_names) or 'none'})")
    bad = [f for f in fold_names if not f.isdigit()]
    if bad:
        raise UsageError(f"`folds` {', '.join(bad)}: cross-validation folds are numbers (0-4 for nnU-Net's split); "
                         "'all' trains on every case, so its validation would be on training data")
    out_dir = os.path.abspath(os.fspath(out))
    if not os.path.isdir(out_dir):
        if dry_run or not os.path.isdir(os.path.dirname(out_dir)) or os.path.exists(out_dir):
            raise UsageError(f"`out` {out_dir}: not a folder (the manifest, the script and the weights go there)")
    target_configuration = options.pop("target_configuration", None)
    source_options, target_options = split_options(options)
    target_options.pop("explain", None)
    prepared = prepare_source(source, configuration=configuration, **source_options)
    checked = check_target(prepared, target, explain=False, target_configuration=target_configuration,
                           **target_options)
    if target_configuration is not None:
        options["target_configuration"] = target_configuration  # for transfer, which takes it too
    source_dataset = prepared.side.plans.dataset_name or "source"
    tgt = checked.target
    if not tgt.plans.path:
        raise UsageError("ablation needs the target's plans file (its folder is where -p finds the arms' plans)")
    folder = os.path.dirname(os.path.abspath(tgt.plans.path))
    dataset = tgt.plans.dataset_name
    conf = tgt.configuration.name
    own = plans_identifier(tgt)
    ckpt = prepared.input.checkpoint
    weights = None if ckpt is None or not ckpt.path else os.path.abspath(ckpt.path)
    epochs = trainer_epochs(trainer)
    made: dict[str, Arm] = {}
    writes: list[tuple[str, t.Callable[[], str]]] = []  # (path, write) in order; checked for existence first
    notes: list[str] = []

    def arm(name: str, plans: str, arm_trainer: str, *, plans_file: str, weights_file: str | None = None,
            prepare: t.Sequence[str] = (), arm_epochs: int | None = epochs, train: dict[str, str] | None = None
            ) -> Arm:
        return Arm(name, True, trainer=arm_trainer, plans=plans, plans_file=plans_file,
                   pretrained_weights=weights_file, results_folder=f"{dataset}/{arm_trainer}__{plans}__{conf}",
                   prepare=tuple(prepare), epochs=arm_epochs,
                   train=train or {f: _train(dataset, conf, f, plans, arm_trainer, weights_file) for f in fold_names})

    made["baseline"] = arm("baseline", own, trainer, plans_file=os.path.abspath(tgt.plans.path))
    # unified and unified_pretrained: --fix's plans (or the target's own, when they already load the weights)
    fixed_name: str | None = None
    fixed_plans: dict[str, Json] | None = None
    fix_prepare: tuple[str, ...] = ()
    if {"unified", "unified_pretrained"} & set(arms):
        if checked.report.compatible:
            fixed_name, fixed_plans = own, tgt.plans.data
            reason = "the target's own network already loads the weights: unified is the baseline"
            made["unified"] = Arm("unified", False, reason=reason)
        else:
            from plancheck.fix import read_back_check, recheck_options
            from plancheck.remedies.fix import plan_fix, write_fix

            try:
                planned = plan_fix(prepared.side, tgt, **prepared.fix_options(target_options.get("target_trainer")))
            except Unfixable as e:
                for name in ("unified", "unified_pretrained"):
                    made[name] = Arm(name, False, reason=f"plans cannot make the weights load: {e.message}")
            else:
                fixed_name, fixed_plans = planned.plans_name, planned.new_plans
                fix_prepare = tuple(c for c in planned.commands if c.startswith("nnUNetv2_preprocess "))
                assert planned.path is not None
                made["unified"] = arm("unified", fixed_name, trainer, plans_file=planned.path, prepare=fix_prepare)
                recheck = recheck_options(checked, planned.configuration, target_options)
                fix_check = read_back_check([(prepared, recheck)], planned.path)
                writes.append((planned.path, functools.partial(write_fix, planned, force=force, check=fix_check)))
    if "unified_pretrained" in arms and "unified_pretrained" not in made:
        if weights is None:
            made["unified_pretrained"] = Arm("unified_pretrained", False, reason="SOURCE holds no weights (plans only)")
        else:
            assert fixed_name is not None and fixed_plans is not None
            name = f"{fixed_name}_pretrained"
            path = os.path.join(folder, f"{name}.json")
            new, original = _copy_plans(fixed_plans, name), fixed_plans
            made["unified_pretrained"] = arm("unified_pretrained", name, trainer, plans_file=path,
                                             weights_file=weights, prepare=fix_prepare)
            writes.append((path, functools.partial(_write_plans_copy, path, new, original, force=force)))
    # transfer and transfer_schedule: one transferred file; the schedule's plans from transfer --schedule
    if {"transfer", "transfer_schedule"} & set(arms):
        _transfer_arms(made, writes, notes, arms, source, target, out_dir, configuration, options,
                       f"{own}_ablation_from_{source_dataset}", folder,
                       tgt, trainer, schedule, schedule_trainer, epochs, arm, fold_names, dataset, conf,
                       force=force)
    result_arms = tuple(made[a] for a in arms)
    manifest = os.path.join(out_dir, "ablation.json")
    script = os.path.join(out_dir, "ablation.sh")
    result = Ablation(source=prepared.input.label, target=tgt.plans.path, dataset=dataset, configuration=conf,
                      folds=tuple(fold_names), arms=result_arms, manifest=None if dry_run else manifest,
                      script=None if dry_run else script, dry_run=dry_run, notes=tuple(notes))
    if dry_run:
        return result
    writes.append((manifest, lambda: _write_text(manifest, json.dumps(result.manifest_dict(), indent=2) + "\n",
                                                force=force, check_json=True)))
    writes.append((script, lambda: _write_text(script, _script(result, manifest), force=force, mode=0o755)))
    if not force:
        for path, _ in writes:
            if os.path.lexists(path):
                raise OutputExists("exists; not overwritten (pass `force` to replace it); nothing was written",
                                   path=path)
    os.makedirs(out_dir, exist_ok=True)
    written = [write() for _, write in writes]
    import dataclasses

    return dataclasses.replace(result, written=tuple(written))


def _transfer_arms(made: dict[str, Arm], writes: list, notes: list[str], arms: t.Sequence[str], source: t.Any,
                   target: t.Any, out_dir: str, configuration: str | None, options: dict[str, t.Any], own: str,
                   folder: str, tgt: t.Any, trainer: str, schedule: str, schedule_trainer: str | None,
                   epochs: int | None, arm: t.Callable[..., Arm], fold_names: list[str], dataset: str | None,
                   conf: str, *, force: bool) -> None:
    from plancheck.transfer import transfer

    weights_file = os.path.join(out_dir, "transfer.pth")
    finetune, why = _finetune_trainer(trainer, schedule_trainer) if "transfer_schedule" in arms else (None, None)
    if why:
        made["transfer_schedule"] = Arm("transfer_schedule", False, reason=why)
    schedule_plans = f"{own}_finetune"
    kwargs: dict[str, t.Any] = dict(configuration=configuration, dry_run=True, **options)
    if finetune:
        kwargs.update(schedule=schedule, schedule_plans=schedule_plans, target_trainer=finetune)
    try:
        planned = transfer(source, target, weights_file, force=force, **kwargs)
    except PlancheckError as e:
        for name in ("transfer", "transfer_schedule"):
            if name in arms and name not in made:
                made[name] = Arm(name, False, reason=f"plancheck transfer refused: {e.message}")
        return
    if planned.plan.parameters_carried == 0:
        for name in ("transfer", "transfer_schedule"):
            if name in arms and name not in made:
                made[name] = Arm(name, False, reason="plancheck transfer carries no tensor of SOURCE over")
        return
    notes.append(f"transfer carries {planned.plan.share:.1%} of the target's parameters (heads excluded)")

    def write_transfer() -> str:
        done = transfer(source, target, weights_file, force=force, **{**kwargs, "dry_run": False})
        if not done.verified:  # pragma: no cover - transfer raises before it returns unverified
            raise ReadBackError("the transferred file was not verified", path=weights_file)
        return done.out or weights_file

    writes.append((weights_file, write_transfer))
    if "transfer" in arms:
        name = f"{own}_transfer"
        path = os.path.join(folder, f"{name}.json")
        made["transfer"] = arm("transfer", name, trainer, plans_file=path, weights_file=weights_file)
        new = _copy_plans(tgt.plans.data, name)
        writes.append((path, functools.partial(_write_plans_copy, path, new, tgt.plans.data, force=force)))
    if finetune and "transfer_schedule" in arms:
        from plancheck.finetune import request

        path = os.path.join(folder, f"{schedule_plans}.json")
        train = {f: request.command(dataset, conf, schedule_plans, finetune, weights_file, fold=f)[0]
                 for f in fold_names}
        made["transfer_schedule"] = arm("transfer_schedule", schedule_plans, finetune, plans_file=path,
                                        weights_file=weights_file, arm_epochs=trainer_epochs(finetune) or epochs,
                                        train=train)
        writes.append((path, functools.partial(os.path.abspath, path)))  # written by transfer --schedule, with
        # the weights (and read back there); listed here for the existence check before anything is written


def _write_text(path: str, text: str, *, force: bool, check_json: bool = False, mode: int | None = None) -> str:
    from plancheck.atomic import atomic_write_text

    def check(tmp: str) -> None:
        with open(tmp, encoding="utf-8") as fh:
            back = fh.read()
        if back != text or (check_json and not isinstance(json.loads(back), dict)):
            raise ReadBackError("the file read back differs from what was written", path=path)

    try:
        written = atomic_write_text(path, text, overwrite=force, check=check)
    except FileExistsError:
        raise OutputExists("exists; not overwritten (pass `force` to replace it)", path=path) from None
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror or e}", path=path) from e
    if mode is not None:
        os.chmod(written, mode)
    return written


def _script(result: Ablation, manifest: str) -> str:
    """``ablation.sh [ARM ...]``: the arms' commands (all arms by default); EXTRA is added to every nnUNetv2_train.

    A preprocessing command two arms share runs once per invocation.
    """
    made = [a for a in result.arms if a.made]
    names = " ".join(a.name for a in made)
    lines = ["#!/usr/bin/env bash",
             f"# written by plancheck ablation: {result.source} on {result.target} [{result.configuration}], "
             f"folds {' '.join(result.folds)}",
             "# usage: bash ablation.sh [ARM ...]   (default: every arm; EXTRA='-device cpu' is added to each "
             "nnUNetv2_train)",
             "# then:  plancheck compare --manifest " + shlex.quote(manifest),
             "set -euo pipefail", 'EXTRA="${EXTRA:-}"', "declare -A DONE=()",
             'once() { local key="$*"; if [ -z "${DONE[$key]:-}" ]; then "$@"; DONE[$key]=1; fi; }', "",
             "run_arm() {", '  case "$1" in']
    for a in made:
        lines.append(f"    {a.name})")
        lines += [f"      once {c}" for c in a.prepare]
        lines += [f"      {c} $EXTRA" for c in (a.train or {}).values()]
        lines.append("      ;;")
    lines += [f'    *) echo "unknown arm: $1 (arms: {names})" >&2; exit 2;;', "  esac", "}", "",
              f'if [ "$#" -eq 0 ]; then set -- {names}; fi', 'for arm in "$@"; do run_arm "$arm"; done', ""]
    return "\n".join(lines)
