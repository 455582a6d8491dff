"""Every error kind in plancheck.errors (issue 17, item 6) and an exit code per meaning (item 8)."""
from __future__ import annotations

import json
import re
import shutil

import pytest

import plancheck
import plancheck.errors as errors
from conftest import ROOT, fixture
from plancheck.errors import ExitCode, PlancheckError


def test_every_error_class_of_the_package_lives_in_errors():
    """No module under plancheck defines a public exception class of its own (a private control-flow
    signal such as nnssl's ``_Fails`` never leaves its module)."""
    defined = []
    for path in (ROOT / "plancheck").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for match in re.finditer(r"^class (\w+)\((?:[\w.]*(?:Error|Exception|Exists|Refused|Option|Unfixable)[\w.]*)",
                                 path.read_text(), re.M):
            if not match.group(1).startswith("_"):
                defined.append(f"{path.relative_to(ROOT)}:{match.group(1)}")
    assert defined == []


def test_every_documented_error_name_exists_and_is_exported():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Error kinds"):]
    section = section[:section.index("\n### ", 5)]
    documented = set(re.findall(r"`plancheck\.errors\.(\w+)`", section))
    assert documented == set(errors.__all__)
    for name in errors.__all__:
        assert hasattr(errors, name)


def test_readme_names_resolve():
    """The README once pointed at plancheck.check.UnknownOption, which raised AttributeError."""
    readme = (ROOT / "README.md").read_text()
    for dotted in set(re.findall(r"`(plancheck\.\w+\.\w+)`", readme)):
        module, name = dotted.rsplit(".", 1)
        if module == "plancheck.errors":
            assert hasattr(errors, name), dotted


def test_unknown_option_is_usage_and_type_error():
    with pytest.raises(errors.UnknownOption) as info:
        plancheck.check(fixture("Dataset901_CTIsotropic"), fixture("Dataset907_CTIsotropicOther"), no_such=1)
    assert isinstance(info.value, TypeError) and info.value.exit_code == ExitCode.USAGE


def test_old_import_places_still_work():
    from plancheck.inputs.declared import ConfigError
    from plancheck.remedies.fix import OutputExists as FixOutputExists
    from plancheck.remedies.fix import Unfixable
    from plancheck.transfer import OutputExists as TransferOutputExists
    from plancheck.transfer import VerifyError

    assert FixOutputExists is TransferOutputExists is errors.OutputExists
    assert Unfixable is errors.Unfixable and ConfigError is errors.ConfigError
    assert VerifyError is errors.ReadBackError


def test_exit_codes_are_distinct_and_documented():
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Exit codes"):readme.index("### Safety")]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", table, re.M), code
    assert ExitCode.READ_BACK != ExitCode.INTERNAL


def test_fix_read_back_failure_is_exit_5_and_writes_nothing(tmp_path, run_cli, monkeypatch):
    """--fix re-reads the file it wrote; plans that do not load never take their name (issue 17, item 8)."""
    import plancheck.remedies.fix as fix

    target = tmp_path / "Dataset902_CTAnisotropic"
    shutil.copytree(fixture("Dataset902_CTAnisotropic").parent, target)
    before = sorted(p.name for p in target.iterdir())
    original = (target / "nnUNetPlans.json").read_text()
    # the fix's text, damaged as a bug would damage it: the target's own (incompatible) plans
    monkeypatch.setattr(fix.FixResult, "new_text", lambda self: original)
    code, out, err = run_cli("check", fixture("Dataset901_CTIsotropic"), target / "nnUNetPlans.json", "--fix")
    assert code == int(ExitCode.READ_BACK), err
    line = err.strip().splitlines()[-1]
    assert "read-back check" in line and "nothing was written" in line
    assert sorted(p.name for p in target.iterdir()) == before


def test_internal_error_is_exit_4(run_cli, monkeypatch):
    import importlib

    check_module = importlib.import_module("plancheck.check")  # plancheck.check is also the function

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(check_module, "prepare_source", boom)
    code, _, err = run_cli("check", fixture("Dataset901_CTIsotropic"), fixture("Dataset907_CTIsotropicOther"))
    assert code == int(ExitCode.INTERNAL) == 4 and "internal error" in err


def test_plancheck_errors_are_plancheck_errors():
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and name != "PathSyntaxError":
            assert issubclass(obj, PlancheckError), name
            assert isinstance(obj.exit_code, ExitCode), name
    json.dumps({n: int(getattr(errors, n).exit_code) for n in errors.__all__
                if n not in ("ExitCode", "PathSyntaxError")})


def test_with_flags_maps_known_parameters_and_keeps_the_others():
    from plancheck.cli.main import with_flags

    flags = {"channel_map": "--channel-map", "strategy": "--strategy"}
    message = "`channel_map` needs `strategy` adapt; `seed` stays; `Not_a_name` too"
    assert with_flags(message, flags) == "--channel-map needs --strategy adapt; `seed` stays; `Not_a_name` too"


def test_python_callers_are_told_parameters_and_the_command_line_flags(run_cli):
    small = fixture("Dataset906_SmallImages")
    with pytest.raises(errors.UsageError) as caught:
        plancheck.verify(small, small, device="gpu")
    assert str(caught.value) == "`device` 'gpu': expected cpu, cuda, cuda:N or meta"
    code, out, err = run_cli("verify", small, small, "--device", "gpu")
    assert code == 2 and err.strip() == "plancheck: error: --device 'gpu': expected cpu, cuda, cuda:N or meta"
    code, out, err = run_cli("verify", small, small, "--device", "cpu", "--gpu-memory", "8")
    assert code == 2 and "--gpu-memory needs --device cuda" in err and "`" not in err


def _core_modules() -> list:
    package = ROOT / "plancheck"
    front = {package / "cli", package / "render"}
    return [p for p in sorted(package.rglob("*.py"))
            if not any(f in p.parents for f in front) and p.name != "pytest_plugin.py"]


def test_core_error_messages_name_parameters_not_flags():
    """Every raise in the core that builds its message from a literal: no ``--flag`` in it (the CLI adds flags)."""
    import ast

    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    offenders, raises = [], 0
    for path in _core_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
                continue
            raises += 1
            text = "".join(part.value for part in ast.walk(node.exc.args[0])
                           if isinstance(part, ast.Constant) and isinstance(part.value, str))
            if flag.search(text):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:80]}")
    assert raises > 50  # the scan sees the core's raises
    assert offenders == []
