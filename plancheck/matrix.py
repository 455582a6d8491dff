"""One pretrained model against many fine-tuning datasets: one row per target and configuration.

The source is resolved once (its network built once, or its checkpoint read once); each
target is then checked against it, its root causes found, and, for incompatible pairs,
``--fix`` is planned (without writing) to say whether plans alone can make the pair load.
With ``fix=True`` the fix is written and the pair checked again.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from plancheck.errors import ExitCode, FixError, PlancheckError
from plancheck.render import OutputFormat, percent, register

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
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    source: str
    rows: tuple[MatrixRow, ...]
    fixed: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """3 if a row could not be checked, else 0 only if every row loads (after fixing)."""
        if any(r.error for r in self.rows):
            return int(ExitCode.INPUT)
        return int(ExitCode.OK if all(r.ok for r in self.rows) else ExitCode.INCOMPATIBLE)

    def to_dict(self) -> dict[str, Json]:
        from plancheck import __version__

        return {
            "schema_version": 1,
            "plancheck_version": __version__,
            "source": self.source,
            "fix": self.fixed,
            "compatible": all(r.ok for r in self.rows) and not any(r.error for r in self.rows),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        from plancheck.render import render

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
    **options: t.Any,
) -> Matrix:
    """Check ``source`` against every target in every configuration (default: the source's)."""
    from plancheck.check import check_target, prepare_source, split_options

    source_options, target_options = split_options(options)
    configurations = list(configurations or [None])
    prepared = {c: prepare_source(source, configuration=c, **source_options) for c in configurations}
    label = next(iter(prepared.values())).summary.plans
    jobs = [(tgt, c) for tgt in targets for c in configurations]
    rows: list[MatrixRow] = []
    for index, (tgt, configuration) in enumerate(jobs):
        prep = prepared[configuration]
        name = str(tgt)
        if progress is not None:
            progress(index, len(jobs), name)
        cfg = configuration or prep.side.configuration.name
        try:
            result = check_target(prep, tgt, target_configuration=configuration, **target_options)
        except PlancheckError as e:
            rows.append(MatrixRow(target=name, configuration=cfg, compatible=None, error=str(e)))
            continue
        report = result.report
        row = MatrixRow(
            target=result.report.target.plans,
            configuration=report.target.configuration,
            compatible=report.compatible,
            parameter_share=report.summary.parameter_share,
            main_cause=_main_cause(report),
            report=report,
        )
        if not report.compatible:
            row = _with_fix(row, prep, result, fix=fix, force=force, strategy=strategy)
        rows.append(row)
    if progress is not None:
        progress(len(jobs), len(jobs), "")
    return Matrix(source=label, rows=tuple(rows), fixed=fix)


def _with_fix(row: MatrixRow, prep: t.Any, result: t.Any, *, fix: bool, force: bool, strategy: str) -> MatrixRow:
    from dataclasses import replace

    from plancheck.fix import plan_fix, write_fix

    try:
        planned = plan_fix(prep.side, result.target, strategy=strategy, **prep.fix_options())
    except FixError as e:
        return replace(row, fixable=False, fix_note=e.message)
    if not fix:
        return replace(row, fixable=True, fix_note=f"--fix would write {planned.plans_name}")
    try:
        path = write_fix(planned, force=force)
    except PlancheckError as e:
        return replace(row, fixable=True, fix_note=f"not written: {e.message}")
    return replace(row, fixable=True, fixed_path=path, fixed_compatible=planned.compatible,
                   fix_note=f"wrote {planned.plans_name}")


def _pct(share: float | None) -> str:
    """Rounded down as everywhere (:func:`plancheck.render.percent`): never 100.0% for less than all."""
    return "—" if share is None else percent(share)


def _table_rows(m: Matrix) -> list[list[str]]:
    out = []
    for r in m.rows:
        if r.error:
            verdict = "error"
        elif r.compatible:
            verdict = "compatible"
        elif r.fixed_compatible:
            verdict = "fixed"
        else:
            verdict = "incompatible"
        fix = "—" if r.fixable is None else ("yes" if r.fixable else "no")
        note = r.error or r.fix_note or ""
        out.append([verdict, r.target, r.configuration, _pct(r.parameter_share), r.main_cause or "—", fix, note])
    return out


_HEADERS = ["verdict", "target", "configuration", "would load", "main root cause", "--fix can fix", "note"]


def _summary_line(m: Matrix) -> str:
    ok = sum(r.ok for r in m.rows)
    return f"{ok} of {len(m.rows)} rows load{' after --fix' if m.fixed else ''}; source: {m.source}"


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
