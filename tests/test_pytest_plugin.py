"""The pytest plugin, run as users run it: real pytest sessions on temporary projects (pytester).

Compatible pair: Dataset901 -> Dataset907 (same architecture, other labels).
Incompatible pair: Dataset901 -> Dataset902 (anisotropic: other kernel sizes and strides).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import xml.etree.ElementTree as ET

import pytest

from conftest import FIXTURES

pytest_plugins = ["pytester"]

DATASETS = (
    "Dataset901_CTIsotropic",
    "Dataset902_CTAnisotropic",
    "Dataset906_SmallImages",
    "Dataset907_CTIsotropicOther",
)
P901 = "plans/Dataset901_CTIsotropic/nnUNetPlans.json"
P902 = "plans/Dataset902_CTAnisotropic/nnUNetPlans.json"
P906 = "plans/Dataset906_SmallImages/nnUNetPlans.json"
P907 = "plans/Dataset907_CTIsotropicOther/nnUNetPlans.json"

ID_OK = "pyproject.toml::plancheck::Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres]"
ID_BAD = "pyproject.toml::plancheck::Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres]"
VERDICT_BAD = (
    "INCOMPATIBLE: nnU-Net's load_pretrained_weights would stop at encoder.stages.0.0.convs.0.conv.weight*"
)

DECLARED = f"""
[tool.pytest.ini_options]
testpaths = ["tests"]

[[tool.plancheck.check]]
source = "{P901}"
targets = ["plans/Dataset90[27]*/nnUNetPlans.json"]
configurations = ["3d_fullres"]
"""


@pytest.fixture(scope="module", autouse=True)
def _imports_before_inner_sessions():
    """Import torch, nnU-Net and the networks once, here, before any in-process inner session.

    pytester restores ``sys.modules`` after each in-process run, dropping what the run
    imported; torch's C extension cannot be imported a second time into one process.
    Hypothesis's pytest plugin imports hypothesis at the end of every session: importing
    it here too saves seconds per inner session.
    """
    import importlib

    from plancheck.check import check

    try:
        importlib.import_module("hypothesis.internal.observability")
    except ImportError:
        pass

    check(FIXTURES / "Dataset901_CTIsotropic" / "nnUNetPlans.json",
          FIXTURES / "Dataset902_CTAnisotropic" / "nnUNetPlans.json")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A temporary project holding a few fixture datasets under plans/, and one ordinary test."""
    for name in DATASETS:
        shutil.copytree(FIXTURES / name, pytester.path / "plans" / name)
    tests = pytester.mkdir("tests")
    (tests / "test_plain.py").write_text("def test_plain():\n    pass\n")
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    return pytester


def _preprocessed(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, folders: dict[str, str]) -> None:
    """$nnUNet_preprocessed under the project, holding fixture datasets (folder name -> fixture)."""
    preprocessed = project.path / "preprocessed"
    for name, fixture_name in folders.items():
        shutil.copytree(FIXTURES / fixture_name, preprocessed / name)
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed))


def esc(text: str) -> str:
    """``text`` as a literal fnmatch pattern (ids hold ``[configuration]``)."""
    return text.replace("[", "[[]")


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output
    assert "pytest_plugin.py" not in output
    assert "INTERNALERROR" not in output


# --------------------------------------------------------------------------- the fixture


def test_fixture_compatible_and_incompatible(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_pairs=f"""
        def test_compatible(plancheck):
            report = plancheck.assert_compatible("{P901}", "{P907}")
            assert report.compatible is True
            assert report.target.configuration == "3d_fullres"

        def test_incompatible(plancheck):
            plancheck.assert_compatible("{P901}", "{P902}", configuration="3d_fullres")
        """
    )
    result = project.runpytest("test_pairs.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_incompatible _*",
            VERDICT_BAD,
            "Root causes",
            "*configurations.3d_fullres.architecture.arch_kwargs.kernel_sizes*",
            "Tensors that do not load (all others: ok, or the head)",
        ]
    )
    out = result.stdout.str()
    _no_traceback(out)
    assert "plancheck.assert_compatible(" not in out  # pytrace=False: no source lines


