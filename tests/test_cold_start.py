"""What a first check costs: the command defers nnU-Net's image I/O, nothing else changes anyone's imports.

The ``plancheck`` process answers imports of nnU-Net's reader/writer registry and acvl_utils'
bounding boxes with stand-ins (plancheck/cli/defer.py) that import the real module when a code
path uses it. These tests run the command in a fresh interpreter and read ``sys.modules``
afterwards; they time nothing (``make bench`` does).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT, fixture, load

pytest_plugins = ["pytester"]

RESENC_A = fixture("Dataset901_CTIsotropic", "nnUNetResEncUNetLPlans")
RESENC_B = fixture("Dataset902_CTAnisotropic", "nnUNetResEncUNetLPlans")

#: What nnU-Net's image I/O and acvl_utils' cropping import, and what deepdiff imported for the diff.
IMAGE_IO = ("SimpleITK", "skimage", "nibabel", "tifffile", "blosc2")
NOT_ON_THE_CHECK_PATH = (*IMAGE_IO, "pandas", "deepdiff", "nnunetv2.imageio.simpleitk_reader_writer")

#: Runs the plancheck program (main() reading sys.argv, as the console script does) in this
#: interpreter, then writes its exit code and what it imported to the file named by argv[1].
_PROGRAM = r"""
import json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["plancheck", *args]
from plancheck.cli import main
try:
    main()
except SystemExit as e:
    code = e.code
from plancheck.cli.defer import is_deferred
registry = sys.modules.get("nnunetv2.imageio.reader_writer_registry")
with open(out, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules),
               "registry_deferred": is_deferred("nnunetv2.imageio.reader_writer_registry"),
               "registry_is_real": registry is not None and "LIST_OF_IO_CLASSES" in vars(registry)}, fh)
"""


def run_program(tmp_path: pathlib.Path, *args: object) -> tuple[dict, str, str]:
    out = tmp_path / "program.json"
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(out), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert out.is_file(), done.stderr
    return json.loads(out.read_text()), done.stdout, done.stderr


def test_check_command_defers_image_io_and_reports_what_the_api_reports(tmp_path):
    from plancheck import check

    result, out, err = run_program(tmp_path, "check", RESENC_A, RESENC_B, "--format", "json")
    modules = set(result["modules"])
    assert result["code"] == 1, err  # ResEnc-L 901 -> 902: incompatible
    # nnU-Net's own plans and label code ran: the deferral stood in for its image I/O only
    assert {"nnunetv2.utilities.plans_handling.plans_handler", "nnunetv2.utilities.label_handling.label_handling",
            "dynamic_network_architectures.architectures.unet", "torch"} <= modules
    assert result["registry_deferred"] and not result["registry_is_real"]
    assert [m for m in NOT_ON_THE_CHECK_PATH if m in modules] == []
    # the same report as the Python API, where nothing is deferred
    assert json.loads(out) == json.loads(json.dumps(check(RESENC_A, RESENC_B).to_dict()))


def test_diff_command_imports_neither_torch_nor_pandas(tmp_path):
    result, out, err = run_program(tmp_path, "diff", RESENC_A, RESENC_B)
    assert result["code"] == 1, err
    assert "architecture" in out
    assert [m for m in ("torch", "nnunetv2", "pandas", "deepdiff", "numpy") if m in result["modules"]] == []


def test_fix_move_reads_nnunets_reader_writer_registry_when_it_needs_it(tmp_path):
    """--strategy move asks nnU-Net which reader/writer the target's file_ending takes: the real registry."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

    target = pathlib.Path(shutil.copytree(FIXTURES / "Dataset902_CTAnisotropic", tmp_path / "Dataset902_CTAnisotropic"))
    plans = load(target / "nnUNetPlans.json")
    del plans["image_reader_writer"]  # nothing left to read it from but dataset.json's file_ending
    (target / "nnUNetPlans.json").write_text(json.dumps(plans, indent=4))
    ending = load(target / "dataset.json")["file_ending"]
    expected = determine_reader_writer_from_file_ending(ending, None, False, verbose=False).__name__

    result, out, err = run_program(tmp_path, "check", fixture("Dataset901_CTIsotropic"), target / "nnUNetPlans.json",
                                   "--fix", "--strategy", "move")
    assert result["code"] == 0, err
    written = load(target / "nnUNetPlans_from_Dataset901_CTIsotropic.json")
    assert written["image_reader_writer"] == expected
    assert f"image_reader_writer {expected}: the first nnU-Net reader for {ending}" in out
    assert result["registry_is_real"] and not result["registry_deferred"]
    assert "SimpleITK" in result["modules"]  # the registry's readers came with it


