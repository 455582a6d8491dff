"""The plancheck pytest plugin: a ``plancheck`` fixture and declared checks as test items.

Loaded through the ``pytest11`` entry point by every pytest run in an environment that
has plancheck installed, so loading it must stay cheap: this module imports neither
torch nor nnU-Net, and :mod:`plancheck.check` is imported only when a check runs.
``-p no:plancheck`` switches the plugin off; ``--no-plancheck`` keeps the fixture and
skips the declared checks.

* ``plancheck.assert_compatible(source, target, configuration="3d_fullres", **options)``
  fails the test with the rendered report (``pytest.fail(..., pytrace=False)``) and
  returns the :class:`~plancheck.records.report.Report` when the pair is compatible.
* A ``[tool.plancheck]`` table in ``pyproject.toml``, or a ``plancheck.toml``, declares
  checks (:mod:`plancheck.inputs.declared`); each source, target and configuration becomes
  an item ``<file>::plancheck::<source>-><target>[<configuration>]``.
* ``--plancheck-report FILE`` (``.json``, ``.md`` or ``.html``) summarises every check of the
  session, the fixture's included; under pytest-xdist the results travel from the
  workers on the test reports and the controller writes the file.
"""

from __future__ import annotations

import json
import os
import typing as t
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from plancheck.inputs import declared
from plancheck.errors import PlancheckError

if t.TYPE_CHECKING:
    from plancheck.records.report import Report

__all__ = ["PlancheckFile", "PlancheckFixture", "PlancheckItem", "plancheck"]

FORMATS = ("text", "markdown", "json")
REPORT_FORMATS = {".json": "json", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
VERSIONS_OF = ("plancheck", "nnunetv2", "dynamic_network_architectures", "torch")
DEFAULT_CONFIGURATION = "3d_fullres"

#: Attribute of a TestReport that carries the checks a test ran (a JSON string, so that
#: it survives pytest-xdist's report serialisation). Not user_properties: those are
#: written into JUnit XML, and a full report per check would bloat it.
_RESULTS_ATTR = "plancheck_results"
_WORKER_NOT_COLLECTED = "plancheck_not_collected"


# --------------------------------------------------------------------------- options


def _format_type(value: str) -> str:
    import argparse

    if value not in FORMATS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def _report_type(value: str) -> str:
    import argparse

    if os.path.splitext(value)[1].lower() not in REPORT_FORMATS:
        raise argparse.ArgumentTypeError(f"FILE must end in .json, .md or .html (got {value!r})")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plancheck", "plancheck: will nnU-Net pretrained weights load into these plans")
    group.addoption(
        "--plancheck-only",
        action="store_true",
        dest="plancheck_only",
        default=False,
        help="Run only the checks declared in [tool.plancheck] (pyproject.toml) or plancheck.toml.",
    )
    group.addoption(
        "--no-plancheck",
        action="store_false",
        dest="plancheck_enabled",
        default=True,
        help="Do not collect the declared checks (the plancheck fixture still works).",
    )
    group.addoption(
        "--plancheck-format",
        dest="plancheck_format",
        type=_format_type,
        default="text",
        metavar="text|markdown|json",
        help="Format of the report shown for an incompatible pair (default: text).",
    )
    group.addoption(
        "--plancheck-report",
        dest="plancheck_report",
        type=_report_type,
        default=None,
        metavar="FILE",
        help="Write a summary of every check of the session to FILE (.json, .md, or .html: a self-contained "
        "page with both networks drawn per check).",
    )


# --------------------------------------------------------------------------- session state


@dataclass
class _State:
    """What the plugin knows for one pytest session (kept in ``config.stash``)."""

    enabled: bool
    only: bool
    fmt: str
    report_path: Path | None
    is_worker: bool
    files: list[Path] = field(default_factory=list)
    results: list[dict[str, t.Any]] = field(default_factory=list)
    not_collected: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    report_written: Path | None = None

    def add_not_collected(self, entry: dict[str, str]) -> None:
        self.not_collected.setdefault((entry["declared_in"], entry["name"]), entry)


_STATE = pytest.StashKey[_State]()
_ITEM_RESULTS = pytest.StashKey[list]()


def _state(config: pytest.Config) -> _State | None:
    return config.stash.get(_STATE, None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "plancheck: a check declared in [tool.plancheck] or plancheck.toml")
    option = config.option
    if option.plancheck_only and not option.plancheck_enabled:
        raise pytest.UsageError("--plancheck-only and --no-plancheck contradict each other")
    report = option.plancheck_report
    state = _State(
        enabled=option.plancheck_enabled,
        only=option.plancheck_only,
        fmt=option.plancheck_format,
        report_path=None if report is None else Path(config.invocation_params.dir, report),
        is_worker=hasattr(config, "workerinput"),
    )
    config.stash[_STATE] = state
    if state.enabled:
        root = config.rootpath
        state.files = [p for p in (root / "pyproject.toml", root / declared.CONFIG_FILE)
                       if declared.declares_checks(p)]
        _add_declaring_files(config, state)
    config.pluginmanager.register(_SessionHooks(state), "plancheck-session")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "plancheck-xdist")