def test_fixture_options_and_assert_incompatible(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_pairs=f"""
        import pytest
        from plancheck.errors import PlancheckError

        def test_expected_incompatible(plancheck):
            report = plancheck.assert_incompatible("{P901}", "{P902}")
            assert report.first_failure.key == "encoder.stages.0.0.convs.0.conv.weight"

        def test_other_target_configuration(plancheck):
            plancheck.assert_compatible("{P901}", "{P907}", configuration="3d_lowres",
                                        target_configuration="3d_lowres")

        def test_check_returns_report_and_raises_input_errors(plancheck):
            assert plancheck.check("{P901}", "{P902}").compatible is False
            with pytest.raises(PlancheckError, match="no configuration '3d_nope'"):
                plancheck.check("{P901}", "{P907}", configuration="3d_nope")

        def test_markdown_failure_text(plancheck):
            plancheck.assert_compatible("{P901}", "{P902}", format="markdown")

        def test_target_plans_identifier(plancheck):
            report = plancheck.assert_incompatible("{P906}", "plans/Dataset906_SmallImages",
                                                   target_plans_identifier="nnUNetResEncUNetMPlans")
            assert report.target.plans.endswith("nnUNetResEncUNetMPlans.json")
        """
    )
    result = project.runpytest("test_pairs.py")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_markdown_failure_text _*",
            VERDICT_BAD + esc("(Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres])"),
            "## plancheck",
            "### Root causes",
        ]
    )


def test_fixture_input_error_is_one_line(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_missing=f"""
        def test_missing(plancheck):
            plancheck.assert_compatible("plans/nope/nnUNetPlans.json", "{P907}")
        """
    )
    result = project.runpytest("test_missing.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["plancheck: error: plans/nope/nnUNetPlans.json: plans file not found"])
    out = result.stdout.str()
    _no_traceback(out)
    assert "direct cause" not in out and "During handling" not in out


def test_fixture_unknown_option_is_one_line(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_option=f"""
        import pytest
        from plancheck.errors import UsageError

        def test_typo(plancheck):
            plancheck.assert_compatible("{P901}", "{P907}", allow_imports=["x"])

        def test_typo_incompatible(plancheck):
            plancheck.assert_incompatible("{P901}", "{P902}", fromat="markdown")

        def test_check_raises_usage_error(plancheck):
            with pytest.raises(UsageError, match="unknown option 'fold_'"):
                plancheck.check("{P901}", "{P907}", fold_=0)
        """
    )
    result = project.runpytest("test_option.py")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "plancheck: error: unknown option 'allow_imports' for the plancheck fixture; valid options: "
        "allow_import, *, format, *problems_only*",
        "plancheck: error: unknown option 'fromat' for the plancheck fixture; valid options: *",
    ])
    out = result.stdout.str()
    _no_traceback(out)
    assert "TypeError" not in out


def test_failure_text_shows_swapped_channels_first(project: pytest.Pytester) -> None:
    """A pair that fails for other reasons still says, first among the warnings, that channels are swapped."""
    import json

    for folder in ("source", "target"):
        shutil.copytree(FIXTURES / "Dataset903_ProstateMRI", project.path / folder / "Dataset903_ProstateMRI")
    dj_path = project.path / "target" / "Dataset903_ProstateMRI" / "dataset.json"
    dj = json.loads(dj_path.read_text())
    dj["channel_names"] = {"0": "ADC", "1": "T2"}
    dj_path.write_text(json.dumps(dj))
    project.makepyfile(
        test_swap="""
        import pytest

        @pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
        def test_swap(plancheck, fmt):
            plancheck.assert_compatible("source/Dataset903_ProstateMRI/nnUNetPlans.json",
                                        "target/Dataset903_ProstateMRI/nnUNetResEncUNetMPlans.json", format=fmt)
        """
    )
    result = project.runpytest("test_swap.py")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert out.count("input channels differ by position (channel 0: T2 (ZScoreNormalization) in source, ADC") == 3
    result.stdout.fnmatch_lines(["Warnings", "- input channels differ by position*"])
    result.stdout.fnmatch_lines(["### Warnings", "", "- input channels differ by position*"])
    result.stdout.fnmatch_lines(['*"warnings": [*', '*"input channels differ by position*'])


