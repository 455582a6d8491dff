"""plan-pretraining (issue 20): groups against the distinct networks nnU-Net builds, every written plans file against
nnU-Net's own loader, merge costs against ``check --fix`` on the same pair, and the input and output rules.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import warnings

import pytest
import torch

from conftest import FIXTURES, load

SOURCE = "Dataset901_CTIsotropic"
#: fixture targets: 902 (anisotropic: other kernels and strides), 903 (2 channels), 904 (4 channels), 906 (small
#: images: fewer stages), 907/908 (the source's network), 901 itself, 901's ResEnc M plans (another class)
TARGETS = [("Dataset902_CTAnisotropic", "nnUNetPlans"), ("Dataset903_ProstateMRI", "nnUNetPlans"),
           ("Dataset904_BrainMRI", "nnUNetPlans"), ("Dataset906_SmallImages", "nnUNetPlans"),
           ("Dataset907_CTIsotropicOther", "nnUNetPlans"), ("Dataset908_CTIsotropicCropped", "nnUNetPlans"),
           (SOURCE, "nnUNetPlans"), (SOURCE, "nnUNetResEncUNetMPlans")]


def _nnunet_network(plans: dict, configuration: str, dataset_json: dict) -> torch.nn.Module:
    """The network nnU-Net's trainer builds, on the meta device (nnU-Net's own code, not plancheck's)."""
    from nnunet_oracle import build_real

    with torch.device("meta"), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_real(plans, configuration, dataset_json)


def _signature(network: torch.nn.Module) -> tuple:
    """What nnU-Net's load_pretrained_weights compares: every key but '.seg_layers.', with its shape."""
    return tuple(sorted((k, tuple(v.shape)) for k, v in network.state_dict().items() if ".seg_layers." not in k))


@pytest.fixture
def datasets(tmp_path):
    """Copies of the fixture datasets (their plans and dataset.json), so that plans can be written next to them."""
    for name in {SOURCE, *(d for d, _ in TARGETS)}:
        shutil.copytree(FIXTURES / name, tmp_path / name)
    return tmp_path


def _paths(root, targets=TARGETS) -> list[str]:
    return [str(root / d / f"{p}.json") for d, p in targets]


def _run(run_cli, root, *args, targets=TARGETS):
    code, out, err = run_cli("plan-pretraining", root / SOURCE / "nnUNetPlans.json", *_paths(root, targets), *args,
                             "--format", "json")
    return code, (json.loads(out) if out.strip() else None), err


def test_groups_are_the_distinct_networks_nnunet_builds(datasets, run_cli):
    code, plan, err = _run(run_cli, datasets, "--dry-run")
    assert code == 1, err  # 903 and 904 have other input channels: no plans can serve them
    expected: dict[tuple, list[str]] = {}
    for path in _paths(datasets):
        dj = load(os.path.join(os.path.dirname(path), "dataset.json"))
        expected.setdefault(_signature(_nnunet_network(load(path), "3d_fullres", dj)), []).append(path)
    groups = [g["targets"] for g in plan["groups"]]
    assert sorted(map(sorted, groups)) == sorted(map(sorted, expected.values()))
    assert plan["distinct_networks"] == {"3d_fullres": len(expected)} == {"3d_fullres": len(groups)}
    assert all(not g["merged"] for g in plan["groups"])
    by_target = {path: g for g in plan["groups"] for path in g["targets"]}
    # the source's own network: its plans serve 907, 908 and 901 unchanged
    own = by_target[str(datasets / SOURCE / "nnUNetPlans.json")]
    assert own["source_plans_unchanged"] is True and own["plans"] is not None
    assert str(datasets / "Dataset907_CTIsotropicOther" / "nnUNetPlans.json") in own["targets"]
    # other input channels: refused with the reason, never planned
    mri = by_target[str(datasets / "Dataset904_BrainMRI" / "nnUNetPlans.json")]
    assert mri["plans"] is None and "input channel" in mri["refusal"]
    assert sorted(os.listdir(datasets / SOURCE)) == sorted(os.listdir(FIXTURES / SOURCE))  # dry run