def _add_declaring_files(config: pytest.Config, state: _State) -> None:
    """Collect the rootdir's declared checks in a plain ``pytest`` run, whatever ``testpaths`` says.

    With paths on the command line, only what they cover is collected (``pytest .``,
    ``pytest pyproject.toml``); ``--plancheck-only`` then deselects everything else.
    """
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    files = [str(f) for f in state.files]
    if state.only:
        if not files:
            raise pytest.UsageError(
                f"--plancheck-only: no checks declared in {config.rootpath} "
                "(a [tool.plancheck] table in pyproject.toml, or a plancheck.toml)"
            )
        config.args = files
        return
    base = config.invocation_params.dir
    roots = [Path(base, arg.split("::", 1)[0]).resolve() for arg in config.args]
    missing = [f for f in files if not any(Path(f).resolve().is_relative_to(r) for r in roots)]
    config.args = [*config.args, *missing]


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = ["plancheck: " + ", ".join(f"{name} {_version(name)}" for name in VERSIONS_OF)]
    state = _state(config)
    if state is not None and not state.enabled:
        lines.append("plancheck: declared checks disabled (--no-plancheck)")
    elif state is not None and state.files:
        lines.append("plancheck: checks declared in " + ", ".join(f.name for f in state.files))
    return lines


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- running a check


