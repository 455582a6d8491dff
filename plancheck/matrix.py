"""One pretrained model against many fine-tuning datasets: one row per target and configuration.

The source is resolved once (its network built once, or its checkpoint read once); each
target is then checked against it, its root causes found, and, for incompatible pairs,
``--fix`` is planned (without writing) to say whether plans alone can make the pair load.
With ``fix=True`` the fix is written and the pair checked again.
"""

from __future__ import annotations

import typing as t

from plancheck.errors import ConfigurationNotFound, PlancheckError, UsageError
from plancheck.records.matrix import Matrix, MatrixRow

__all__ = ["Matrix", "MatrixRow", "matrix"]

Json = t.Any
Progress = t.Callable[[int, int, str], None]


def _main_cause(report: t.Any) -> str | None:
    if report.compatible:
        return None
    if report.root_causes:
        rc = report.root_causes[0]
        more = len(report.root_causes) - 1
        text = rc.note.split(";")[0] if rc.note.startswith(("depth:", "dimension:", "input channels:")) else (
            rc.cause.parameter.rsplit(".", 1)[-1] if rc.cause.parameter.startswith("configurations.")
            else rc.cause.parameter
        )
        return text + (f" (+{more} more)" if more > 0 else "")
    ff = report.first_failure
    return None if ff is None else f"{ff.key} ({ff.reason})"


def matrix(
    source: t.Any,
    targets: t.Sequence[t.Any],
    configurations: t.Sequence[str] | None = None,
    *,
    fix: bool = False,
    force: bool = False,
    strategy: str = "architecture",
    progress: Progress | None = None,
    target_configuration: str | None = None,
    **options: t.Any,
) -> Matrix:
    """Check ``source`` against every target in every configuration (default: the source's).

    The incompatible configurations of one target are fixed together, into one plans file
    (:func:`plancheck.remedies.fix.plan_fixes`); with ``fix=True`` that file is written once and
    each configuration checked again in the written file. ``target_configuration`` checks
    the one configuration in ``configurations`` against this configuration of every target.
    """
    from plancheck.check import check_target, prepare_source, split_options

    source_options, target_options = split_options(options)
    configurations = list(configurations or [None])
    if target_configuration is not None and len(configurations) != 1:
        raise UsageError(f"target_configuration={target_configuration!r} pairs one source configuration with it; "
                         f"got {len(configurations)}")
    prepared: dict[str | None, t.Any] = {}
    lacking: dict[str | None, str] = {}  # configuration the source lacks -> why
    for c in configurations:
        try:
            prepared[c] = prepare_source(source, configuration=c, **source_options)
        except ConfigurationNotFound as e:
            if len(configurations) == 1 and c is None:
                raise
            lacking[c] = f"source has {e.message}"
    label = next(iter(prepared.values())).summary.plans if prepared else str(source)
    jobs = [(number, tgt, c) for number, tgt in enumerate(targets) for c in configurations]
    rows: list[MatrixRow] = []
    to_fix: dict[int, list[tuple[int, t.Any, t.Any]]] = {}  # target number -> (row index, prepared, result)
    for index, (number, tgt, configuration) in enumerate(jobs):
        name = str(tgt)
        if progress is not None:
            progress(index, len(jobs), name)
        if configuration in lacking:
            rows.append(MatrixRow(target=name, configuration=str(configuration), compatible=None,
                                  not_applicable=lacking[configuration]))
            continue
        prep = prepared[configuration]
        cfg = configuration or prep.side.configuration.name
        try:
            result = check_target(prep, tgt, target_configuration=target_configuration or configuration,
                                  **target_options)
        except ConfigurationNotFound as e:
            rows.append(MatrixRow(target=e.path or name, configuration=cfg, compatible=None,
                                  not_applicable=f"target has {e.message}"))
            continue
        except PlancheckError as e:
            rows.append(MatrixRow(target=name, configuration=cfg, compatible=None, error=str(e)))
            continue
        report = result.report
        if not report.compatible:
            to_fix.setdefault(number, []).append((len(rows), prep, result))
        rows.append(MatrixRow(
            target=result.report.target.plans,
            configuration=report.target.configuration,
            compatible=report.compatible,
            parameter_share=report.summary.parameter_share,
            main_cause=_main_cause(report),
            report=report,
        ))
    for items in to_fix.values():
        _fix_target(rows, items, fix=fix, force=force, strategy=strategy, target_options=target_options)
    if progress is not None:
        progress(len(jobs), len(jobs), "")
    return Matrix(source=label, rows=tuple(rows), fixed=fix)


def _fix_target(rows: list[MatrixRow], items: list[tuple[int, t.Any, t.Any]], *, fix: bool, force: bool,
                strategy: str, target_options: dict[str, t.Any]) -> None:
    """Plan one fix for every incompatible configuration of one target; with ``fix``, write it and re-check it.

    A row counts as fixed only when the written file, read back, loads its configuration.
    """
    from dataclasses import replace

    from plancheck.check import check_target
    from plancheck.remedies.fix import FixResult, OutputExists, plan_fixes, write_fix

    outcomes = plan_fixes([(prep.side, result.target) for _, prep, result in items], strategy=strategy,
                          **items[0][1].fix_options(target_options.get("target_trainer")))
    planned: list[tuple[int, t.Any, t.Any, FixResult]] = []
    for (index, prep, result), outcome in zip(items, outcomes):
        if isinstance(outcome, FixResult):
            planned.append((index, prep, result, outcome))
        else:
            rows[index] = replace(rows[index], fixable=False, fix_note=outcome.message)
    if not planned:
        return
    if not fix:
        for index, _, _, outcome in planned:
            rows[index] = replace(
                rows[index],
                fixable=outcome.compatible,
                fix_note=f"--fix would write {outcome.plans_name}" if outcome.compatible
                else f"the fix of the other configurations in {outcome.plans_name} does not let this one load",
            )
        return
    from plancheck.fix import read_back_check, recheck_options

    # the file takes its name only when, read back, it loads every configuration its plan says it fixes
    checks = [(prep, recheck_options(result, outcome.configuration, target_options))
              for _, prep, result, outcome in planned if outcome.compatible]
    try:
        read_back = read_back_check(checks, planned[0][3].path) if checks else None
        path = write_fix(planned[0][3], force=force, check=read_back)
    except OutputExists as e:
        for index, _, _, outcome in planned:
            rows[index] = replace(rows[index], fixable=outcome.compatible, fix_note=f"not written: {e.message}")
        return
    except PlancheckError as e:
        for index, _, _, _ in planned:
            rows[index] = replace(rows[index], fixable=True, error=f"--fix could not write: {e}")
        return
    for index, prep, result, outcome in planned:
        try:
            after = check_target(prep, path, **{**recheck_options(result, outcome.configuration, target_options),
                                                "explain": False}).report
        except PlancheckError as e:
            rows[index] = replace(rows[index], fixable=outcome.compatible, fixed_path=path, fixed_compatible=False,
                                  fix_note=f"wrote {outcome.plans_name}, which cannot be checked again: {e.message}")
            continue
        rows[index] = replace(
            rows[index],
            fixable=outcome.compatible,
            fixed_path=path,
            fixed_compatible=after.compatible,
            fix_note=f"wrote {outcome.plans_name}" if after.compatible
            else f"wrote {outcome.plans_name}, but it does not load this configuration",
        )
