"""`make bench-gpu`: the measured CUDA peak of nnU-Net training steps against plancheck's prediction
and nnU-Net's estimate.

For the bundled 3d_fullres fixtures (Plain, ResEnc M, ResEnc L of Dataset901_CTIsotropic, at their
planned patch and batch size), ``plancheck.verify(..., device="cuda")`` loads the weights with
nnU-Net's loader and runs training steps with AMP, as nnUNetv2_train does (torch.compile off);
``torch.cuda.max_memory_allocated`` is the measured peak. Next to it: the fake-tensor prediction
(``--device meta``; on a CUDA build it runs on fake CUDA tensors) and the memory nnU-Net's planner
estimate implies. The table goes to bench/RESULTS.md (replaced atomically) with the date, the GPU,
and the torch, CUDA and nnU-Net versions.

Needs a CUDA GPU: without one it says so and exits 2, writing nothing. ``--predict-only`` runs the
predictions alone (any machine) and prints the table without writing it.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import typing as t

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "plans" / "Dataset901_CTIsotropic"
CASES = (
    ("Plain (nnUNetPlans)", FIX / "nnUNetPlans.json"),
    ("ResEnc M (nnUNetResEncUNetMPlans)", FIX / "nnUNetResEncUNetMPlans.json"),
    ("ResEnc L (nnUNetResEncUNetLPlans)", FIX / "nnUNetResEncUNetLPlans.json"),
)
CONFIGURATION = "3d_fullres"
GiB = 2**30


def _gib(n: float | None) -> str:
    return "—" if n is None else f"{n / GiB:.2f}"


def _err(value: float | None, measured: float | None) -> str:
    if value is None or not measured:
        return "—"
    return f"{100.0 * (value - measured) / measured:+.1f}%"


def run_case(label: str, plans: pathlib.Path, *, device: str, iterations: int) -> dict[str, t.Any]:
    from plancheck import verify

    result = verify(plans, plans, CONFIGURATION, device=device, iterations=iterations)
    m, p, e = result.measurement, result.prediction, result.nnunet_estimate
    return {
        "label": label,
        "patch": result.patch_size,
        "batch": result.batch_size,
        "measured": None if m is None else m.peak_allocated,
        "reserved": None if m is None else m.peak_reserved,
        "seconds": None if m is None else m.seconds_per_iteration,
        "oom": None if m is None else m.out_of_memory,
        "loaded": None if result.weights is None else result.weights.loaded,
        "predicted": None if p is None else p.peak_bytes,
        "simulated_on": None if p is None else p.simulated_on,
        "nnunet": None if e is None else e.implied_bytes,
        "planner": None if e is None else e.planner,
        "ok": result.ok,
    }


def table(rows: list[dict[str, t.Any]]) -> str:
    lines = [
        "| fixture (3d_fullres) | patch | batch | measured peak allocated (GiB) | reserved (GiB) | plancheck "
        "prediction (GiB) | error | nnU-Net estimate (GiB) | error | s/iteration | weights loaded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {'x'.join(str(p) for p in r['patch'] or ())} | {r['batch']} | {_gib(r['measured'])}"
            f"{' (OOM)' if r['oom'] else ''} | {_gib(r['reserved'])} | {_gib(r['predicted'])} | "
            f"{_err(r['predicted'], r['measured'])} | {_gib(r['nnunet'])} | {_err(r['nnunet'], r['measured'])} | "
            f"{'—' if r['seconds'] is None else format(r['seconds'], '.3f')} | "
            f"{'—' if r['loaded'] is None else ('yes' if r['loaded'] else 'NO')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--predict-only", action="store_true", help="predictions only; print, write nothing")
    args = parser.parse_args(argv)

    import torch

    if args.predict_only:
        rows = [run_case(label, plans, device="meta", iterations=1) for label, plans in CASES]
        sys.stdout.write(table(rows))
        return 0
    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured, nothing written",
              file=sys.stderr)
        return 2
    import nnunetv2  # noqa: F401

    from importlib.metadata import version

    from plancheck.atomic import atomic_write_text

    rows = []
    for label, plans in CASES:
        print(f"bench-gpu: {label} ...", file=sys.stderr, flush=True)
        rows.append(run_case(label, plans, device=args.device, iterations=args.iterations))
        torch.cuda.empty_cache()
    dev = torch.device(args.device)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# plancheck verify: measured CUDA training memory against predictions\n\n"
        f"- date: {now}\n"
        f"- GPU: {torch.cuda.get_device_name(dev)} "
        f"({torch.cuda.get_device_properties(dev).total_memory / GiB:.0f} GiB)\n"
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
        f"nnunetv2 {version('nnunetv2')}, dynamic_network_architectures {version('dynamic_network_architectures')}\n"
        f"- {args.iterations} iterations per fixture, AMP on, torch.compile off, cudnn.benchmark on "
        "(as nnUNetv2_train); weights: the source network's initialisation, loaded by load_pretrained_weights\n"
        "- measured: torch.cuda.max_memory_allocated over the steps; plancheck: the fake-tensor prediction "
        "(`plancheck verify --device meta`); nnU-Net: compute_conv_feature_map_size x batch / reference batch, "
        "scaled by the planner's reference value to its GB target; errors relative to the measured peak\n\n"
        + table(rows)
        + "\nRegenerate with `make bench-gpu` on a machine with a CUDA GPU.\n"
    )
    atomic_write_text(args.out, text, overwrite=True)
    sys.stdout.write(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
