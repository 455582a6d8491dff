"""plancheck's speed against the naive way, measured in one process after all imports.

The naive way is what a user would otherwise script: build both networks on the CPU as
nnU-Net's trainer does (``build_network_architecture``, weights initialised), then
compare the two state_dicts. Every timing is a median over repeated runs; plancheck's
network cache is cleared before each run, so nothing is reused between repetitions.
Prints one table; no timing is asserted anywhere in the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
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
    from plancheck import build, check

    build._CACHE.clear()
    return check(source, target, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per plancheck measurement")
    parser.add_argument("--naive-repeat", type=int, default=3, help="runs per naive measurement")
    args = parser.parse_args()

    import torch  # noqa: F401  imports are not part of any measurement
    import plancheck.check  # noqa: F401
    from tabulate import tabulate

    torch.set_num_threads(2)
    rows = []
    naive = median_time(lambda: naive_compare(SOURCE, TARGET), args.naive_repeat)
    ours = median_time(lambda: plancheck_check(SOURCE, TARGET), args.repeat)
    rows.append(("check, ResEnc-L 3d_fullres (901 -> 902)", f"{ours * 1e3:.1f} ms", f"{naive * 1e3:.0f} ms",
                 f"{naive / ours:.1f}x", ">= 20x"))
    for extra in EXTRA_BENCHES:
        rows.extend(extra(args, naive))
    print(tabulate(rows, headers=["benchmark", "plancheck", "baseline", "ratio", "target"], disable_numparse=True))
    return 0


#: Further benchmarks (attribution, checkpoints, matrix) append functions here.
EXTRA_BENCHES: list = []


if __name__ == "__main__":
    sys.exit(main())
