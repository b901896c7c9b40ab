"""Calibration speed and memory: qx quantize vs onnxruntime.quantization.quantize_static.

ResNet-50 (plain torch definition, random weights, 224x224, opset 17), symmetric per-tensor int8
QDQ for both tools, minmax and entropy, at N calibration samples; plus the floor: bare FP32
onnxruntime inference of the same N samples at batch 1. Each measurement runs in its own process
(wall time and peak RSS of that process). Prints a table and writes JSON.

    python benchmarks/bench_calibration.py [--n 32 128 500] [--methods minmax entropy] [--ort-entropy-max-n 128] [--repeat 1]

onnxruntime's entropy calibrator keeps every activation of every sample in memory (measured here:
14.6 GB at N=128, growing with N), so by default it is not run above --ort-entropy-max-n.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def worker(tool: str, n: int, method: str) -> dict:
    import numpy as np

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "int8.onnx"
        if tool == "qx":
            from mlperf_qx.cli.main import main

            code = main(["quantize", str(common.MODEL), "--calib", str(common.SAMPLES), "--samples", str(n),
                         "--method", method, "-o", str(out), "--json"])
            if code:
                raise SystemExit(code)
        elif tool == "onnxruntime":
            common.ort_quantize_static(common.MODEL, out, n, method)
        else:  # the floor: FP32 inference of the same samples at batch 1
            from mlperf_qx.runtime import open_session

            session = open_session(common.MODEL)
            for path in common.sample_paths(n):
                session.run(None, {"image": np.load(path)[None]})
    return {"wall_s": time.perf_counter() - started, "peak_rss_mb": common.peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "N", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, nargs="+", default=[32, 128, 500])
    parser.add_argument("--methods", nargs="+", default=["minmax", "entropy"])
    parser.add_argument("--ort-entropy-max-n", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per measurement; the median wall time is reported (a shared machine is noisy)")
    parser.add_argument("--json", type=Path, default=common.CACHE / "bench_calibration.json")
    args = parser.parse_args()
    if args.worker:
        tool, n, method = args.worker
        print(json.dumps(worker(tool, int(n), method)))
        return
    common.ensure_model()
    common.ensure_samples(max(args.n))
    results, rows = [], []
    for n in args.n:
        floor = _measured(["floor", str(n), "-"], args.repeat)
        results.append({"tool": "fp32 floor", "n": n, **floor})
        rows.append(["fp32 floor", "-", n, _fmt(floor.get("wall_s")), _fmt(floor.get("peak_rss_mb"), 0), "1.00", ""])
        for method in args.methods:
            for tool in ("qx", "onnxruntime"):
                if tool == "onnxruntime" and method == "entropy" and n > args.ort_entropy_max_n:
                    measured = {"skipped": f"N > {args.ort_entropy_max_n}: its memory grows with N past this machine"}
                else:
                    measured = _measured([tool, str(n), method], args.repeat)
                results.append({"tool": tool, "method": method, "n": n, **measured})
                ratio = measured["wall_s"] / floor["wall_s"] if "wall_s" in measured and "wall_s" in floor else None
                note = measured.get("error") or measured.get("skipped") or ""
                rows.append([tool, method, n, _fmt(measured.get("wall_s")), _fmt(measured.get("peak_rss_mb"), 0),
                             _fmt(ratio, 2), note])
        common.print_table("calibration: wall time, peak RSS, and wall time / FP32 floor",
                           ["tool", "method", "N", "wall s", "peak RSS MB", "x floor", "note"], rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


def _measured(worker_args: list[str], repeat: int) -> dict:
    runs = [common.run_worker(Path(__file__), worker_args) for _ in range(repeat)]
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    walls = sorted(r["wall_s"] for r in good)
    return {"wall_s": walls[len(walls) // 2], "wall_s_runs": walls, "peak_rss_mb": max(r["peak_rss_mb"] for r in good)}


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
