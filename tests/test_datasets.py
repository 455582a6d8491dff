"""One dataset-ID grammar, nnU-Net's (issue 17, item 7), on the command line and in [tool.plancheck]."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES, fixture
from plancheck.inputs.declared import display_name, is_dataset_id
from plancheck.inputs.datasets import command_id, dataset_number, is_dataset_ref
from plancheck.inputs.locations import looks_like_dataset_id

# what nnU-Net's maybe_convert_to_dataset_name does with each: a name (as is), an ID (int), or neither
GRAMMAR = {
    "5": "id", "005": "id", "996": "id", "1234": "id", "12345": "id",
    "Dataset005": "name", "Dataset005_Liver": "name", "Dataset12345_Big": "name", "Dataset996": "name",
    "Task005_Liver": None, "abc": None, "": None, "plans.json": None,
}


def _nnunet_kind(text: str) -> str | None:
    """Ask nnU-Net itself: a name passes through, an integer is looked up (and, here, not found)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return "name" if maybe_convert_to_dataset_name(text) == text else "id"
    except ValueError:  # "did not start with 'Dataset' so we tried to convert it to a dataset ID (int)"
        return None
    except RuntimeError:  # an integer, looked up as "Dataset%03.0d" and not found
        return "id"


@pytest.mark.parametrize("text", sorted(GRAMMAR))
def test_grammar_agrees_with_nnunet(text, monkeypatch, tmp_path):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path))
    assert _nnunet_kind(text) == GRAMMAR[text]
    expected = GRAMMAR[text] is not None
    assert is_dataset_ref(text) is expected
    assert is_dataset_id(text) is expected  # [tool.plancheck]
    assert looks_like_dataset_id(text) is expected  # the command line (no such path here)


def test_paths_are_not_dataset_ids():
    for text in ("Dataset005_Liver/nnUNetPlans.json", "./5", "+5", " 5", "5_0"):
        assert not is_dataset_ref(text) and not is_dataset_id(text) and not looks_like_dataset_id(text)


def test_command_ids_read_every_digit():
    assert dataset_number("Dataset12345_Big") == 12345
    assert command_id("Dataset005_Liver") == "5"
    assert command_id("Dataset12345_Big") == "12345"
    assert command_id(None) == command_id("my_dataset") == "DATASET_ID"
    assert display_name("12345") == "Dataset12345"
    assert display_name("5") == "Dataset005"


@pytest.fixture
def big_id(tmp_path, monkeypatch):
    pre = tmp_path / "preprocessed"
    shutil.copytree(FIXTURES / "Dataset907_CTIsotropicOther", pre / "Dataset12345_Big")
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return pre / "Dataset12345_Big"


def test_five_digit_id_on_the_command_line(big_id, run_cli):
    code, out, err = run_cli("check", str(fixture("Dataset901_CTIsotropic")), "12345", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["target"]["kind"] == "dataset"
    assert d["target"]["details"]["dataset"] == "Dataset12345_Big"


def test_printed_commands_name_a_five_digit_dataset(big_id, run_cli, tmp_path):
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    source = fixture("Dataset902_CTAnisotropic")
    plans = big_id / "nnUNetPlans.json"
    data = json.loads(plans.read_text())
    data["dataset_name"] = "Dataset12345_Big"
    plans.write_text(json.dumps(data))
    code, out, err = run_cli("check", str(source), "12345", "--fix", "--format", "json")
    assert code == 0, err
    commands = json.loads(out)["fix"]["commands"]
    assert any(c.startswith("nnUNetv2_train 12345 ") for c in commands), commands
    assert any(c.startswith("nnUNetv2_preprocess -d 12345 ") for c in commands), commands
    # and nnU-Net resolves what was printed to this dataset
    assert maybe_convert_to_dataset_name(12345) == "Dataset12345_Big"