# --------------------------------------------------------------------------- declared checks


def test_declared_in_pyproject(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(DECLARED)
    result = project.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)  # test_plain, 901->907; 901->902 fails
    result.stdout.fnmatch_lines_random(
        [
            "tests/test_plain.py::test_plain PASSED*",
            f"{esc(ID_OK)} PASSED*",
            f"{esc(ID_BAD)} FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            esc("*_ plancheck::Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres] _*"),
            VERDICT_BAD,
            "Root causes",
            "*arch_kwargs.kernel_sizes*",
            "*- plancheck -*",
            "2 checks: 1 compatible, 1 incompatible, 0 errors",
        ]
    )
    _no_traceback(result.stdout.str())


def test_declared_ids_and_marker(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(DECLARED)
    result = project.runpytest("--collect-only", "-q", "-m", "plancheck")
    result.stdout.fnmatch_lines([esc(ID_BAD), esc(ID_OK)])
    assert "test_plain" not in result.stdout.str()


def test_declared_in_plancheck_toml_relative_to_the_file(project: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    project.makefile(
        ".toml",
        plancheck=f"""
        configurations = ["3d_fullres"]          # a default for every [[check]]

        [[check]]
        source = "{P901}"
        targets = ["{P907}"]

        [[check]]
        source = "{P901}"
        target = "{P902}"
        """,
    )
    monkeypatch.chdir(project.path / "tests")  # paths resolve against plancheck.toml, not the working dir
    result = project.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            esc("*plancheck.toml::plancheck::Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres] PASSED*"),
            esc("*plancheck.toml::plancheck::Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres] FAILED*"),
        ]
    )