def _label(value: t.Any) -> str:
    """A side as the JSON report names it: the path or dataset ID as given."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and isinstance(value.get("dataset_name"), str):
        return f"<plans dict {value['dataset_name']}>"
    return f"<{type(value).__name__}>"


def _case_name(source: t.Any, target: t.Any, configuration: str, target_configuration: str | None) -> str:
    def name(value: t.Any) -> str:
        if isinstance(value, (str, os.PathLike)) or (isinstance(value, int) and not isinstance(value, bool)):
            return declared.display_name(_label(value))
        if isinstance(value, dict) and isinstance(value.get("dataset_name"), str):
            return value["dataset_name"]
        return _label(value)

    tc = target_configuration or configuration
    bracket = configuration if tc == configuration else f"{configuration}->{tc}"
    return f"{name(source)}->{name(target)}[{bracket}]"


def _run_check(
    node: pytest.Item, source: t.Any, target: t.Any, configuration: str, options: t.Mapping[str, t.Any], case_id: str
) -> Report:
    """Run one check and record it for ``--plancheck-report``; errors propagate."""
    from plancheck.check import check
    from plancheck.render import render

    kwargs = {k: v for k, v in options.items() if k not in declared.RENDER_OPTIONS}
    record: dict[str, t.Any] = {
        "id": case_id,
        "nodeid": node.nodeid,
        "source": _label(source),
        "target": _label(target),
        "configuration": configuration,
        "target_configuration": kwargs.get("target_configuration") or configuration,
        "outcome": "error",
        "compatible": None,
        "report": None,
        "error": None,
    }
    node.stash.setdefault(_ITEM_RESULTS, []).append(record)
    try:
        report = check(source, target, configuration=configuration, **kwargs)
    except PlancheckError as e:
        record["error"] = str(e)
        raise
    except Exception as e:
        record["error"] = f"{type(e).__name__}: {e}"
        raise
    record.update(
        outcome="compatible" if report.compatible else "incompatible",
        compatible=report.compatible,
        report=report.to_dict(),
    )
    if not report.compatible:
        record["details"] = render(report, "markdown", verbose=False)
    state = _state(node.config)
    path = None if state is None else state.report_path
    if path is not None and REPORT_FORMATS[path.suffix.lower()] == "html":
        from plancheck.render.html import check_section, section_prefix

        record["html"] = check_section(report, prefix=section_prefix(case_id, node.nodeid), heading="h3")
    return report


def _failure_text(config: pytest.Config, report: Report, options: t.Mapping[str, t.Any], case_id: str) -> str:
    """The report shown for an incompatible pair, in ``--plancheck-format`` (or the ``format`` option)."""
    from plancheck.render import render

    state = _state(config)
    fmt = options.get("format") or (state.fmt if state is not None else "text")
    problems_only = options.get("problems_only")
    verbose = (not problems_only) if problems_only is not None else config.get_verbosity() >= 2
    body = render(report, fmt, verbose=verbose).rstrip("\n")
    if fmt == "text":
        return body
    headline = render(report, "text", verbose=False).splitlines()[0]
    return f"{headline} ({case_id})\n\n{body}"


def _error_text(error: PlancheckError) -> str:
    return f"plancheck: error: {error}"


_FAILURE = pytest.StashKey[tuple[str, str]]()


def _fail(node: pytest.Item, text: str) -> t.NoReturn:
    """``pytest.fail(text, pytrace=False)``, remembering the first line as the failure's one-line message.

    pytest takes the short-summary line and JUnit's ``message`` attribute from the crash
    message, which for ``pytest.fail`` is the whole text; :func:`pytest_runtest_makereport`
    puts the headline there instead.
    """
    __tracebackhide__ = True
    node.stash[_FAILURE] = (text, text.strip().splitlines()[0] if text.strip() else text)
    pytest.fail(text, pytrace=False)


# --------------------------------------------------------------------------- the fixture


class PlancheckFixture:
    """The ``plancheck`` fixture: checks that fail the test with plancheck's report.

    ``source`` and ``target`` are what the command line takes (plans files, and as
    plancheck grows checkpoints, model folders, dataset IDs) or loaded plans dicts;
    ``options`` are the keyword options of :func:`plancheck.check`, plus ``format``
    (``text``/``markdown``/``json``) and ``problems_only`` for the failure text.
    """

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def check(self, source: t.Any, target: t.Any, configuration: str = DEFAULT_CONFIGURATION,
              **options: t.Any) -> Report:
        """Run the check and return its report; a :class:`PlancheckError` propagates.

        An option that :func:`plancheck.check` does not take (nor ``format``/``problems_only``)
        is a :class:`~plancheck.errors.UsageError` naming it and the valid ones.
        """
        _validate_fixture_options(options)
        case_id = _case_name(source, target, configuration, options.get("target_configuration"))
        return _run_check(self._node, source, target, configuration, options, case_id)

    def assert_compatible(self, source: t.Any, target: t.Any, configuration: str = DEFAULT_CONFIGURATION,
                          **options: t.Any) -> Report:
        """Fail the test, showing the report, unless the weights of ``source`` load into ``target``."""
        __tracebackhide__ = True
        report = self._checked(source, target, configuration, options)
        if not report.compatible:
            case_id = _case_name(source, target, configuration, options.get("target_configuration"))
            _fail(self._node, _failure_text(self._node.config, report, options, case_id))
        return report

    def assert_incompatible(self, source: t.Any, target: t.Any, configuration: str = DEFAULT_CONFIGURATION,
                            **options: t.Any) -> Report:
        """Fail the test if the weights of ``source`` would load into ``target``; return the report."""
        __tracebackhide__ = True
        report = self._checked(source, target, configuration, options)
        if report.compatible:
            case_id = _case_name(source, target, configuration, options.get("target_configuration"))
            _fail(self._node, f"plancheck: expected {case_id} to be incompatible, but the weights would load")
        return report

    def _checked(self, source: t.Any, target: t.Any, configuration: str, options: dict[str, t.Any]) -> Report:
        __tracebackhide__ = True
        try:
            return self.check(source, target, configuration, **options)
        except PlancheckError as e:
            error = e
        _fail(self._node, _error_text(error))  # outside the except block: no chained traceback
        raise AssertionError("unreachable")


def _validate_fixture_options(options: t.Mapping[str, t.Any]) -> None:
    from plancheck.check import check_options
    from plancheck.errors import UsageError

    valid = (check_options() - {"configuration"}) | declared.RENDER_OPTIONS
    unknown = sorted(set(options) - valid)
    if unknown:
        names = ", ".join(sorted(valid))
        raise UsageError(f"unknown option {', '.join(repr(u) for u in unknown)} for the plancheck fixture; "
                         f"valid options: {names}")


@pytest.fixture
def plancheck(request: pytest.FixtureRequest) -> PlancheckFixture:
    """Check nnU-Net pretrained-weight compatibility: ``plancheck.assert_compatible(source, target)``."""
    return PlancheckFixture(request.node)


# --------------------------------------------------------------------------- declared checks


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = _state(parent.config)
    if state is None or not state.enabled:
        return None
    if file_path.name == declared.CONFIG_FILE or (
        file_path.name == "pyproject.toml" and declared.declares_checks(file_path)
    ):
        return PlancheckFile.from_parent(parent, path=file_path)
    return None


class PlancheckFile(pytest.File):
    """A pyproject.toml with ``[tool.plancheck]``, or a plancheck.toml: one group of check items."""

    def collect(self) -> t.Iterator[pytest.Collector]:
        try:
            specs = declared.load_checks(self.path)
            if any(key not in declared.RENDER_OPTIONS for spec in specs for key in spec.options):
                import inspect

                from plancheck.check import check

                parameters = {name: p for name, p in inspect.signature(check).parameters.items()
                              if p.kind is not inspect.Parameter.VAR_KEYWORD}
                declared.validate_options(specs, parameters)
        except declared.ConfigError as e:
            raise self.CollectError(f"plancheck: {e}") from e
        cases, skipped = declared.plan_cases(specs)
        state = _state(self.config)
        if state is not None:
            for entry in skipped:
                state.add_not_collected(entry.to_dict())
        yield PlancheckGroup.from_parent(self, name="plancheck", cases=cases)


class PlancheckGroup(pytest.Collector):
    """The ``plancheck`` node under a declaring file, so that ids read ``<file>::plancheck::<check>``."""

    def __init__(self, *, cases: t.Sequence[declared.CheckCase], **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self._cases = tuple(cases)

    def collect(self) -> list[pytest.Item]:
        return [PlancheckItem.from_parent(self, name=case.name, case=case) for case in self._cases]


class PlancheckItem(pytest.Item):
    """One declared check: a source, a target and a configuration."""

    def __init__(self, *, case: declared.CheckCase, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.add_marker("plancheck")

    def runtest(self) -> None:
        case = self.case
        case_id = f"plancheck::{self.name}"
        try:
            report = _run_check(self, case.source, case.target, case.configuration, case.options, case_id)
        except PlancheckError as e:
            error = e
        else:
            if not report.compatible:
                _fail(self, _failure_text(self.config, report, case.options, case_id))
            return
        _fail(self, _error_text(error))  # outside the except block: no chained traceback

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"plancheck::{self.name}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    if state is None or not state.only:
        return
    keep = [item for item in items if isinstance(item, PlancheckItem)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if not isinstance(item, PlancheckItem)])
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> t.Generator[None, t.Any, t.Any]:
    report = yield
    records = item.stash.get(_ITEM_RESULTS, None)
    if records:
        setattr(report, _RESULTS_ATTR, json.dumps(records))
        item.stash[_ITEM_RESULTS] = []
    failure = item.stash.get(_FAILURE, None)
    if failure is not None and call.excinfo is not None and isinstance(call.excinfo.value, pytest.fail.Exception):
        item.stash[_FAILURE] = None  # type: ignore[assignment]
        if call.excinfo.value.msg == failure[0]:
            _set_crash_message(report.longrepr, failure[1])
    return report


def _set_crash_message(longrepr: t.Any, message: str) -> None:
    crash = getattr(longrepr, "reprcrash", None)
    if crash is None:
        return
    from _pytest._code.code import ReprFileLocation

    new = ReprFileLocation(crash.path, crash.lineno, message)
    longrepr.reprcrash = new
    chain = getattr(longrepr, "chain", None)
    if chain:  # what pytest-xdist serialises, and rebuilds reprcrash from
        tb, _, descr = chain[-1]
        longrepr.chain = [*chain[:-1], (tb, new, descr)]


# --------------------------------------------------------------------------- summary and report file


class _SessionHooks:
    """Hooks that need the session state: results from reports, the summary, the report file."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, _RESULTS_ATTR, None)
        if data and not self.state.is_worker:
            self.state.results.extend(json.loads(data))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state = self.state
        if state.is_worker:
            session.config.workeroutput[_WORKER_NOT_COLLECTED] = list(state.not_collected.values())  # type: ignore[attr-defined]
            return
        if state.report_path is not None:
            write_report(state.report_path, state.results, list(state.not_collected.values()))
            state.report_written = state.report_path

    def pytest_terminal_summary(self, terminalreporter: t.Any, config: pytest.Config) -> None:
        state = self.state
        if not (state.results or state.not_collected or state.report_written):
            return
        tr = terminalreporter
        tr.write_sep("-", "plancheck")
        if state.results:
            tr.write_line(_counts_line(state.results))
        for entry in state.not_collected.values():
            tr.write_line(f"not collected: {entry['name']}: {entry['reason']}")
        if state.report_written is not None:
            tr.write_line(f"plancheck report written to {state.report_written}")


