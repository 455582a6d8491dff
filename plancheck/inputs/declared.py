"""Declarative checks: read ``[tool.plancheck]`` / ``plancheck.toml`` into check cases.

A project declares the pairs it wants checked in ``pyproject.toml``::

    [[tool.plancheck.check]]
    source = "pretrained/checkpoint_final.pth"   # a plans.json, a checkpoint, a model folder, a dataset ID
    targets = ["preprocessed/Dataset9*/nnUNetPlans.json", "996"]
    configurations = ["3d_fullres"]

or with the same keys at the top of a ``plancheck.toml`` (``[[check]]``). Keys at the
top of the table other than ``check`` are defaults for every entry. Any key of an entry
other than ``source``/``targets``/``configurations`` (and their singular spellings) is
an option of :func:`plancheck.check`, written with ``_`` or ``-``; options whose name
ends in ``_json``, ``_file``, ``_path``, ``_dir`` or ``_folder`` are paths.

Paths and globs are relative to the declaring file's directory. A glob that matches
nothing, or a path that does not exist, is a :class:`ConfigError`; an entry that is not
a path but looks like a dataset ID (``"996"``, ``"Dataset996_Name"``) is passed through
to the check unchanged.

This module reads TOML and JSON only (and, for a target dataset ID, runs nnU-Net's own
dataset-name lookup, which does not import torch): it imports neither torch nor pytest, so
the pytest plugin (and, later, the command line) can share it.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import typing as t
from dataclasses import dataclass, field
from types import MappingProxyType

from plancheck.inputs.datasets import display_id, is_dataset_ref
from plancheck.errors import ConfigError

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_FILE",
    "CheckCase",
    "CheckSpec",
    "ConfigError",
    "DEFAULT_CONFIGURATIONS",
    "NotCollected",
    "RENDER_OPTIONS",
    "available_configurations",
    "check_kwargs",
    "declares_checks",
    "display_name",
    "is_dataset_id",
    "load_checks",
    "plan_cases",
    "read_table",
    "validate_options",
]

Json = t.Any

#: The file whose top level is the plancheck table (``pyproject.toml`` keeps it under ``[tool.plancheck]``).
CONFIG_FILE = "plancheck.toml"
DEFAULT_CONFIGURATIONS = ("3d_fullres",)
#: Options that shape the failure text, not the check; the plugin consumes them.
RENDER_OPTIONS = frozenset({"format", "problems_only"})
#: The plans file name nnU-Net uses by default, and the one a trained model folder holds.
_DEFAULT_PLANS_STEMS = frozenset({"nnUNetPlans", "plans"})
_PATH_OPTION_SUFFIXES = ("_json", "_file", "_path", "_dir", "_folder")
_GLOB_CHARS = re.compile(r"[*?\[]")
_DATASET_DIR = re.compile(r"^Dataset\d{3,}_")
_ENTRY_KEYS = {
    "source": "source",
    "targets": "targets",
    "target": "targets",
    "configurations": "configurations",
    "configuration": "configurations",
}


@dataclass(frozen=True)
class CheckSpec:
    """One declared source with its expanded targets, configurations and check options.

    ``source`` and each target are an absolute path, or a dataset ID passed through as
    written. ``options`` are keyword arguments of :func:`plancheck.check` plus the
    render options (:data:`RENDER_OPTIONS`), with path options made absolute.
    """

    source: str
    targets: tuple[str, ...]
    configurations: tuple[str, ...]
    options: t.Mapping[str, Json] = field(default_factory=lambda: MappingProxyType({}))
    declared_in: str = ""
    entry: int = 0  #: 1-based position of the entry in its file

    @property
    def where(self) -> str:
        return f"{self.declared_in}: {_entry_label(self.declared_in)} #{self.entry}"


@dataclass(frozen=True)
class CheckCase:
    """One source, target and configuration: a single check to run."""

    name: str  #: readable id: ``Dataset999_Name->Dataset996_Other[3d_fullres]``
    source: str
    target: str
    configuration: str
    options: t.Mapping[str, Json]
    spec: CheckSpec

    @property
    def target_configuration(self) -> str:
        return self.options.get("target_configuration") or self.configuration


@dataclass(frozen=True)
class NotCollected:
    """A combination left out because a side lacks the configuration."""

    name: str
    reason: str
    declared_in: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason, "declared_in": self.declared_in}


# --------------------------------------------------------------------------- reading


def _entry_label(path: str) -> str:
    return "[[tool.plancheck.check]]" if os.path.basename(path) == "pyproject.toml" else "[[check]]"


def _table_label(path: str) -> str:
    return "[tool.plancheck]" if os.path.basename(path) == "pyproject.toml" else "the top level"


def read_table(path: str | os.PathLike[str]) -> dict[str, Json] | None:
    """The plancheck table of ``path``: ``[tool.plancheck]`` of a pyproject.toml, or a whole plancheck.toml.

    ``None`` when a pyproject.toml has no ``[tool.plancheck]``.
    """
    path = os.fspath(path)
    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError("reading TOML on Python 3.10 needs the 'tomli' package", path=path)
    try:
        with open(path, "rb") as fh:
            data = _toml.load(fh)
    except FileNotFoundError as e:
        raise ConfigError("not found", path=path) from e
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path=path) from e
    except _toml.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}", path=path) from e
    if os.path.basename(path) != "pyproject.toml":
        return data
    tool = data.get("tool")
    table = tool.get("plancheck") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.plancheck] must be a table, got {_kind(table)}", path=path)
    return table


def declares_checks(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a plancheck.toml, or a pyproject.toml with a ``[tool.plancheck]`` table.

    A file that cannot be parsed counts as declaring checks, so that collecting it
    reports the error.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    if os.path.basename(path) != "pyproject.toml":
        return True
    try:
        return read_table(path) is not None
    except ConfigError:
        return True


def load_checks(path: str | os.PathLike[str]) -> list[CheckSpec]:
    """Read and validate the declared checks of ``path``; expand globs relative to it.

    Raises :class:`ConfigError` with a one-line message naming the file and entry.
    """
    path = os.path.abspath(os.fspath(path))
    table = read_table(path)
    if table is None:
        return []
    base = os.path.dirname(path)
    entries = table.get("check", [])
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(f"'check' in {_table_label(path)} must be an array of tables, got {_kind(entries)}",
                          path=path)
    defaults = {k: v for k, v in table.items() if k != "check"}
    for key in ("source", "targets", "target"):
        if key in defaults:
            raise ConfigError(f"'{key}' belongs in a {_entry_label(path)} entry, not in {_table_label(path)}",
                              path=path)
    specs: list[CheckSpec] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{_entry_label(path)} #{index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table, got {_kind(entry)}", path=path)
        specs.extend(_load_entry({**defaults, **entry}, path, base, index, where))
    return specs


def _load_entry(entry: dict[str, Json], path: str, base: str, index: int, where: str) -> list[CheckSpec]:
    fields: dict[str, Json] = {}
    options: dict[str, Json] = {}
    for key, value in entry.items():
        canonical = _ENTRY_KEYS.get(key)
        if canonical is None:
            options[key.replace("-", "_")] = value
            continue
        if canonical in fields:
            raise ConfigError(f"{where}: give '{canonical}' once (it is also spelt '{key}')", path=path)
        fields[canonical] = value
    if "source" not in fields:
        raise ConfigError(f"{where}: 'source' is required", path=path)
    if "targets" not in fields:
        raise ConfigError(f"{where}: 'targets' is required", path=path)
    source = fields["source"]
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}: 'source' must be a non-empty string, got {_kind(source)}", path=path)
    targets = _strings(fields["targets"], "targets", where, path)
    configurations = _strings(fields.get("configurations", list(DEFAULT_CONFIGURATIONS)), "configurations",
                              where, path)
    for key, value in list(options.items()):
        if key.endswith(_PATH_OPTION_SUFFIXES) and value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: '{key}' must be a path (a string), got {_kind(value)}", path=path)
            resolved = _resolve(value, base)
            if not os.path.exists(resolved):
                raise ConfigError(f"{where}: {key} '{value}': no such file or directory (relative to {base})",
                                  path=path)
            options[key] = resolved
        elif key == "format" and value not in ("text", "json", "markdown"):
            raise ConfigError(f"{where}: 'format' must be one of text, json, markdown, got {value!r}", path=path)
        elif isinstance(value, list):
            options[key] = tuple(value)
    expanded_targets: list[str] = []
    for target in targets:
        for match in _expand(target, base, "target", where, path):
            if match not in expanded_targets:
                expanded_targets.append(match)
    frozen_options = MappingProxyType(options)
    return [
        CheckSpec(
            source=src,
            targets=tuple(expanded_targets),
            configurations=tuple(dict.fromkeys(configurations)),
            options=frozen_options,
            declared_in=path,
            entry=index,
        )
        for src in _expand(source, base, "source", where, path)
    ]


def _strings(value: Json, key: str, where: str, path: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: '{key}' must be a string or a list of non-empty strings, got {_kind(value)}",
                          path=path)
    if not value:
        raise ConfigError(f"{where}: '{key}' is empty", path=path)
    return list(value)


def _resolve(value: str, base: str) -> str:
    expanded = os.path.expanduser(value)
    return os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(base, expanded))


def is_dataset_id(value: str) -> bool:
    """``"996"`` or ``"Dataset996_Name"``: resolved through nnU-Net's folders, not the file system."""
    return is_dataset_ref(value)


