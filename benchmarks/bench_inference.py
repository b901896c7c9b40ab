"""Inference latency: FP32 vs qx int8 (QDQ and QOperator) vs onnxruntime-quantized int8
(quantize_static, QDQ, symmetric int8 per-tensor), ResNet-50 at batch 1 and 8, all in
onnxruntime on the CPU with the same session options. Prints a table and writes JSON.

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


def build_models(calib_n: int) -> dict[str, Path]:
    models = {"fp32": common.MODEL}
    for fmt in ("qdq", "qoperator"):
        out = common.CACHE / f"resnet50_qx_{fmt}.onnx"
        if not out.exists():
            subprocess.run(["qx", "quantize", str(common.MODEL), "--calib", str(common.SAMPLES), "--samples",
                            str(calib_n), "--format", fmt, "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
        models[f"qx int8 ({fmt})"] = out
    ort_model = common.CACHE / "resnet50_ort_qdq.onnx"
    if not ort_model.exists():
        common.ort_quantize_static(common.MODEL, ort_model, calib_n)
    models["onnxruntime int8 (qdq)"] = ort_model
    return models


def latency(path: Path, batch: int, runs: int) -> float:
    from mlperf_qx.runtime import open_session

    session = open_session(path)
    feed = {"image": np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


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
        fp32 = None
        for name, path in models.items():
            seconds = latency(path, batch, args.runs)
            fp32 = fp32 or seconds
            results.append({"model": name, "batch": batch, "median_s": seconds, "vs_fp32": seconds / fp32})
            rows.append([name, batch, f"{seconds * 1e3:.1f}", f"{seconds / fp32:.2f}"])
    common.print_table("ResNet-50 latency (median)", ["model", "batch", "ms", "x fp32"], rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
