"""``check --fix`` as one pipeline: plan the new plans, write them (read back and checked before they
take their name), and check the pair again. The CLI and ``matrix --fix`` both call it.

:func:`fix` returns a :class:`~plancheck.records.fix.FixOutcome`; :func:`read_back_check` is the
check a written plans file must pass before :func:`~plancheck.remedies.fix.write_fix` gives it its
name, for one configuration or for several written into one file.
"""

from __future__ import annotations

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
        target_options: t.Mapping[str, Json] | None = None) -> FixOutcome:
    """Fix the target of ``result`` (an incompatible check) for ``prepared``'s weights.

    Raises what :func:`~plancheck.remedies.fix.write_fix` raises (an existing file without
    ``force``, a failed read-back); a pair plans cannot fix is an outcome with a refusal.
    """
    target_options = dict(target_options or {})
    report = result.report
    try:
        planned: FixResult = plan_fix(prepared.side, result.target, strategy=strategy, plans_name=plans_name, out=out,
                                      **prepared.fix_options(target_options.get("target_trainer")))
    except Unfixable as e:
        return FixOutcome(before=report, refusal=Refusal(e.message, e.reasons, e.options, e.explanation))
    if dry_run:
        return FixOutcome(before=report, fix=planned, dry_run=True)
    recheck = recheck_options(result, planned.configuration, target_options)
    written = write_fix(planned, force=force, check=read_back_check([(prepared, recheck)], planned.path))
    after = check_target(prepared, written, **recheck).report
    return FixOutcome(before=report, fix=planned, written=written, after=after)