def test_items_only_where_the_configuration_exists(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(
        f"""
        [[tool.plancheck.check]]
        source = "{P901}"
        targets = ["{P907}", "{P906}"]
        configurations = ["3d_lowres"]
        """
    )
    result = project.runpytest("--collect-only", "-q", "pyproject.toml")
    result.stdout.fnmatch_lines(
        [
            esc("pyproject.toml::plancheck::Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_lowres]"),
            "*- plancheck -*",
            esc("not collected: Dataset901_CTIsotropic->Dataset906_SmallImages[3d_lowres]: "
                "target Dataset906_SmallImages has no configuration '3d_lowres' (has: 2d, 3d_fullres)"),
            "1 test collected*",
        ]
    )


def test_dataset_id_target_is_passed_to_the_check(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(
        f"""
        [[tool.plancheck.check]]
        source = "{P901}"
        targets = ["996"]
        """
    )
    result = project.runpytest("-v", "pyproject.toml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            esc("pyproject.toml::plancheck::Dataset901_CTIsotropic->Dataset996[3d_fullres] FAILED*"),
            "plancheck: error: *996*",
        ]
    )
    _no_traceback(result.stdout.str())


def test_dataset_id_and_folder_targets_without_the_configuration_are_not_collected(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _preprocessed(project, monkeypatch, {"Dataset906_SmallImages": "Dataset906_SmallImages",
                                         "Dataset907_CTIsotropicOther": "Dataset907_CTIsotropicOther"})
    project.makepyprojecttoml(
        f"""
        [[tool.plancheck.check]]
        source = "{P901}"
        targets = ["906", "907", "preprocessed/Dataset906_SmallImages"]
        configurations = ["3d_lowres"]
        """
    )
    result = project.runpytest("-v", "pyproject.toml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(
        [
            esc("pyproject.toml::plancheck::Dataset901_CTIsotropic->Dataset907[3d_lowres] PASSED*"),
            esc("not collected: Dataset901_CTIsotropic->Dataset906[3d_lowres]: "
                "target Dataset906 has no configuration '3d_lowres' (has: 2d, 3d_fullres)"),
            esc("not collected: Dataset901_CTIsotropic->Dataset906_SmallImages[3d_lowres]: "
                "target Dataset906_SmallImages has no configuration '3d_lowres' (has: 2d, 3d_fullres)"),
        ]
    )


@pytest.mark.parametrize("args", [("--plancheck-only",), ("--plancheck-only", "tests", "pyproject.toml")])
def test_plancheck_only(project: pytest.Pytester, args: tuple[str, ...]) -> None:
    project.makepyprojecttoml(DECLARED)
    result = project.runpytest("-v", *args)
    result.assert_outcomes(passed=1, failed=1)
    assert "test_plain" not in result.stdout.str().replace("deselected", "")


@pytest.mark.parametrize("switch", [("-p", "no:plancheck"), ("--no-plancheck",)])
def test_disabled(project: pytest.Pytester, switch: tuple[str, ...]) -> None:
    project.makepyprojecttoml(DECLARED)
    result = project.runpytest("-v", *switch)
    result.assert_outcomes(passed=1)
    assert "plancheck::" not in result.stdout.str()


# --------------------------------------------------------------------------- broken configuration


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (f'source = "{P901}"\ntargets = ["plans/Dataset99*/nnUNetPlans.json"]',
         "*#1: target 'plans/Dataset99*/nnUNetPlans.json' matches no file (relative to *)"),
        ('source = "plans/missing/nnUNetPlans.json"\ntargets = ["996"]',
         "*#1: source 'plans/missing/nnUNetPlans.json': no such file or directory (relative to *)"),
        (f'source = "{P901}"\ntargets = 3', "*#1: 'targets' must be a string or a list of non-empty strings*"),
        (f'targets = ["{P907}"]', "*#1: 'source' is required"),
        (f'source = "{P901}"\ntargets = ["{P907}"]\nbogus_option = 1', "*#1: unknown option 'bogus_option'; valid*"),
        (f'source = "{P901}"\ntargets = ["{P907}"]\nformat = "html"', "*'format' must be one of*"),
    ],
    ids=["glob-matches-nothing", "missing-file", "bad-type", "no-source", "unknown-option", "bad-format"],
)
def test_broken_entry_is_a_collection_error(project: pytest.Pytester, entry: str, message: str) -> None:
    project.makepyprojecttoml(f"[[tool.plancheck.check]]\n{entry}\n")
    result = project.runpytest("pyproject.toml")
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting pyproject.toml*", f"plancheck: *pyproject.toml: {message}"])
    _no_traceback(result.stdout.str())


def test_invalid_toml_is_a_collection_error(project: pytest.Pytester) -> None:
    project.makefile(".toml", plancheck="[[check]]\nsource = \n")
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting plancheck.toml*", "plancheck: *plancheck.toml: invalid TOML: *"])
    _no_traceback(result.stdout.str())


# --------------------------------------------------------------------------- options, report file, header


