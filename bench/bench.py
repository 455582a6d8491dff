"""plancheck's speed against the naive way: warm (repeated in one process) and as a user meets it.

The naive way is what a user would otherwise script: build both networks on the CPU as
nnU-Net's trainer does (``build_network_architecture``, weights initialised), then
compare the two state_dicts. Every timing is a median over repeated runs; plancheck's
network cache is cleared before each run, so nothing is reused between repetitions.
The rows marked "warm" repeat a call in one process after all imports; bench/coldstart.py
adds the first call in a fresh process and the CLI end to end, against ``import torch``.
Prints one table; no timing is asserted anywhere in the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import statistics
import sys
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "plans"
SOURCE = FIX / "Dataset901_CTIsotropic" / "nnUNetResEncUNetLPlans.json"
TARGET = FIX / "Dataset902_CTAnisotropic" / "nnUNetResEncUNetLPlans.json"
SAME_DEPTH_TARGET = FIX / "Dataset908_CTIsotropicCropped" / "nnUNetResEncUNetLPlans.json"

warnings.filterwarnings("ignore")


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def naive_compare(source: pathlib.Path, target: pathlib.Path, configuration: str = "3d_fullres") -> dict:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    def build(path: pathlib.Path):
        with contextlib.redirect_stdout(io.StringIO()):
            plans = json.loads(path.read_text())
            dj = json.loads((path.parent / "dataset.json").read_text())
            pm = PlansManager(plans)
            cm = pm.get_configuration(configuration)
            n_in = determine_num_input_channels(pm, cm, dj)
            n_out = pm.get_label_manager(dj).num_segmentation_heads
            return nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, True)

    a = build(source).state_dict()
    b = build(target).state_dict()
    return {k: (k in a and a[k].shape == v.shape) for k, v in b.items() if ".seg_layers." not in k}


def plancheck_check(source, target, **kwargs):
    from plancheck import check
    from plancheck.network import build

    build._CACHE.clear()
    return check(source, target, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per plancheck measurement")
    parser.add_argument("--naive-repeat", type=int, default=3, help="runs per naive measurement")
    parser.add_argument("--cold-repeat", type=int, default=3, help="fresh processes per first-call/CLI measurement")
    parser.add_argument("--cold-only", action="store_true", help="only the first-call and end-to-end rows")
    args = parser.parse_args()

    import torch  # noqa: F401  imports are not part of any measurement
    import plancheck.check  # noqa: F401
    from tabulate import tabulate

    torch.set_num_threads(2)
    rows = []
    naive = median_time(lambda: naive_compare(SOURCE, TARGET), args.naive_repeat)
    if args.cold_only:
        rows.extend(cold_rows(args, naive))
        print(tabulate(rows, headers=["benchmark", "plancheck", "baseline", "ratio", "target"], disable_numparse=True))
        return 0
    plain = median_time(lambda: plancheck_check(SOURCE, TARGET, explain=False), args.repeat)
    rows.append(("warm: check without attribution, ResEnc-L 3d_fullres (901 -> 902)", f"{plain * 1e3:.1f} ms",
                 f"{naive * 1e3:.0f} ms (naive)", f"{naive / plain:.1f}x", ">= 20x"))
    explained = median_time(lambda: plancheck_check(SOURCE, TARGET), args.repeat)
    report = plancheck_check(SOURCE, TARGET)
    what = "; ".join(rc.note.split(";")[0] or rc.cause.parameter.rsplit(".", 1)[-1] for rc in report.root_causes[:3])
    rows.append((f"warm: check with full attribution (differs in: {what})", f"{explained * 1e3:.1f} ms",
                 f"{naive * 1e3:.0f} ms (naive)", f"{naive / explained:.1f}x", ">= 10x"))
    for extra in EXTRA_BENCHES:
        rows.extend(extra(args, naive))
    print(tabulate(rows, headers=["benchmark", "plancheck", "baseline", "ratio", "target"], disable_numparse=True))
    return 0


#: Further benchmarks (attribution, checkpoints, matrix) append functions here.
EXTRA_BENCHES: list = []


def _rchar() -> int | None:
    """Bytes this process has read through read() and friends, page cache included (/proc/self/io)."""
    try:
        with open("/proc/self/io") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _nnunet_style_checkpoint(plans_path: pathlib.Path, configuration: str = "3d_fullres") -> dict:
    """nnUNetTrainer.save_checkpoint's structure around a real-size network (uninitialised memory)."""
    import numpy as np
    import torch

    from plancheck.check import load_side
    from plancheck.network.build import build_meta_network

    side = load_side("source", plans_path, configuration)
    network = build_meta_network(side.spec).to_empty(device="cpu")  # real storage, shared aliases kept
    return {
        "network_weights": network.state_dict(),
        "optimizer_state": torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99).state_dict(),
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)]},
        "_best_ema": np.float64(0.5),
        "current_epoch": 1000,
        "init_args": {
            "plans": json.loads(plans_path.read_text()),
            "configuration": configuration,
            "fold": 0,
            "dataset_json": json.loads((plans_path.parent / "dataset.json").read_text()),
            "device": torch.device("cuda", 0),
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def checkpoint_shape_table(args, naive: float) -> list[tuple[str, ...]]:
    """Read a ~400 MB ResEnc-L checkpoint's shape table against torch.load, on a warm page cache."""
    import os
    import tempfile

    import torch

    from plancheck.inputs.prefixes import checkpoint_shapes
    from plancheck.inputs.checkpoint import read_checkpoint

    with tempfile.TemporaryDirectory(prefix="plancheck-bench-") as folder:
        path = pathlib.Path(folder) / "checkpoint_final.pth"
        torch.save(_nnunet_style_checkpoint(SOURCE), path)
        size = os.path.getsize(path)
        with open(path, "rb") as fh:  # warm the page cache
            while fh.read(1 << 24):
                pass

        def ours() -> None:
            checkpoint_shapes(read_checkpoint(path))

        def theirs() -> None:
            torch.load(path, weights_only=False, map_location="cpu")

        theirs()
        before = _rchar()
        ours()
        after = _rchar()
        t_ours = median_time(ours, args.repeat)
        t_torch = median_time(theirs, args.naive_repeat)
        torch_before = _rchar()
        theirs()
        torch_after = _rchar()
    label = f"warm: checkpoint shape table, ResEnc-L 3d_fullres ({size / 1e6:.0f} MB file)"
    rows = [(label, f"{t_ours * 1e3:.1f} ms", f"{t_torch * 1e3:.0f} ms (torch.load)", f"{t_torch / t_ours:.1f}x",
             ">= 5x")]
    if before is not None and after is not None and torch_before is not None and torch_after is not None:
        read = after - before
        rows.append(("  bytes read (/proc/self/io rchar)", f"{read / 1e3:.1f} kB ({100 * read / size:.3f}% of file)",
                     f"{(torch_after - torch_before) / 1e6:.0f} MB (torch.load)", "", "< 1% of the file"))
    else:
        rows.append(("  bytes read (/proc/self/io rchar)", "n/a (no /proc/self/io)", "", "", "< 1% of the file"))
    return rows


EXTRA_BENCHES.append(checkpoint_shape_table)


def matrix_rows(args, naive: float) -> list[tuple[str, ...]]:
    """One ResEnc-L source against 6, 12 and 24 targets: the time per row must stay flat."""
    from plancheck.network import build
    from plancheck.matrix import matrix

    targets = [p for p in sorted(FIX.glob("*/*.json")) if p.name not in ("dataset.json", "dataset_fingerprint.json")
               and p != SOURCE][:24]
    rows = []
    for n in (6, 12, 24):
        def run() -> None:
            build._CACHE.clear()
            matrix(SOURCE, targets[:n], ["3d_fullres"])

        per_row = median_time(run, max(1, args.repeat // 2)) / n
        rows.append((f"warm: matrix, ResEnc-L source x {n} targets (3d_fullres), per row", f"{per_row * 1e3:.1f} ms",
                     f"{naive * 1e3:.0f} ms (naive, one pair)", f"{naive / per_row:.1f}x", "flat in n"))
    return rows


EXTRA_BENCHES.append(matrix_rows)


def _naive_transfer(path: pathlib.Path, target: pathlib.Path, configuration: str = "3d_fullres") -> int:
    """What a user would script: torch.load, build the target on the CPU as nnU-Net's trainer does,
    load_state_dict(strict=False) of the keys with the same name and shape."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    weights = torch.load(path, weights_only=False, map_location="cpu")["network_weights"]
    with contextlib.redirect_stdout(io.StringIO()):
        plans = json.loads(target.read_text())
        dj = json.loads((target.parent / "dataset.json").read_text())
        pm = PlansManager(plans)
        cm = pm.get_configuration(configuration)
        n_in = determine_num_input_channels(pm, cm, dj)
        n_out = pm.get_label_manager(dj).num_segmentation_heads
        network = nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, True)
    own = network.state_dict()
    matching = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape and ".seg_layers." not in k}
    network.load_state_dict(matching, strict=False)
    return len(matching)


def transfer_rows(args, naive: float) -> list[tuple[str, ...]]:
    """plancheck transfer of a ~400 MB ResEnc-L checkpoint (901) into 902's own ResEnc-L network, against the
    naive path; bytes read per strategy next to the carried tensors' bytes + 1% of the file."""
    import os
    import tempfile

    import torch

    from plancheck.network import build
    from plancheck.inputs.checkpoint import read_checkpoint
    from plancheck.inputs.checkpoint.data import read_tensors, tensor_nbytes
    from plancheck.transfer import transfer

    rows = []
    with tempfile.TemporaryDirectory(prefix="plancheck-bench-") as folder:
        path = pathlib.Path(folder) / "checkpoint_final.pth"
        out = pathlib.Path(folder) / "transferred.pth"
        torch.save(_nnunet_style_checkpoint(SOURCE), path)
        size = os.path.getsize(path)
        with open(path, "rb") as fh:  # warm the page cache: both sides read from memory
            while fh.read(1 << 24):
                pass

        def ours(strategy: str = "adapt"):
            build._CACHE.clear()
            return transfer(path, TARGET, out, strategy=strategy, force=True)

        ours()
        _naive_transfer(path, TARGET)
        t_ours = median_time(ours, max(1, args.repeat // 2))
        t_naive = median_time(lambda: _naive_transfer(path, TARGET), args.naive_repeat)
        rows.append((f"transfer adapt, ResEnc-L 3d_fullres 901 -> 902 ({size / 1e6:.0f} MB file, writes + verifies)",
                     f"{t_ours * 1e3:.0f} ms", f"{t_naive * 1e3:.0f} ms (naive)", f"{t_naive / t_ours:.1f}x",
                     ">= 1x"))
        for strategy in ("exact", "encoder", "adapt"):
            result = ours(strategy)
            carried = result.bytes_read
            bound = carried + size // 100
            ckpt = read_checkpoint(path)
            keys = [r.source_key for r in result.plan.carried]
            before = _rchar()
            read_tensors(read_checkpoint(path), keys)
            after = _rchar()
            whole_before = _rchar()
            ours(strategy)
            whole_after = _rchar()
            if before is None or after is None or whole_before is None or whole_after is None:
                rows.append((f"  {strategy}: bytes read", "n/a (no /proc/self/io)", "", "", ""))
                continue
            assert carried == sum(tensor_nbytes(ckpt.state_dict[k]) for k in keys)
            read = after - before
            rows.append((f"  {strategy}: source bytes read (reader + carried tensors, rchar); "
                         f"{100 * result.plan.share:.1f}% of parameters carried",
                         f"{read / 1e6:.1f} MB", f"{bound / 1e6:.1f} MB (carried {carried / 1e6:.1f} MB + 1%)",
                         "ok" if read <= bound else "OVER", "<= carried + 1%"))
            rows.append((f"  {strategy}: whole command (+ SHA-256 of the file for provenance, + read-back)",
                         f"{(whole_after - whole_before) / 1e6:.1f} MB", f"{size / 1e6:.0f} MB file", "", ""))
    return rows


EXTRA_BENCHES.append(transfer_rows)


REAL_PLANS = ROOT.parent / "shared" / "real-plans"


def _dataset_folders(folder: pathlib.Path) -> list[pathlib.Path]:
    """The 44 real plans files (else the fixtures' planner plans) as dataset folders: plans + dataset.json."""
    import shutil

    out = []
    files = sorted(p for p in REAL_PLANS.glob("*.json") if not p.name.endswith(".dataset.json"))
    for path in files:
        target = folder / path.stem
        target.mkdir()
        shutil.copy(path, target / "nnUNetPlans.json")
        dj = path.with_name(path.stem + ".dataset.json")
        if dj.is_file():
            shutil.copy(dj, target / "dataset.json")
        out.append(target / "nnUNetPlans.json")
    return out or [p for p in sorted(FIX.glob("*/nnUNetPlans.json"))]


def _nnunet_meta_builds(targets: list[pathlib.Path], configuration: str) -> int:
    """The baseline: nnU-Net builds each target's network once, on the meta device (no weights allocated)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    built = 0
    for path in targets:
        dj_path = path.parent / "dataset.json"
        try:
            with contextlib.redirect_stdout(io.StringIO()), torch.device("meta"):
                pm = PlansManager(json.loads(path.read_text()))
                cm = pm.get_configuration(configuration)
                dj = json.loads(dj_path.read_text()) if dj_path.is_file() else {"channel_names": {"0": "x"},
                                                                                 "labels": {"background": 0, "a": 1}}
                n_in = determine_num_input_channels(pm, cm, dj)
                n_out = pm.get_label_manager(dj).num_segmentation_heads
                nnUNetTrainer.build_network_architecture(pm, cm, n_in, n_out, True)
            built += 1
        except Exception:  # noqa: BLE001 - a file nnU-Net cannot build costs the baseline nothing more
            pass
    return built


def pretraining_rows(args, naive: float) -> list[tuple[str, ...]]:
    """plan-pretraining with the 44 real plans files as targets (3d_fullres), in process and as a command, against
    nnU-Net building each target's network once on the meta device."""
    import subprocess
    import tempfile

    from plancheck.network import build
    from plancheck.pretraining import plan_pretraining

    rows = []
    with tempfile.TemporaryDirectory(prefix="plancheck-bench-") as folder:
        targets = _dataset_folders(pathlib.Path(folder))
        source = next((t for t in targets if t.parent.name == "036"), targets[0])
        baseline = median_time(lambda: _nnunet_meta_builds(targets, "3d_fullres"), max(1, args.repeat // 2))
        built = _nnunet_meta_builds(targets, "3d_fullres")

        def run() -> None:
            build._CACHE.clear()
            plan_pretraining(source, targets, ["3d_fullres"], dry_run=True)

        warm = median_time(run, max(1, args.repeat // 2))
        plan = plan_pretraining(source, targets, ["3d_fullres"], dry_run=True)
        what = f"{len(targets)} targets, {built} built by nnU-Net, {plan.distinct['3d_fullres']} distinct networks"
        rows.append((f"warm: plan-pretraining, {what}", f"{warm:.2f} s",
                     f"{baseline:.2f} s (nnU-Net builds each once, meta)", f"{baseline / warm:.2f}x",
                     "about the builds"))
        plancheck = str(pathlib.Path(sys.executable).with_name("plancheck"))
        cmd = [plancheck, "plan-pretraining", str(source), *map(str, targets), "-c", "3d_fullres", "--dry-run",
               "--format", "json", "-q"]
        wall = median_time(lambda: subprocess.run(cmd, capture_output=True), args.cold_repeat)
        code = [sys.executable, "-c", "import torch, nnunetv2.training.nnUNetTrainer.nnUNetTrainer"]
        imports = median_time(lambda: subprocess.run(code, capture_output=True), args.cold_repeat)
        rows.append(("CLI end to end: plancheck plan-pretraining (same 44, --dry-run)", f"{wall:.2f} s",
                     f"{imports + baseline:.2f} s (import torch + nnU-Net, then the builds)",
                     f"{(imports + baseline) / wall:.2f}x", "fresh process"))
    return rows


EXTRA_BENCHES.append(pretraining_rows)


def cold_rows(args, naive: float) -> list[tuple[str, ...]]:
    """First calls in fresh processes and the CLI end to end (bench/coldstart.py), plans and checkpoint pairs."""
    import tempfile

    import torch

    import coldstart

    targets = [p for p in sorted(FIX.glob("*/*.json")) if p.name not in ("dataset.json", "dataset_fingerprint.json")
               and p != SOURCE][:6]
    with tempfile.TemporaryDirectory(prefix="plancheck-bench-") as folder:
        checkpoint = pathlib.Path(folder) / "checkpoint_final.pth"
        torch.save(_nnunet_style_checkpoint(SOURCE), checkpoint)
        return coldstart.rows(args, naive, source=SOURCE, target=TARGET, targets=targets, checkpoint=checkpoint)


EXTRA_BENCHES.append(cold_rows)


if __name__ == "__main__":
    sys.exit(main())