def test_written_plans_load_into_every_target_by_nnunets_loader(datasets, run_cli, tmp_path):
    from nnunet_oracle import load_outcome, save_placeholder_weights

    targets = [t for t in TARGETS if t[0] not in ("Dataset903_ProstateMRI", "Dataset904_BrainMRI")]
    code, plan, err = _run(run_cli, datasets, "--max-pretrainings", "2", targets=targets)
    assert code == 0, err
    assert plan["pretrainings"] == {"3d_fullres": 2} and plan["distinct_networks"]["3d_fullres"] > 2
    source_dj = load(datasets / SOURCE / "dataset.json")
    source_plans = load(datasets / SOURCE / "nnUNetPlans.json")
    checked = 0
    for group in plan["groups"]:
        pretraining = load(group["plans"])
        if not group["source_plans_unchanged"]:
            assert group["written"] and os.path.dirname(group["plans"]) == str(datasets / SOURCE)
            # the pretraining dataset's own preprocessing (--preprocessing source)
            new, old = pretraining["configurations"]["3d_fullres"], source_plans["configurations"]["3d_fullres"]
            assert new["spacing"] == old["spacing"] and new["normalization_schemes"] == old["normalization_schemes"]
        weights = tmp_path / f"pretrained_{group['number']}.pth"
        save_placeholder_weights(_nnunet_network(pretraining, "3d_fullres", source_dj), weights)
        served = [(t, t) for t in group["targets"]] + [(m["target"], m["plans"]) for m in group["merged"]]
        for target, plans_file in served:
            dj = load(os.path.join(os.path.dirname(target), "dataset.json"))
            outcome = load_outcome(_nnunet_network(load(plans_file), "3d_fullres", dj), weights)
            assert outcome.loaded, (group["number"], target, outcome)
            checked += 1
    assert checked == len(targets)
    rows = plan["targets"]
    assert all(r["targeted_share"] == 1.0 for r in rows) and sum(r["merged"] for r in rows) >= 1


def test_merge_costs_are_those_of_check_fix_on_the_same_pair(datasets, run_cli):
    targets = [t for t in TARGETS if t[0] not in ("Dataset903_ProstateMRI", "Dataset904_BrainMRI")]
    code, plan, err = _run(run_cli, datasets, "--max-pretrainings", "1", "--dry-run", targets=targets)
    assert code == 0, err
    (group,) = plan["groups"]
    assert group["merged"]
    representative = group["targets"][0]
    for merge in group["merged"]:
        code, out, err = run_cli("check", representative, merge["target"], "--fix", "--dry-run", "--format", "json")
        assert code == 0, err
        fix = json.loads(out)["fix"]
        assert merge["changes"] == len(fix["changes"])
        assert merge["patch_size"] == {"old": fix["patch"]["old"], "new": fix["patch"]["new"]}
        assert (merge["memory"]["old"], merge["memory"]["new"]) == (fix["patch"]["memory"]["old"],
                                                                     fix["patch"]["memory"]["new"])
        assert merge["memory"]["ratio"] == pytest.approx(fix["patch"]["memory"]["new"] / fix["patch"]["memory"]["old"])


def test_preprocessing_target_copies_the_targets_as_the_move_route_does(datasets, run_cli):
    targets = [("Dataset902_CTAnisotropic", "nnUNetPlans")]
    code, plan, err = _run(run_cli, datasets, "--preprocessing", "target", targets=targets)
    assert code == 0, err
    new = load(plan["groups"][0]["plans"])["configurations"]["3d_fullres"]
    theirs = load(datasets / "Dataset902_CTAnisotropic" / "nnUNetPlans.json")["configurations"]["3d_fullres"]
    assert new["spacing"] == theirs["spacing"] and new["patch_size"] == theirs["patch_size"]


def test_targets_no_pretraining_can_serve_stay_apart_and_make_exit_1(datasets, run_cli):
    code, plan, err = _run(run_cli, datasets, "--max-pretrainings", "1", "--dry-run")
    assert code == 1  # the 2- and 4-channel targets: no plans give the 1-channel pretraining dataset their input
    assert plan["pretrainings"]["3d_fullres"] == 1
    unserved = {r["target"] for r in plan["targets"] if r["targeted_share"] is None}
    assert unserved == {str(datasets / d / "nnUNetPlans.json") for d in ("Dataset903_ProstateMRI",
                                                                         "Dataset904_BrainMRI")}
    refused = [g for g in plan["groups"] if g["refusal"]]
    assert len(refused) == 2 and all(not g["merged"] and g["plans"] is None for g in refused)


