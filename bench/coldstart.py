"""Speed as a user meets it: the first call in a fresh process, and the CLI from the shell.

bench.py's other rows repeat a call in one warm process. A user runs ``plancheck check A B``
once, so this module measures

* the first call in a fresh process: one subprocess per run, in which torch, plancheck and
  nnU-Net's network code are imported first (not timed), then one call is timed, with every
  import it still triggers. ``cli`` runs it as the ``plancheck`` command does (the imports
  that command defers, deferred); ``api`` as ``plancheck.check()`` in a user's own process,
  where plancheck defers nothing;
* the CLI end to end: the wall time of ``plancheck check|diff|matrix`` as processes, against
  ``python -c "import torch"`` and against the naive script as a process.

Each figure is a median over ``repeat`` runs; the runs of different commands are interleaved,
so a busy machine slows them alike. Nothing here is asserted by the tests.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import sys
import time
import typing as t

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent

#: One timed call in a fresh interpreter: argv is (kind, mode, source, target, json list of matrix targets).
_FIRST_CALL = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
kind, mode, source, target, targets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
if mode == "cli":
    try:
        from plancheck.cli.defer import defer  # what plancheck.cli.main.main does first
    except ImportError:  # a plancheck from before the deferral
        pass
    else:
        defer()
import plancheck  # noqa: F401
if kind != "diff":  # diff never imports torch
    import torch  # noqa: F401
    import dynamic_network_architectures.architectures.unet  # noqa: F401
    import nnunetv2.utilities.get_network_from_plans  # noqa: F401
    import plancheck.check  # noqa: F401
    torch.set_num_threads(2)
t0 = time.perf_counter()
if kind == "diff":
    plancheck.diff(source, target)
elif kind == "matrix":
    from plancheck.matrix import matrix
    matrix(source, targets, ["3d_fullres"])
else:
    plancheck.check(source, target)
print(json.dumps(time.perf_counter() - t0))
"""

#: The naive script a user would write, as a process (bench.naive_compare).
_NAIVE = r"""
import sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[1])
from bench import naive_compare
import pathlib
naive_compare(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
"""


def _first_call(kind: str, mode: str, source: pathlib.Path, target: pathlib.Path,
                targets: list[pathlib.Path]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, kind, mode, str(source), str(target),
         json.dumps([str(p) for p in targets])],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _interleaved(jobs: dict[str, t.Callable[[], float]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeat):
        for name, job in jobs.items():
            times[name].append(job())
    return {name: statistics.median(values) for name, values in times.items()}


def rows(args, naive: float, *, source: pathlib.Path, target: pathlib.Path, targets: list[pathlib.Path],
         checkpoint: pathlib.Path) -> list[tuple[str, ...]]:
    """The first-call and end-to-end rows of bench.py's table."""
    repeat = args.cold_repeat
    kinds = {"plans pair": ("check", source, target), "checkpoint pair": ("check", checkpoint, target),
             "diff": ("diff", source, target), "matrix, 6 targets": ("matrix", source, target)}
    jobs = {}
    for label, (kind, a, b) in kinds.items():
        for mode in ("cli", "api"):
            jobs[(label, mode)] = (lambda kind=kind, mode=mode, a=a, b=b: _first_call(kind, mode, a, b, targets))
    first = _interleaved(jobs, repeat)

    plancheck = str(BIN / "plancheck")
    e2e = _interleaved({
        "torch": lambda: _wall([sys.executable, "-c", "import torch"]),
        "check": lambda: _wall([plancheck, "check", str(source), str(target)]),
        "checkpoint": lambda: _wall([plancheck, "check", str(checkpoint), str(target)]),
        "diff": lambda: _wall([plancheck, "diff", str(source), str(target)]),
        "matrix": lambda: _wall([plancheck, "matrix", str(source), *map(str, targets), "-c", "3d_fullres"]),
        "naive": lambda: _wall([sys.executable, "-c", _NAIVE, str(ROOT / "bench"), str(source), str(target)]),
    }, repeat)

    out: list[tuple[str, ...]] = []
    for label in kinds:
        cli, api = first[(label, "cli")], first[(label, "api")]
        goal = ">= 20x" if label == "plans pair" else ""
        out.append((f"first call in a fresh process, {label} (as the CLI runs it)", f"{cli * 1e3:.0f} ms",
                    f"{naive * 1e3:.0f} ms (naive, warm)", f"{naive / cli:.1f}x", goal))
        out.append(("  the same from the Python API (nothing deferred)", f"{api * 1e3:.0f} ms",
                    f"{naive * 1e3:.0f} ms (naive, warm)", f"{naive / api:.1f}x", ""))
    torch_s = e2e["torch"]
    base = f"{torch_s * 1e3:.0f} ms (import torch)"
    for name, command, goal in (("check", "plancheck check A B (plans pair)", "<= 1.3x"),
                                ("checkpoint", "plancheck check CKPT B (checkpoint pair)", ""),
                                ("matrix", "plancheck matrix A + 6 targets", ""),
                                ("diff", "plancheck diff A B", "<= 0.3x")):
        out.append((f"end to end: {command}", f"{e2e[name] * 1e3:.0f} ms", base, f"{e2e[name] / torch_s:.2f}x",
                    goal))
    out.append(("end to end: the naive script (python naive.py A B)", f"{e2e['naive'] * 1e3:.0f} ms", base,
                f"{e2e['naive'] / torch_s:.2f}x", ""))
    out.append(("end to end: plancheck check A B against the naive script", f"{e2e['check'] * 1e3:.0f} ms",
                f"{e2e['naive'] * 1e3:.0f} ms (naive script)", f"{e2e['naive'] / e2e['check']:.1f}x faster", ""))
    return out

