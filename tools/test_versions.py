#!/usr/bin/env python3
"""``make test-versions``: the differential tests under the newest patch of every supported nnU-Net line.

Every minor line from the floor in ``pyproject.toml`` (``nnunetv2>=X.Y``) upwards gets its
newest patch release, as ``pip index versions nnunetv2`` lists them, in its own venv under
``.venv-versions/<line>``, with whatever dynamic_network_architectures that release asks
for (pip resolves it; only torch is pinned). torch is installed once, into
``.venv-versions/torch`` (``pip install --target``), and each line's venv reaches it through
a ``.pth`` file: pip sees it as installed and never downloads another torch.

Then each line runs the tests that compare plancheck with nnU-Net's own code (its planners,
``build_network_architecture``, ``load_pretrained_weights``): :data:`DIFFERENTIAL_TESTS`.
The line in ``constraints.txt`` (the one ``make test`` runs the whole suite on) is tested
the same way here. A line whose venv exists with the right versions is not reinstalled.

Output: one summary line per line (versions, install seconds, test counts), then exit 0
only if every line passed. ``--lines 2.6,2.7`` limits the run; ``--list`` only prints the
plan.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venv-versions"
TORCH_DIR = VENVS / "torch"
#: The tests that put plancheck beside nnU-Net's own code (planners, builders, loader).
DIFFERENTIAL_TESTS = (
    "tests/test_differential.py",
    "tests/test_sources.py",
    "tests/test_fix.py",
    "tests/test_attribution.py",
    "tests/test_fixtures.py",
    "tests/test_nnssl.py",
    "tests/test_torchenv.py",
    "tests/test_versions_tool.py",
    "tests/test_finetune.py",  # the fine-tuning trainers, found by the release's own lookup (--install on 2.6/2.7)
    "tests/test_verify.py",  # builds and runs nnU-Net's own trainer: its __init__ differs between releases
)


def _pin(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}==(\S+)", line.strip())
        if m:
            return m.group(1)
    raise SystemExit(f"constraints.txt pins no {package}")


def _floor() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'"nnunetv2>=(\d+)\.(\d+)', text)
    if not m:
        raise SystemExit("pyproject.toml has no nnunetv2>=X.Y floor")
    return int(m.group(1)), int(m.group(2))


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def newest_patches(python: str) -> dict[str, str]:
    """{"2.6": "2.6.4", ...}: the newest release of every line from the floor up, per ``pip index versions``."""
    r = subprocess.run([python, "-m", "pip", "index", "versions", "nnunetv2"], capture_output=True, text=True)
    m = re.search(r"Available versions:\s*(.+)", r.stdout)
    if r.returncode or not m:
        raise SystemExit(f"pip index versions nnunetv2 failed: {r.stderr.strip()[-300:]}")
    floor = _floor()
    lines: dict[str, str] = {}
    for version in (v.strip() for v in m.group(1).split(",")):
        if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
            continue  # pre-releases are not a supported line
        parts = _key(version)
        line = f"{parts[0]}.{parts[1]}"
        if parts[:2] >= floor and (line not in lines or _key(version) > _key(lines[line])):
            lines[line] = version
    return dict(sorted(lines.items(), key=lambda kv: _key(kv[0])))


def _run(cmd: list[str], **kw) -> None:
    r = subprocess.run(cmd, **kw)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages in {venv}")
    return found[0]


def ensure_torch(python: str) -> float:
    """torch (pinned as in constraints.txt) once, into .venv-versions/torch; the seconds it took (0: present)."""
    torch = _pin("torch")
    stamp = TORCH_DIR / ".installed"
    if stamp.is_file() and stamp.read_text().strip() == torch:
        return 0.0
    shutil.rmtree(TORCH_DIR, ignore_errors=True)
    t0 = time.time()
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(TORCH_DIR),
          "-c", str(ROOT / "constraints.txt"), f"torch=={torch}"])
    stamp.write_text(torch)
    return time.time() - t0


def ensure_line(python: str, line: str, version: str) -> tuple[Path, float]:
    """The venv of one line, with nnunetv2==version, plancheck (editable) and the test extras."""
    venv = VENVS / line
    stamp = venv / ".installed"
    wanted = json.dumps({"nnunetv2": version, "torch": _pin("torch"),
                         "pyproject": (ROOT / "pyproject.toml").stat().st_mtime_ns})
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv, 0.0
    shutil.rmtree(venv, ignore_errors=True)
    t0 = time.time()
    _run([python, "-m", "venv", str(venv)])
    (_site_packages(venv) / "plancheck-shared-torch.pth").write_text(str(TORCH_DIR) + "\n")
    constraints = venv / "constraints.txt"  # torch only: each release picks its own dynamic_network_architectures
    constraints.write_text(f"torch=={_pin('torch')}\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "-c", str(constraints), f"nnunetv2=={version}", "-e", f"{ROOT}[test]"])
    stamp.write_text(wanted)
    return venv, time.time() - t0


def installed(venv: Path, package: str) -> str:
    r = subprocess.run([str(venv / "bin" / "python"), "-c",
                        f"from importlib.metadata import version; print(version({package!r}))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def run_tests(venv: Path, workers: str, extra: list[str]) -> tuple[int, dict[str, int], float]:
    tests = [t for t in DIFFERENTIAL_TESTS if (ROOT / t).is_file()]
    t0 = time.time()
    cmd = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:randomly", "-n", workers,
           "-m", "not real and not primus", *tests, *extra]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(r.stdout[-6000:])
    sys.stderr.write(r.stderr[-3000:])
    last = [ln for ln in r.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed)", last[-1])} \
        if last else {}
    return r.returncode, counts, time.time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=os.environ.get("PYTHON", "python3"), help="interpreter for the venvs")
    ap.add_argument("--lines", help="comma-separated minor lines (default: every supported one)")
    ap.add_argument("--list", action="store_true", help="print the lines and versions, install nothing")
    ap.add_argument("-n", "--workers", default=os.environ.get("PLANCHECK_TEST_WORKERS", "2"))
    args, extra = ap.parse_known_args(argv)
    plan = newest_patches(args.python)
    if args.lines:
        wanted = args.lines.split(",")
        missing = [w for w in wanted if w not in plan]
        if missing:
            raise SystemExit(f"not a supported line: {', '.join(missing)} (supported: {', '.join(plan)})")
        plan = {k: v for k, v in plan.items() if k in wanted}
    print("nnU-Net lines:", ", ".join(f"{line} -> {v}" for line, v in plan.items()), flush=True)
    if args.list:
        return 0
    VENVS.mkdir(exist_ok=True)
    torch_s = ensure_torch(args.python)
    print(f"torch {_pin('torch')} in {TORCH_DIR.relative_to(ROOT)} ({torch_s:.0f} s)", flush=True)
    results = []
    for line, version in plan.items():
        venv, install_s = ensure_line(args.python, line, version)
        dna = installed(venv, "dynamic_network_architectures")
        print(f"== nnunetv2 {installed(venv, 'nnunetv2')}, dynamic_network_architectures {dna}, "
              f"torch {installed(venv, 'torch')} (install {install_s:.0f} s)", flush=True)
        rc, counts, test_s = run_tests(venv, args.workers, extra)
        results.append((line, version, dna, install_s, test_s, rc, counts))
    print("\nsummary")
    for line, version, dna, install_s, test_s, rc, counts in results:
        shown = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no result"
        print(f"  nnunetv2 {version} (dynamic_network_architectures {dna}): {'ok' if rc == 0 else 'FAILED'}: "
              f"{shown}; install {install_s:.0f} s, tests {test_s:.0f} s")
    return 0 if all(r[5] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