class _XdistHooks:
    """Registered only when pytest-xdist is loaded: gather what the workers collected."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def pytest_testnodedown(self, node: t.Any, error: t.Any) -> None:
        for entry in getattr(node, "workeroutput", {}).get(_WORKER_NOT_COLLECTED, []):
            self.state.add_not_collected(entry)


def _counts_line(results: t.Sequence[t.Mapping[str, t.Any]]) -> str:
    outcomes = [r["outcome"] for r in results]
    n = len(outcomes)
    return (
        f"{n} check{'s' if n != 1 else ''}: {outcomes.count('compatible')} compatible, "
        f"{outcomes.count('incompatible')} incompatible, {outcomes.count('error')} "
        f"error{'s' if outcomes.count('error') != 1 else ''}"
    )


def write_report(path: Path, results: t.Sequence[dict[str, t.Any]],
                 not_collected: t.Sequence[dict[str, str]] = ()) -> None:
    """Write the session's checks to ``path``: a JSON list, or a Markdown summary (by suffix)."""
    fmt = REPORT_FORMATS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: (r["id"], r["nodeid"]))  # xdist: arrival order varies
    if fmt == "html":
        from plancheck.render.html import pytest_page

        text = pytest_page(results, not_collected)
    elif fmt == "json":
        keys = ("id", "nodeid", "source", "target", "configuration", "target_configuration", "outcome",
                "compatible", "report", "error")
        text = json.dumps([{k: r.get(k) for k in keys} for r in results], indent=2) + "\n"
    else:
        text = _markdown_report(results, not_collected)
    path.write_text(text, encoding="utf-8")