def test_dataset_id_target_through_the_command(tmp_path):
    """A dataset ID goes through nnU-Net's own name conversion, under the deferral."""
    preprocessed = tmp_path / "preprocessed"
    shutil.copytree(FIXTURES / "Dataset902_CTAnisotropic", preprocessed / "Dataset902_CTAnisotropic")
    script_env = {"nnUNet_preprocessed": str(preprocessed)}
    out = tmp_path / "program.json"
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(out), "check", fixture("Dataset901_CTIsotropic"), "902",
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, **script_env})
    result = json.loads(out.read_text())
    assert result["code"] == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["target"]["kind"] == "dataset"
    assert report["target"]["plans"].endswith("Dataset902_CTAnisotropic/nnUNetPlans.json")
    assert [m for m in IMAGE_IO if m in result["modules"]] == []


def test_deferred_names_are_functions_of_the_real_modules():
    """A stand-in forwards these names as functions: nnU-Net must still define them as such."""
    script = (
        "import importlib, inspect, sys\n"
        "from plancheck.cli.defer import DEFERRED\n"
        "bad = [(m, n) for m, names in DEFERRED.items() for n in names\n"
        "       if not inspect.isfunction(getattr(importlib.import_module(m), n, None))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr


def test_a_stand_in_becomes_the_real_module_on_first_use():
    script = (
        "import gc, sys\n"
        "from plancheck.cli.defer import defer, is_deferred\n"
        "defer()\n"
        "from nnunetv2.utilities.plans_handling import plans_handler\n"
        "import nnunetv2.imageio\n"
        "name = 'nnunetv2.imageio.reader_writer_registry'\n"
        "stand_in = sys.modules[name]\n"
        "assert is_deferred(name) and 'SimpleITK' not in sys.modules\n"
        "assert nnunetv2.imageio.reader_writer_registry is stand_in\n"
        "assert gc.get_freeze_count() > 0\n"
        "import inspect; inspect.getmodule(inspect)  # walks sys.modules: must not import the real one\n"
        "assert is_deferred(name)\n"
        "rw = plans_handler.recursive_find_reader_writer_by_name('SimpleITKIO')  # a forwarder: the real one runs\n"
        "real = sys.modules[name]\n"
        "assert real is not stand_in and not is_deferred(name) and 'SimpleITK' in sys.modules\n"
        "assert nnunetv2.imageio.reader_writer_registry is real\n"
        "assert rw is real.SimpleITKIO and stand_in.LIST_OF_IO_CLASSES is real.LIST_OF_IO_CLASSES\n"
        "from nnunetv2.imageio.reader_writer_registry import LIST_OF_IO_CLASSES\n"
        "assert LIST_OF_IO_CLASSES is real.LIST_OF_IO_CLASSES\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr


def test_import_plancheck_and_the_api_leave_the_users_imports_alone():
    """Outside the plancheck program nothing is deferred: the user gets nnU-Net's real modules."""
    script = (
        "import gc, sys, types\n"
        "import plancheck, plancheck.pytest_plugin, plancheck.cli\n"
        f"report = plancheck.check({str(RESENC_A)!r}, {str(RESENC_B)!r})\n"
        "assert not report.compatible\n"
        "assert not any(type(f).__module__.startswith('plancheck') for f in sys.meta_path)\n"
        "assert gc.get_freeze_count() == 0\n"
        "from nnunetv2.imageio import reader_writer_registry as registry\n"
        "from nnunetv2.utilities.plans_handling import plans_handler\n"
        "assert type(registry) is types.ModuleType and 'LIST_OF_IO_CLASSES' in vars(registry)\n"
        "assert plans_handler.recursive_find_reader_writer_by_name is registry.recursive_find_reader_writer_by_name\n"
        "import SimpleITK, nibabel, acvl_utils.cropping_and_padding.bounding_boxes as bb\n"
        "assert SimpleITK.Image and nibabel.load and type(bb) is types.ModuleType and 'blosc2' in vars(bb)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr


def test_cli_called_from_python_defers_nothing(run_cli):
    """main(argv) from someone's process (here pytest's) is not the plancheck program: nothing deferred."""
    import gc

    frozen = gc.get_freeze_count()
    code, _, err = run_cli("check", RESENC_A, RESENC_B)
    assert code == 1, err
    assert not any(type(f).__module__.startswith("plancheck") for f in sys.meta_path)
    assert gc.get_freeze_count() == frozen
    registry = sys.modules["nnunetv2.imageio.reader_writer_registry"]
    assert "LIST_OF_IO_CLASSES" in vars(registry)


def test_the_pytest_plugin_leaves_the_users_imports_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=f"""
        import sys, types

        def test_check_then_import_nnunet(plancheck):
            plancheck.assert_incompatible({str(RESENC_A)!r}, {str(RESENC_B)!r})
            from nnunetv2.imageio import reader_writer_registry as registry
            from nnunetv2.utilities.plans_handling import plans_handler
            assert type(registry) is types.ModuleType and "LIST_OF_IO_CLASSES" in vars(registry)
            assert plans_handler.recursive_find_reader_writer_by_name is registry.recursive_find_reader_writer_by_name
            import SimpleITK
            assert SimpleITK.Image
            assert not any(type(f).__module__.startswith("plancheck") for f in sys.meta_path)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1)


# --- jsondiff: the comparison that replaced deepdiff ----------------------------------------------------------------

def test_jsondiff_kinds():
    from plancheck.compare.jsondiff import differences

    def d(a, b):
        return list(differences(a, b))

    assert d({"a": 1}, {"a": 1.0}) == []  # the same spacing
    assert d({"a": True}, {"a": 1}) == []  # Python's (and deepdiff's) numbers
    assert d({"a": math.nan}, {"a": math.nan}) == []
    assert d({"a": 1}, {"a": 1.5}) == [(("a",), "changed")]
    assert d({"a": None}, {"a": 1}) == [(("a",), "type_changed")]
    assert d({"a": [1]}, {"a": {"x": 1}}) == [(("a",), "type_changed")]
    assert d({"a": "x"}, {"a": 1}) == [(("a",), "type_changed")]
    assert d({"a": 1, "b": 2}, {"b": 2, "c": 3}) == [(("a",), "removed"), (("c",), "added")]
    assert d({"a": [1, 2]}, {"a": [1, 2, 3]}) == [(("a",), "changed")]  # another depth: the whole list
    assert d([{"a": [[1, 3], [3, 3]]}], [{"a": [[1, 3], [3, 1]]}]) == [((0, "a", 1, 1), "changed")]
    # by index: a list position is a stage, an axis or a channel
    assert d({"f": [32, 64, 128]}, {"f": [64, 128, 256]}) == [(("f", i), "changed") for i in range(3)]


@pytest.mark.parametrize("kind", ["plans", "dataset.json"])
def test_plans_diff_finds_what_deepdiff_found_on_every_fixture_pair(kind):
    """Differential: the old deepdiff-based comparison and jsondiff agree on every pair of fixture files."""
    from deepdiff import DeepDiff

    from plancheck.compare.plansdiff import _collapse, _differences, _order_key

    report_kinds = {"values_changed": "changed", "type_changes": "type_changed", "dictionary_item_added": "added",
                    "iterable_item_added": "added", "dictionary_item_removed": "removed",
                    "iterable_item_removed": "removed"}

    def with_deepdiff(a, b):
        tree = DeepDiff(a, b, view="tree", ignore_numeric_type_changes=True, threshold_to_diff_deeper=0,
                        verbose_level=2)
        found: dict = {}
        for report_type, levels in tree.items():
            for level in levels:
                path, k = _collapse(a, b, tuple(level.path(output_format="list")), report_kinds[report_type])
                found.setdefault(path, k)
        return sorted(found.items(), key=lambda item: _order_key(a, b, item[0]))

    pattern = "*/dataset.json" if kind == "dataset.json" else "*/*Plans*.json"
    files = sorted(FIXTURES.glob(pattern))
    data = [load(p) for p in files]
    assert len(data) > 5
    pairs = 0
    for i, a in enumerate(data):
        for b in data[i + 1:]:
            assert _differences(a, b) == with_deepdiff(a, b)
            pairs += 1
    assert pairs == len(data) * (len(data) - 1) // 2


def test_no_runtime_module_imports_deepdiff():
    for path in (ROOT / "plancheck").glob("*.py"):
        source = path.read_text()
        assert "import deepdiff" not in source and "from deepdiff" not in source, path