def _expand(value: str, base: str, what: str, where: str, path: str) -> list[str]:
    resolved = _resolve(value, base)
    if _GLOB_CHARS.search(value):
        matches = sorted(os.path.normpath(m) for m in glob.glob(resolved, recursive=True))
        if not matches:
            raise ConfigError(f"{where}: {what} '{value}' matches no file (relative to {base})", path=path)
        return matches
    if os.path.exists(resolved):
        return [resolved]
    if is_dataset_id(value):
        return [value]
    raise ConfigError(f"{where}: {what} '{value}': no such file or directory (relative to {base})", path=path)


def _kind(value: Json) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


# --------------------------------------------------------------------------- names and configurations


@functools.lru_cache(maxsize=256)
def _read_plans_json(path: str) -> dict[str, Json] | None:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _plans_json_of(entry: str, plans_identifier: str | None = None) -> str | None:
    """The plans JSON an entry stands for: itself, a preprocessed folder's ``<plans_identifier>.json``
    (when one is given), or a model folder's ``plans.json`` (the order
    :func:`plancheck.inputs.sources.resolve_target` uses)."""
    if os.path.isfile(entry) and entry.endswith(".json"):
        return entry
    if os.path.isdir(entry):
        names = ([f"{plans_identifier}.json"] if plans_identifier else []) + ["plans.json"]
        for name in names:
            candidate = os.path.join(entry, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def _dataset_plans_json(entry: str, plans_identifier: str) -> str | None:
    """A target dataset ID's plans, found by nnU-Net's own lookup (no torch); ``None`` when it does not resolve."""
    from plancheck.errors import PlancheckError
    from plancheck.inputs.locations import dataset_name

    try:
        _, folder = dataset_name(entry, var="nnUNet_preprocessed", purpose="collecting declared checks")
    except PlancheckError:
        return None  # the check itself reports it, with the folder it tried
    path = os.path.join(folder, f"{plans_identifier}.json")
    return path if os.path.isfile(path) else None


def available_configurations(entry: str, *, plans_identifier: str | None = None) -> frozenset[str] | None:
    """The configurations of a plans file, model folder, or (given ``plans_identifier``: as a target) a
    preprocessed folder or dataset ID; ``None`` where they are not known cheaply."""
    plans_path = _plans_json_of(entry, plans_identifier)
    if plans_path is None and plans_identifier and not os.path.exists(entry) and is_dataset_id(entry):
        plans_path = _dataset_plans_json(entry, plans_identifier)
    if plans_path is None:
        return None
    data = _read_plans_json(plans_path)
    configs = None if data is None else data.get("configurations")
    return frozenset(configs) if isinstance(configs, dict) else None


def display_name(entry: str) -> str:
    """A readable name for a source or target: ``Dataset901_CTIsotropic``, ``Dataset996``,
    ``Dataset901_CTIsotropic/nnUNetResEncUNetMPlans`` (plans that are not the default)."""
    if not os.path.exists(entry) and is_dataset_id(entry):
        return display_id(entry)
    path = os.path.abspath(entry)
    stem, ext = os.path.splitext(os.path.basename(path))
    suffix = f"/{stem}" if ext == ".json" and stem not in _DEFAULT_PLANS_STEMS else ""
    parts = path.split(os.sep)
    for part in reversed(parts):
        if _DATASET_DIR.match(part):
            return part + suffix
    plans_path = _plans_json_of(path)
    data = None if plans_path is None else _read_plans_json(plans_path)
    dataset_name = None if data is None else data.get("dataset_name")
    if isinstance(dataset_name, str) and dataset_name:
        return dataset_name + suffix
    if os.path.isdir(path):
        return os.path.basename(path) or path
    parent = os.path.basename(os.path.dirname(path))
    if ext == ".json":
        return (parent or stem) + suffix
    return f"{parent}/{stem}" if parent else stem


def plan_cases(specs: t.Iterable[CheckSpec]) -> tuple[list[CheckCase], list[NotCollected]]:
    """Every source/target/configuration combination to check, and those left out.

    A combination is left out when a side's plans are readable and lack the
    configuration (for the target: ``target_configuration`` if given). Names are
    unique: a repeated one gets ``#2``, ``#3`` inside the brackets.
    """
    cases: list[CheckCase] = []
    skipped: list[NotCollected] = []
    seen: dict[str, int] = {}
    for spec in specs:
        source_name = display_name(spec.source)
        source_configs = available_configurations(spec.source)
        target_configuration = spec.options.get("target_configuration")
        target_plans = str(spec.options.get("target_plans_identifier") or spec.options.get("plans_identifier")
                           or "nnUNetPlans")
        for target in spec.targets:
            target_name = display_name(target)
            target_configs = available_configurations(target, plans_identifier=target_plans)
            for configuration in spec.configurations:
                tc = target_configuration or configuration
                bracket = configuration if tc == configuration else f"{configuration}->{tc}"
                name = f"{source_name}->{target_name}[{bracket}]"
                reason = None
                if source_configs is not None and configuration not in source_configs:
                    reason = f"source {source_name} has no configuration '{configuration}'"
                    reason += f" (has: {', '.join(sorted(source_configs))})"
                elif target_configs is not None and tc not in target_configs:
                    reason = f"target {target_name} has no configuration '{tc}'"
                    reason += f" (has: {', '.join(sorted(target_configs))})"
                if reason is not None:
                    skipped.append(NotCollected(name, reason, spec.declared_in))
                    continue
                count = seen.get(name, 0) + 1
                seen[name] = count
                if count > 1:
                    name = f"{name[:-1]}#{count}]"
                cases.append(CheckCase(name, spec.source, target, configuration, spec.options, spec))
    return cases, skipped


def check_kwargs(case: CheckCase) -> dict[str, Json]:
    """The keyword arguments of :func:`plancheck.check` for ``case`` (render options removed)."""
    return {k: v for k, v in case.options.items() if k not in RENDER_OPTIONS}


def validate_options(specs: t.Iterable[CheckSpec], parameters: t.Mapping[str, t.Any]) -> None:
    """Reject options that ``check()`` does not take (``parameters``: its signature's parameters).

    A string given for a parameter whose default is a tuple (``allow_import``) must be a list.
    """
    valid = {name for name in parameters if name not in ("source", "target", "configuration")}
    for spec in specs:
        for key, value in spec.options.items():
            if key in RENDER_OPTIONS:
                continue
            if key not in valid:
                names = ", ".join(sorted(valid | RENDER_OPTIONS))
                raise ConfigError(f"{spec.where}: unknown option '{key}'; valid options: {names}")
            default = getattr(parameters[key], "default", None)
            if isinstance(default, tuple) and isinstance(value, str):
                raise ConfigError(f"{spec.where}: '{key}' must be a list of strings, got {_kind(value)}")

