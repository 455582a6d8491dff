"""One pretrained model against many fine-tuning datasets: one row per target and configuration.

The source is resolved once (its network built once, or its checkpoint read once); each
target is then checked against it, its root causes found, and, for incompatible pairs,
``--fix`` is planned (without writing) to say whether plans alone can make the pair load.
With ``fix=True`` the fix is written and the pair checked again.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ConfigurationNotFound, ExitCode, PlancheckError, UsageError
from plancheck.render.report import OutputFormat, percent, register

__all__ = ["Matrix", "MatrixRow", "matrix"]

Json = t.Any
Progress = t.Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One target and configuration: the verdict, what would load, why not, and whether --fix helps."""

    target: str
    configuration: str
    compatible: bool | None
    parameter_share: float | None = None
    main_cause: str | None = None
    fixable: bool | None = None
    fix_note: str | None = None
    fixed_path: str | None = None
    fixed_compatible: bool | None = None
    error: str | None = None
    #: The check behind the row (for the HTML page's detail); not in to_dict().
    report: t.Any = field(default=None, compare=False, repr=False)
    not_applicable: str | None = None  #: why the combination does not exist (a side lacks the configuration)

    @property
    def applicable(self) -> bool:
        return self.not_applicable is None

    @property
    def ok(self) -> bool:
        """Compatible as it is, or after the fix that was written."""
        return bool(self.compatible or self.fixed_compatible)

    def to_dict(self) -> dict[str, Json]:
        return {
            "target": self.target,
            "configuration": self.configuration,
            "compatible": self.compatible,
            "parameter_share": self.parameter_share,
            "main_cause": self.main_cause,
            "fixable": self.fixable,
            "fix_note": self.fix_note,
            "fixed_path": self.fixed_path,
            "fixed_compatible": self.fixed_compatible,
            "error": self.error,
            "applicable": self.applicable,
            "not_applicable": self.not_applicable,
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    source: str
    rows: tuple[MatrixRow, ...]
    fixed: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def applicable_rows(self) -> tuple[MatrixRow, ...]:
        """The rows whose combination exists; a combination one side lacks is neither a pass nor a failure."""
        return tuple(r for r in self.rows if r.applicable)

    @property
    def exit_code(self) -> int:
        """3 if a row could not be checked or no row applies, else 0 only if every applicable row loads."""
        rows = self.applicable_rows
        if not rows or any(r.error for r in rows):
            return int(ExitCode.INPUT)
        return int(ExitCode.OK if all(r.ok for r in rows) else ExitCode.INCOMPATIBLE)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "schema_version": 1,
            "plancheck_version": __version__,
            "source": self.source,
            "fix": self.fixed,
            "compatible": bool(self.applicable_rows) and all(r.ok and not r.error for r in self.applicable_rows),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        from plancheck.render.report import render

        return render(self, "text")


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
    try:
        path = write_fix(planned[0][3], force=force)
    except OutputExists as e:
        for index, _, _, outcome in planned:
            rows[index] = replace(rows[index], fixable=outcome.compatible, fix_note=f"not written: {e.message}")
        return
    except PlancheckError as e:
        for index, _, _, _ in planned:
            rows[index] = replace(rows[index], fixable=True, error=f"--fix could not write: {e}")
        return
    for index, prep, result, outcome in planned:
        dataset_json = result.target.dataset_json
        try:
            after = check_target(
                prep, path, target_configuration=outcome.configuration,
                **{**target_options, "explain": False,
                   "target_dataset_json": None if dataset_json is None else (dataset_json.path or dataset_json.data)},
            ).report
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


def _pct(share: float | None) -> str:
    """Rounded down as everywhere (:func:`plancheck.render.report.percent`): never 100.0% for less than all."""
    return "—" if share is None else percent(share)


def _table_rows(m: Matrix) -> list[list[str]]:
    out = []
    for r in m.rows:
        if not r.applicable:
            verdict = "not applicable"
        elif r.error:
            verdict = "error"
        elif r.compatible:
            verdict = "compatible"
        elif r.fixed_compatible:
            verdict = "fixed"
        else:
            verdict = "incompatible"
        fix = "—" if r.fixable is None else ("yes" if r.fixable else "no")
        note = r.not_applicable or r.error or r.fix_note or ""
        out.append([verdict, r.target, r.configuration, _pct(r.parameter_share), r.main_cause or "—", fix, note])
    return out


_HEADERS = ["verdict", "target", "configuration", "would load", "main root cause", "--fix can fix", "note"]


def _summary_line(m: Matrix) -> str:
    rows = m.applicable_rows
    ok = sum(r.ok for r in rows)
    na = len(m.rows) - len(rows)
    return (f"{ok} of {len(rows)} rows load{' after --fix' if m.fixed else ''}"
            f"{f' ({na} not applicable)' if na else ''}; source: {m.source}")


@register(Matrix, OutputFormat.TEXT)
def _matrix_text(m: Matrix, verbose: bool) -> str:
    from tabulate import tabulate

    return _summary_line(m) + "\n\n" + tabulate(_table_rows(m), headers=_HEADERS, disable_numparse=True) + "\n"


@register(Matrix, OutputFormat.MARKDOWN)
def _matrix_markdown(m: Matrix, verbose: bool) -> str:
    from tabulate import tabulate

    table = tabulate(_table_rows(m), headers=_HEADERS, tablefmt="github", disable_numparse=True)
    return f"## plancheck matrix\n\n**{_summary_line(m)}**\n\n{table}\n"


@register(Matrix, OutputFormat.JSON)
def _matrix_json(m: Matrix, verbose: bool) -> str:
    import json

    return json.dumps(m.to_dict(), indent=2)
