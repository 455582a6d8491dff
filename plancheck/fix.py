"""``check --fix`` as one pipeline: plan the new plans, write them (read back and checked before they
take their name), and check the pair again. The CLI and ``matrix --fix`` both call it.

:func:`fix` returns a :class:`~plancheck.records.fix.FixOutcome`; :func:`read_back_check` is the
check a written plans file must pass before :func:`~plancheck.remedies.fix.write_fix` gives it its
name, for one configuration or for several written into one file.
"""

from __future__ import annotations

import os
import typing as t

from plancheck.check import CheckResult, PreparedSource, check_target
from plancheck.errors import PlancheckError, ReadBackError, Unfixable
from plancheck.records.fix import FixOutcome, FixResult, Refusal
from plancheck.remedies.fix import plan_fix, write_fix

__all__ = ["fix", "read_back_check", "recheck_options"]

Json = t.Any


def recheck_options(result: CheckResult, configuration: str, target_options: t.Mapping[str, Json]) -> dict[str, Json]:
    """The options that check the new plans: the fixed configuration, the target's own dataset.json."""
    dataset_json = result.target.dataset_json
    return {"target_configuration": configuration,
            "target_dataset_json": None if dataset_json is None else (dataset_json.path or dataset_json.data),
            **target_options}


def read_back_check(checks: t.Sequence[tuple[PreparedSource, dict[str, Json]]],
                    shown: str | None) -> t.Callable[[str], None]:
    """A check of the written file (read back as nnU-Net would read it): every pair must load, else
    :class:`~plancheck.errors.ReadBackError` and the file never takes its name."""

    def read_back(tmp: str) -> None:
        for prepared, recheck in checks:
            try:
                again = check_target(prepared, tmp, **{**recheck, "explain": False}).report
            except PlancheckError as e:
                raise ReadBackError(f"the written plans failed the read-back check: {e.message}; nothing was written",
                                    path=shown) from e
            if not again.compatible:
                stop = again.first_failure.key if again.first_failure else "?"
                raise ReadBackError(f"the written plans failed the read-back check: nnU-Net would stop at {stop}; "
                                    "nothing was written", path=shown)

    return read_back


def fix(prepared: PreparedSource, result: CheckResult, *, out: str | None = None, plans_name: str | None = None,
        strategy: str = "architecture", force: bool = False, dry_run: bool = False,
        target_options: t.Mapping[str, Json] | None = None, schedule: str | None = None,
        carried_lr_ratio: float = 1.0, schedule_plans: str | None = None) -> FixOutcome:
    """Fix the target of ``result`` (an incompatible check) for ``prepared``'s weights.

    ``schedule`` (``carried`` or ``encoder``): also write fine-tuning plans next to the new plans (the
    new plans under ``schedule_plans``, default ``<new plans>_finetune``, with the entry naming the tensors
    nnU-Net's loader loads and those to freeze, :mod:`plancheck.finetune`), and print the command with the
    fine-tuning trainer (``target_trainer``, default ``nnUNetTrainerFinetune``); the check after the fix
    builds that trainer's network.

    Raises what :func:`~plancheck.remedies.fix.write_fix` raises (an existing file without
    ``force``, a failed read-back); a pair plans cannot fix is an outcome with a refusal.
    """
    from plancheck.finetune import request

    request.validate(schedule, carried_lr_ratio, schedule_plans)
    target_options = dict(target_options or {})
    report = result.report
    try:
        planned: FixResult = plan_fix(prepared.side, result.target, strategy=strategy, plans_name=plans_name, out=out,
                                      **prepared.fix_options(target_options.get("target_trainer")))
    except Unfixable as e:
        return FixOutcome(before=report, refusal=Refusal(e.message, e.reasons, e.options, e.explanation))
    finetune: tuple[str, str, str] | None = None
    if schedule is not None:
        finetune = request.setup(planned.path, f"{planned.plans_name}_finetune", target_options.get("target_trainer"),
                                 prepared.allow, schedule_plans, force=force or dry_run)
        target_options["target_trainer"] = finetune[0]
        planned = _with_finetune_command(planned, prepared, *finetune[:2])
    if dry_run:
        return FixOutcome(before=report, fix=planned, dry_run=True,
                          finetune_trainer=None if finetune is None else finetune[0])
    recheck = recheck_options(result, planned.configuration, target_options)
    written = write_fix(planned, force=force, check=read_back_check([(prepared, recheck)], planned.path))
    checked = check_target(prepared, written, **recheck)
    after = checked.report
    outcome = FixOutcome(before=report, fix=planned, written=written, after=after)
    if finetune is None or schedule is None or not after.compatible:
        return outcome
    return _write_finetune(outcome, checked, prepared, finetune, schedule, carried_lr_ratio, force=force)


def _with_finetune_command(planned: FixResult, prepared: PreparedSource, trainer: str, identifier: str) -> FixResult:
    """The fix's commands with the training one replaced by the fine-tuning trainer's on the fine-tuning plans."""
    import dataclasses

    from plancheck.finetune import request
    from plancheck.remedies.commands import trainer_note
    from plancheck.remedies.fix import DEFAULT_CHECKPOINT, DEFAULT_FOLD

    ckpt = prepared.input.checkpoint
    weights = DEFAULT_CHECKPOINT if ckpt is None or not ckpt.path else os.path.abspath(ckpt.path)
    dataset = planned.new_plans.get("dataset_name")
    line, note = request.command(dataset, planned.configuration, identifier, trainer, weights,
                                 fold=DEFAULT_FOLD if prepared.input.fold is None else prepared.input.fold)
    commands = tuple(c for c in planned.commands if not c.startswith("nnUNetv2_train ")) + (line,)
    notes = [n for n in planned.notes if not n.startswith("the command trains with ")]
    notes += [trainer_note(trainer, "plancheck's fine-tuning trainer, for --schedule"), *filter(None, [note])]
    return dataclasses.replace(planned, commands=commands, notes=tuple(notes))


def _write_finetune(outcome: FixOutcome, checked: CheckResult, prepared: PreparedSource,
                    finetune: tuple[str, str, str], schedule: str, carried_lr_ratio: float, *,
                    force: bool) -> FixOutcome:
    """The fine-tuning plans of a passing fix: the new plans with the entry, read back before they take their name."""
    import dataclasses

    from plancheck.finetune.plans import finetune_plans, from_check, write_finetune_plans
    from plancheck.network.build import build_meta_network

    assert outcome.fix is not None
    trainer, identifier, path = finetune
    side = checked.target
    network = build_meta_network(side.spec, source=side.label)
    ckpt = prepared.input.checkpoint
    plan = from_check(outcome.after, getattr(network, "key_to_encoder", None), getattr(network, "key_to_stem", None),
                      schedule, carried_lr_ratio, ckpt.path if ckpt is not None and ckpt.path else "")
    new = finetune_plans(side.plans.data, plan, identifier)
    written = write_finetune_plans(path, new, side.plans.data, network.state_dict().keys(), force=force)
    return dataclasses.replace(outcome, finetune=plan, finetune_plans=written, finetune_trainer=trainer)