def test_commands_name_the_plans_and_the_results_folder(datasets, run_cli):
    targets = [("Dataset902_CTAnisotropic", "nnUNetPlans")]
    code, plan, err = _run(run_cli, datasets, "-tr", "nnUNetTrainer_5epochs", "--dry-run", targets=targets)
    assert code == 0, err
    (group,) = plan["groups"]
    name = group["plans_name"]
    assert group["commands"] == [
        f"nnUNetv2_preprocess -d 901 -plans_name {name} -c 3d_fullres",
        f"nnUNetv2_train 901 3d_fullres all -p {name} -tr nnUNetTrainer_5epochs",
        f"nnUNetv2_train 902 3d_fullres FOLD -p nnUNetPlans -tr nnUNetTrainer_5epochs -pretrained_weights "
        f'"$nnUNet_results"/Dataset901_CTIsotropic/nnUNetTrainer_5epochs__{name}__3d_fullres/fold_all/'
        "checkpoint_final.pth"]


def test_existing_files_are_kept_and_nothing_is_written(datasets, run_cli):
    targets = [t for t in TARGETS if t[0] not in ("Dataset903_ProstateMRI", "Dataset904_BrainMRI")]
    code, plan, err = _run(run_cli, datasets, "--max-pretrainings", "2", "--dry-run", targets=targets)
    planned = [g["plans"] for g in plan["groups"] if not g["source_plans_unchanged"]]
    planned += [m["plans"] for g in plan["groups"] for m in g["merged"]]
    assert len(planned) >= 2
    with open(planned[-1], "w") as fh:
        fh.write("{}")  # the user's file
    before = {d: sorted(os.listdir(datasets / d)) for d in os.listdir(datasets)}
    code, out, err = run_cli("plan-pretraining", datasets / SOURCE / "nnUNetPlans.json", *_paths(datasets, targets),
                             "--max-pretrainings", "2")
    assert code == 2 and err.count("\n") == 1 and planned[-1] in err and "nothing was written" in err
    assert {d: sorted(os.listdir(datasets / d)) for d in os.listdir(datasets)} == before
    assert open(planned[-1]).read() == "{}"
    code, out, err = run_cli("plan-pretraining", datasets / SOURCE / "nnUNetPlans.json", *_paths(datasets, targets),
                             "--max-pretrainings", "2", "--force")
    assert code == 0, err
    assert all(os.path.isfile(p) for p in planned) and load(planned[-1]) != {}


def test_bad_input_is_one_line_and_exit_3(datasets, run_cli, tmp_path):
    bad = tmp_path / "broken" / "nnUNetPlans.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    code, out, err = run_cli("plan-pretraining", datasets / SOURCE / "nnUNetPlans.json", bad, "--format", "json")
    assert code == 3 and str(bad) in json.loads(out)["targets"][0]["error"]
    code, out, err = run_cli("plan-pretraining", bad, *_paths(datasets)[:1])
    assert code == 3 and err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
    code, out, err = run_cli("plan-pretraining", datasets / SOURCE / "nnUNetPlans.json", *_paths(datasets)[:1],
                             "-o", tmp_path / "missing")
    assert code == 2 and "not a folder" in err


def test_a_refused_page_or_no_applicable_row_writes_nothing(datasets, run_cli, tmp_path):
    mine = tmp_path / "mine.html"
    mine.write_text("<p>mine</p>")
    before = sorted(os.listdir(datasets / SOURCE))
    code, out, err = run_cli("plan-pretraining", datasets / SOURCE / "nnUNetPlans.json",
                             *_paths(datasets, [("Dataset902_CTAnisotropic", "nnUNetPlans")]), "--html", mine)
    assert code == 2 and str(mine) in err and sorted(os.listdir(datasets / SOURCE)) == before
    code, out, err = run_cli("plan-pretraining", datasets / SOURCE / "nnUNetPlans.json",
                             *_paths(datasets, [("Dataset902_CTAnisotropic", "nnUNetPlans")]), "-c", "bogus")
    assert code == 3 and "nothing to plan" in err and sorted(os.listdir(datasets / SOURCE)) == before