def test_options_in_one_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "plancheck:*",
            "*--plancheck-only*",
            "*--no-plancheck*",
            "*--plancheck-format=text|markdown|json*",
            "*--plancheck-report=FILE*",
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plancheck-report", "out.txt"), "*--plancheck-report: FILE must end in .json, .md or .html*"),
        (("--plancheck-format", "html"), "*--plancheck-format: must be one of text, markdown, json*"),
        (("--plancheck-only", "--no-plancheck"), "*--plancheck-only and --no-plancheck contradict each other*"),
        (("--plancheck-only",), "*--plancheck-only: no checks declared in *"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_markdown_report_file(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(DECLARED)
    result = project.runpytest("--plancheck-only", "--plancheck-report", "out/plancheck.md")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["plancheck report written to *out*plancheck.md"])
    text = (project.path / "out" / "plancheck.md").read_text()
    assert "2 checks: 1 compatible, 1 incompatible, 0 errors." in text
    assert "| check | outcome | first failure |" in text
    assert "| `plancheck::Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres]` | ✅ compatible |" in text
    assert "❌ incompatible | `encoder.stages.0.0.convs.0.conv.weight` (shape:" in text
    assert "<details>" in text and "### Root causes" in text


def test_html_report_file(project: pytest.Pytester) -> None:
    """--plancheck-report FILE.html: one self-contained page, each check with both networks drawn."""
    project.makepyprojecttoml(DECLARED)
    result = project.runpytest("--plancheck-only", "--plancheck-report", "out/plancheck.html")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["plancheck report written to *out*plancheck.html"])
    text = (project.path / "out" / "plancheck.html").read_text()
    assert text.startswith("<!DOCTYPE html>") and "2 checks: 1 compatible, 1 incompatible, 0 errors." in text
    assert text.count('<svg xmlns="http://www.w3.org/2000/svg" class="unet"') == 2
    assert 'data-status="fails"' in text and "Root causes" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text


