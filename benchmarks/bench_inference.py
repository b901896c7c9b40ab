"""Inference latency: FP32 vs qx int8 (QDQ and QOperator) vs onnxruntime-quantized int8
(quantize_static, QDQ, symmetric int8 per-tensor), ResNet-50 at batch 1 and 8, all in
onnxruntime on the CPU with the same session options, taking turns run by run. Prints a table,
the CPU's int8 features (VNNI or not) and writes JSON.

    python benchmarks/bench_inference.py [--runs 20] [--calib-n 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


SATURATING = "default U8S8 (saturating without VNNI)"


def build_models(calib_n: int) -> dict[str, Path]:
    models = {"fp32": common.MODEL}
    for fmt in ("qdq", "qoperator"):
        out = common.CACHE / f"resnet50_qx_{fmt}.onnx"
        if not out.exists():
            subprocess.run([common.QX, "quantize", str(common.MODEL), "--calib", str(common.SAMPLES), "--samples",
                            str(calib_n), "--format", fmt, "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
        models[f"qx int8 ({fmt})"] = out
    ort_model = common.CACHE / "resnet50_ort_qdq.onnx"
    if not ort_model.exists():
        common.ort_quantize_static(common.MODEL, ort_model, calib_n)
    models["onnxruntime int8 (qdq)"] = ort_model
    # The same model without qx's exact-precision option: where it is not faster than FP32 either,
    # no symmetric int8 QDQ model can be on this CPU.
    models[f"onnxruntime int8 (qdq), {SATURATING}"] = ort_model
    return models


def cpu_int8_features() -> list[str]:
    """The x86 features that decide onnxruntime's int8 speed: without VNNI its U8S8 GEMM either
    saturates (vpmaddubsw) or, in qx's exact mode, takes a slower path."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]


def latencies(models: dict[str, Path], batch: int, runs: int) -> dict[str, float]:
    """Median latency per model. Models take turns run by run, so a slow spell of a shared
    machine hits all of them alike instead of whichever model was being measured."""
    from mlperf_qx.runtime import open_session

    feed = {"image": np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    # Spinning stops when a run returns: otherwise the idle sessions' threads spin against the
    # one being measured.
    sessions = {name: open_session(path, spin_between_runs=False, x64quantprecision=False if SATURATING in name else None)
                for name, path in models.items()}
    for session in sessions.values():
        for _ in range(2):
            session.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, feed)
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--calib-n", type=int, default=32)
    parser.add_argument("--json", type=Path, default=common.CACHE / "bench_inference.json")
    args = parser.parse_args()
    common.ensure_model()
    common.ensure_samples(args.calib_n)
    models = build_models(args.calib_n)
    results, rows = [], []
    for batch in (1, 8):
        measured = latencies(models, batch, args.runs)
        fp32 = measured["fp32"]
        for name, seconds in measured.items():
            results.append({"model": name, "batch": batch, "median_s": seconds, "vs_fp32": seconds / fp32})
            rows.append([name, batch, f"{seconds * 1e3:.1f}", f"{seconds / fp32:.2f}"])
    features = cpu_int8_features()
    print(f"CPU int8 features: {', '.join(features) or 'unknown'}")
    common.print_table("ResNet-50 latency (median)", ["model", "batch", "ms", "x fp32"], rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu_features": features, "results": results}, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
