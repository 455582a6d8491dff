"""plancheck compare (issue 21): real nnU-Net summary.json files, written by nnU-Net's own
``compute_metrics_on_folder`` from small synthetic segmentations; every number compare prints is checked against
values this test computes from the masks itself (numpy Dice, scipy's Wilcoxon on those differences).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

LABELS = (1, 2)
FOLDS = {"0": ["case_a", "case_b", "case_c", "case_d"], "1": ["case_e", "case_f", "case_g", "case_h"]}
#: per arm: how many voxels of each case's reference are flipped in its prediction (more: worse)
ARMS = {"baseline": 6, "unified": 9, "transfer": 3}
SHAPE = (6, 12, 12)


def _reference(case: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, case)))
    seg = np.zeros(SHAPE, dtype=np.uint8)
    z, y, x = (int(rng.integers(2, s - 3)) for s in SHAPE)
    seg[z:z + 2, y:y + 4, x:x + 4] = 1
    seg[max(z - 2, 0):z, y:y + 3, x:x + 3] = 2
    if case == "case_h":
        seg[seg == 2] = 0  # class 2 absent from this reference
    return seg


def _prediction(case: str, arm: str) -> np.ndarray:
    seg = _reference(case).copy()
    rng = np.random.default_rng(sum(map(ord, case + arm)))
    for _ in range(ARMS[arm]):
        z, y, x = (int(rng.integers(0, s)) for s in SHAPE)
        seg[z, y, x] = int(rng.integers(0, 3))
    if case == "case_h" and arm != "transfer":
        seg[seg == 2] = 0  # absent from both: nnU-Net's Dice is NaN for class 2 here
    return seg


def _dice(ref: np.ndarray, pred: np.ndarray, label: int) -> float:
    r, p = ref == label, pred == label
    tp, fp, fn = int((r & p).sum()), int((~r & p).sum()), int((r & ~p).sum())
    return math.nan if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _write(path, seg: np.ndarray) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(seg), str(path))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("results"))


def make_results(root):
    """root/Dataset902_X/<arm folders>/fold_N/validation/summary.json, written by nnU-Net's evaluation."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    refs = root / "gt"
    refs.mkdir()
    for cases in FOLDS.values():
        for case in cases:
            _write(refs / f"{case}.nii.gz", _reference(case))
    folders = {}
    for arm in ARMS:
        model = root / "Dataset902_X" / f"nnUNetTrainer__{arm}Plans__3d_fullres"
        for fold, cases in FOLDS.items():
            fold_ref = root / f"gt_{fold}"
            fold_ref.mkdir(exist_ok=True)
            validation = model / f"fold_{fold}" / "validation"
            validation.mkdir(parents=True)
            for case in cases:
                _write(validation / f"{case}.nii.gz", _prediction(case, arm))
                if not (fold_ref / f"{case}.nii.gz").exists():
                    os.link(refs / f"{case}.nii.gz", fold_ref / f"{case}.nii.gz")
            compute_metrics_on_folder(str(fold_ref), str(validation), str(validation / "summary.json"), SimpleITKIO(),
                                      ".nii.gz", list(LABELS), num_processes=1)
            if not (arm == "unified" and fold == "1"):  # unified's fold 1 did not finish
                (model / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
        folders[arm] = model
    return root, folders


def _expected_case_dice(arm: str) -> dict[str, float]:
    out = {}
    for cases in FOLDS.values():
        for case in cases:
            ref, pred = _reference(case), _prediction(case, arm)
            values = [d for d in (_dice(ref, pred, lb) for lb in LABELS) if not math.isnan(d)]
            out[case] = sum(values) / len(values)
    return out


def test_compare_numbers_match_the_masks(results, run_cli):
    from scipy.stats import wilcoxon

    root, folders = results
    code, out, err = run_cli("compare", f"baseline={folders['baseline']}", f"unified={folders['unified']}",
                             f"transfer={folders['transfer']}", "--format", "json")
    assert code == 1, err  # unified's fold 1 has no checkpoint_final.pth
    data = json.loads(out)
    arms = {a["name"]: a for a in data["arms"]}
    assert arms["unified"]["unfinished"] == ["1"] and arms["baseline"]["unfinished"] == []
    assert any("unified: fold 1 without checkpoint_final.pth" in n for n in data["notes"])
    for name in ARMS:
        arm = arms[name]
        assert arm["folds"] == ["0", "1"] and arm["cases"] == 8
        expected = _expected_case_dice(name)
        assert arm["case_dice"] == pytest.approx(expected, rel=1e-12)
        for lb in LABELS:  # per class: the mean over cases, NaN left out (nnU-Net's nanmean)
            values = [d for d in (_dice(_reference(c), _prediction(c, name), lb) for cs in FOLDS.values() for c in cs)
                      if not math.isnan(d)]
            assert arm["classes"][str(lb)]["Dice"] == pytest.approx(sum(values) / len(values), rel=1e-12)
        assert arm["foreground"]["Dice"] == pytest.approx(
            sum(arm["classes"][str(lb)]["Dice"] for lb in LABELS) / len(LABELS), rel=1e-12)
        folds = []
        for fold, cases in FOLDS.items():
            per_class = []
            for lb in LABELS:
                values = [d for d in (_dice(_reference(c), _prediction(c, name), lb) for c in cases)
                          if not math.isnan(d)]
                per_class.append(sum(values) / len(values))
            folds.append(sum(per_class) / len(per_class))
            # nnU-Net's own foreground_mean of that fold agrees with ours
            summary = json.loads((folders[name] / f"fold_{fold}" / "validation" / "summary.json").read_text())
            assert summary["foreground_mean"]["Dice"] == pytest.approx(folds[-1], rel=1e-12)
        assert arm["fold_dice"] == pytest.approx(dict(zip(FOLDS, folds)), rel=1e-12)
        assert arm["fold_mean_dice"] == pytest.approx(np.mean(folds), rel=1e-12)
        assert arm["fold_sd_dice"] == pytest.approx(np.std(folds, ddof=1), rel=1e-12)
    base = _expected_case_dice("baseline")
    for pair in data["paired"]:
        ours = _expected_case_dice(pair["arm"])
        diffs = {c: ours[c] - base[c] for c in base}
        assert pair["diffs"] == pytest.approx(diffs, rel=1e-12, abs=1e-15)
        assert (pair["better"], pair["worse"]) == (sum(d > 0 for d in diffs.values()), sum(d < 0 for d in
                                                                                            diffs.values()))
        expected = wilcoxon(list(diffs.values()))
        assert pair["wilcoxon"]["p_value"] == pytest.approx(float(expected.pvalue), rel=1e-12)
        assert pair["mean_diff"] == pytest.approx(float(np.mean(list(diffs.values()))), rel=1e-12)
        assert pair["median_diff"] == pytest.approx(float(np.median(list(diffs.values()))), rel=1e-12)


def test_text_table_and_missing_folds(results, run_cli, tmp_path):
    import shutil

    root, folders = results
    partial = tmp_path / "nnUNetTrainer__partialPlans__3d_fullres"
    shutil.copytree(folders["transfer"], partial)
    shutil.rmtree(partial / "fold_1")
    code, out, err = run_cli("compare", f"baseline={folders['baseline']}", f"partial={partial}", "--folds", "0",
                             "--folds", "1")
    assert code == 1
    assert "partial: fold 1 not found" in out and "left out, not averaged in" in out
    assert "refused: the case sets differ: 4 only in baseline (case_e, case_f, case_g and 1 more); folds 0 against" \
           " 0,1" in out
    code, out, err = run_cli("compare", f"baseline={folders['baseline']}", f"transfer={folders['transfer']}")
    assert code == 0, err
    base = _expected_case_dice("baseline")
    ours = _expected_case_dice("transfer")
    mean = sum(ours[c] - base[c] for c in base) / len(base)
    assert f"{mean:+.4f}" in out


def test_summary_files_and_bad_input(results, run_cli, tmp_path):
    root, folders = results
    one = folders["baseline"] / "fold_0" / "validation" / "summary.json"
    code, out, err = run_cli("compare", one, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["arms"][0]["cases"] == 4
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps({"metric_per_case": [{"metrics": {}}]}))
    code, out, err = run_cli("compare", bad)
    assert code == 3 and err.count("\n") == 1 and str(bad) in err and "reference_file" in err
    code, out, err = run_cli("compare", f"a={one}", f"a={one}")
    assert code == 2 and "two arms are named a" in err
    code, out, err = run_cli("compare", one, "--baseline", "nope")
    assert code == 2 and "none of the arms" in err


def test_compare_never_imports_torch_or_nnunet(results):
    import subprocess
    import sys

    root, folders = results
    script = (
        "import sys\n"
        "from plancheck.cli import main\n"
        "try:\n"
        f"    main(['compare', {str(folders['baseline'])!r}, {str(folders['transfer'])!r}, '--format', 'json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "loaded = [m for m in ('torch', 'nnunetv2', 'dynamic_network_architectures') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("clean")