def test_report_header_and_plugin_load_without_torch(pytester: pytest.Pytester) -> None:
    """Every pytest run loads the plugin; with no checks to run it must not import torch or nnU-Net."""
    pytester.makepyfile(
        test_light="""
        import sys

        def test_plugin_is_loaded_and_torch_is_not(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("plancheck")
            assert "plancheck.pytest_plugin" in sys.modules
            heavy = [m for m in ("torch", "nnunetv2", "dynamic_network_architectures") if m in sys.modules]
            assert heavy == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plancheck: plancheck *, nnunetv2 *, dynamic_network_architectures *, torch *"])


def test_xdist_junit_and_json_report(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(
        DECLARED + f'\n[[tool.plancheck.check]]\nsource = "{P901}"\ntargets = ["{P906}"]\n'
        'configurations = ["3d_lowres"]\n'
    )
    (project.path / "tests" / "test_fixture.py").write_text(
        f"def test_fixture(plancheck):\n    plancheck.assert_compatible('{P901}', '{P907}')\n"
    )
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider",
        "-p", "no:hypothesispytest",  # each worker would import hypothesis under assertion rewriting: seconds
        "-n", "2", "--junitxml=junit.xml", "--plancheck-report=report.json",
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "created: 2/2 workers",
            "*- plancheck -*",
            "3 checks: 2 compatible, 1 incompatible, 0 errors",
            # collected on the workers, reported by the controller
            esc("not collected: Dataset901_CTIsotropic->Dataset906_SmallImages[3d_lowres]: *"),
        ]
    )

    suite = ET.parse(project.path / "junit.xml").getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    bad = cases["Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres]"]
    failure = bad.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith(
        "INCOMPATIBLE: nnU-Net's load_pretrained_weights would stop at encoder.stages.0.0.convs.0.conv.weight"
    )
    assert "Root causes" in (failure.text or "") and "kernel_sizes" in (failure.text or "")
    assert cases["Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres]"].find("failure") is None

    records = json.loads((project.path / "report.json").read_text())
    by_id = {r["id"]: r for r in records}
    assert set(by_id) == {
        "plancheck::Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres]",
        "plancheck::Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres]",
        "Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres]",  # from the fixture
    }
    bad_record = by_id["plancheck::Dataset901_CTIsotropic->Dataset902_CTAnisotropic[3d_fullres]"]
    assert bad_record["outcome"] == "incompatible" and bad_record["compatible"] is False
    assert bad_record["configuration"] == "3d_fullres" and bad_record["error"] is None
    assert bad_record["report"]["nnunet_first_failure"]["key"] == "encoder.stages.0.0.convs.0.conv.weight"
    assert bad_record["nodeid"] == ID_BAD
    fixture_record = by_id["Dataset901_CTIsotropic->Dataset907_CTIsotropicOther[3d_fullres]"]
    assert fixture_record["nodeid"] == "tests/test_fixture.py::test_fixture"
    assert fixture_record["outcome"] == "compatible" and fixture_record["report"]["compatible"] is True


# --------------------------------------------------------------------------- checks_config (no pytest session)


def test_checks_config_expands_globs_relative_to_the_file(tmp_path: pathlib.Path) -> None:
    from plancheck.inputs.declared import load_checks, plan_cases

    for name in DATASETS:
        shutil.copytree(FIXTURES / name, tmp_path / "plans" / name)
    (tmp_path / "plancheck.toml").write_text(
        f'[[check]]\nsource = "{P901}"\ntargets = ["plans/Dataset90*/nnUNetPlans.json", "996"]\n'
        'configurations = ["3d_fullres", "3d_lowres"]\nallow-import = ["mypkg"]\n'
    )
    (spec,) = load_checks(tmp_path / "plancheck.toml")
    assert spec.source == str(tmp_path / P901)
    assert spec.targets == (*(str(tmp_path / p) for p in (P901, P902, P906, P907)), "996")
    assert spec.options == {"allow_import": ("mypkg",)}
    cases, skipped = plan_cases([spec])
    names = [c.name for c in cases]
    assert "Dataset901_CTIsotropic->Dataset996[3d_lowres]" in names  # unknown configurations: collected
    assert "Dataset901_CTIsotropic->Dataset906_SmallImages[3d_fullres]" in names
    assert [s.name for s in skipped] == ["Dataset901_CTIsotropic->Dataset906_SmallImages[3d_lowres]"]


def test_display_names(tmp_path: pathlib.Path) -> None:
    from plancheck.inputs.declared import display_name

    assert display_name("996") == "Dataset996"
    assert display_name("Dataset996_Other") == "Dataset996_Other"
    assert display_name(str(FIXTURES / "Dataset901_CTIsotropic" / "nnUNetPlans.json")) == "Dataset901_CTIsotropic"
    assert (display_name(str(FIXTURES / "Dataset901_CTIsotropic" / "nnUNetResEncUNetMPlans.json"))
            == "Dataset901_CTIsotropic/nnUNetResEncUNetMPlans")
    model = tmp_path / "results" / "Dataset999_Pre" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
    model.mkdir(parents=True)
    (model / "checkpoint_final.pth").write_bytes(b"")
    assert display_name(str(model / "checkpoint_final.pth")) == "Dataset999_Pre"
    plans = tmp_path / "pretrained" / "plans.json"
    plans.parent.mkdir()
    plans.write_text(json.dumps({"dataset_name": "Dataset999_Pre", "configurations": {}}))
    assert display_name(str(plans)) == "Dataset999_Pre"


def test_five_digit_dataset_id_is_a_dataset_in_the_config_as_on_the_command_line(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``12345`` is a dataset ID to nnU-Net (``Dataset12345``), to the CLI and to [tool.plancheck]
    (issue 17, item 7)."""
    _preprocessed(project, monkeypatch, {"Dataset12345_Big": "Dataset907_CTIsotropicOther"})
    project.makepyprojecttoml(
        f"""
        [[tool.plancheck.check]]
        source = "{P901}"
        targets = ["12345"]
        configurations = ["3d_fullres"]
        """
    )
    result = project.runpytest("-v", "pyproject.toml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [esc("pyproject.toml::plancheck::Dataset901_CTIsotropic->Dataset12345[3d_fullres] PASSED*")])