_OUTCOME_MD = {"compatible": "✅ compatible", "incompatible": "❌ incompatible", "error": "⚠️ error"}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_report(results: t.Sequence[dict[str, t.Any]], not_collected: t.Sequence[dict[str, str]]) -> str:
    lines = ["# plancheck", ""]
    lines.append(_counts_line(results) + "." if results else "No checks ran.")
    if results:
        lines += ["", "| check | outcome | first failure |", "| --- | --- | --- |"]
        for r in results:
            detail = ""
            report = r.get("report") or {}
            ff = report.get("nnunet_first_failure")
            if ff:
                detail = f"`{ff['key']}` ({ff['reason']}: {ff['source_shape']} vs {ff['target_shape']})"
            elif r.get("error"):
                detail = r["error"]
            lines.append(f"| `{_md_cell(r['id'])}` | {_OUTCOME_MD.get(r['outcome'], r['outcome'])} | "
                         f"{_md_cell(detail)} |")
    failures = [r for r in results if r["outcome"] != "compatible"]
    if failures:
        lines += ["", "## Failures"]
        for r in failures:
            lines += ["", "<details>", f"<summary><code>{r['id']}</code>: {r['outcome']}</summary>", ""]
            if r.get("details"):
                lines.append(r["details"].replace("## plancheck", "#### plancheck", 1).rstrip("\n"))
            else:
                lines.append(f"`{_md_cell(r.get('error') or '')}`")
            lines += ["", "</details>"]
    if not_collected:
        lines += ["", "## Not collected (configuration missing)", ""]
        lines += [f"- `{e['name']}`: {e['reason']}" for e in not_collected]
    return "\n".join(lines) + "\n"
