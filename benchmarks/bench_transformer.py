"""Symmetric per-tensor int8 on a real pretrained transformer, side by side in one run.

all-mpnet-base-v2 (``--model mpnet``, the default: 12 layers, 768 wide, BERT-base size, windows of 64
tokens) or all-MiniLM-L6-v2 (``--model minilm``: 6 layers, 384 wide, windows of 24 tokens), both
sentence-transformers with pretrained weights from the package registry (see transformer_data.py),
embeds paragraphs of Python's own documentation (``pydoc_data``). Every variant is scored on 64
held-out evaluation windows that are not in the calibration list: mean and worst embedding cosine
against FP32, the share of MatMul FLOPs that run in int8, the wall time of quantization and batch-1
latency. Each qx variant's phases (quantize's own --json timings) are printed in seconds and as a
multiple of one FP32 pass over the calibration list's windows (batch 1, qx's session), measured in
the same run just before and just after that variant (the mean of the two; both are printed, so a
change of load on the machine shows).

    python benchmarks/bench_transformer.py [--model mpnet|minilm] [--skip-ort] [--searched-only]

Variants: FP32; qx default (minmax); qx --equalize smoothquant; qx --equalize smoothquant
--target-cosine 0.993 (searched on 16 held-out ids at the end of the list; the margin over
the 0.99 goal covers the step from 16 held-out windows to the 64 evaluation windows); onnxruntime's
quantize_static, QDQ, symmetric per tensor int8 (activations and weights), entropy and minmax.
``--searched-only``: FP32 and the searched variant only (with its intensional verify).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import transformer_data as data  # noqa: E402

LATENCY_RUNS = 32
FP32_PASSES = 3  # the FP32 pass is the fastest of these (the floor, least disturbed by other work)


def fp32_pass_seconds(model: Path, feeds: list[dict]) -> float:
    """One FP32 pass over ``feeds`` one by one in qx's own session (session built outside the clock)."""
    from mlperf_qx.runtime import open_session

    session = open_session(model)
    fastest = float("inf")
    for _ in range(FP32_PASSES):
        started = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def qx_quantize(model: Path, calib: Path, calib_list: Path, out: Path, extra: list[str],
                floor_feeds: list[dict]) -> dict:
    before = fp32_pass_seconds(model, floor_feeds)
    started = time.perf_counter()
    done = subprocess.run([common.QX, "quantize", str(model), "--calib", str(calib), "--calib-list", str(calib_list),
                           "-o", str(out), "--json", *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = fp32_pass_seconds(model, floor_feeds)
    info = {"exit": done.returncode, "quantize_s": seconds, "fp32_pass_s": [before, after]}
    if done.returncode == 0:
        summary = json.loads(done.stdout)
        info["search"] = summary.get("precision_search")
        info["equalization"] = summary.get("equalization")
        info["timings_s"] = summary.get("timings_s")
        info["quantize_fp32_pass_s"] = summary.get("fp32_pass_s")  # quantize's own estimate, from its held-out runs
        info["target"] = summary.get("target")
    else:
        info["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:]
    return info


def qx_verify(model: Path, candidate: Path, calib: Path, calib_list: Path, out: Path) -> dict:
    """``qx verify-equivalence --mode intensional`` of ``candidate`` against the original FP32 model:
    the verdict and each check's measurement."""
    started = time.perf_counter()
    done = subprocess.run([common.QX, "verify-equivalence", "--reference", str(model), "--candidate", str(candidate),
                           "--dataset", str(calib), "--sample-list", str(calib_list), "--task", "raw",
                           "--calib-list", str(calib_list), "--mode", "intensional", "--out", str(out)],
                          capture_output=True, text=True)
    info = {"exit": done.returncode, "verify_s": time.perf_counter() - started}
    report = out / "report.json"
    if report.is_file():
        checks = json.loads(report.read_text())["intensional"]["checks"]
        info["checks"] = {c["name"]: ("PASS " if c["passed"] else "FAIL ") + c["measured"] for c in checks}
    else:
        info["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:]
    return info


def ort_quantize(model: Path, out: Path, feeds: list[dict], method: str) -> dict:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    started = time.perf_counter()
    try:
        quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=False,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "entropy": CalibrationMethod.Entropy}[method],
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    except Exception as exc:  # reported in the table, the other variants still run
        return {"exit": 1, "error": [str(exc).splitlines()[0][:200]], "quantize_s": time.perf_counter() - started}
    return {"exit": 0, "quantize_s": time.perf_counter() - started}


def int8_matmul_share(quantized: Path, flops: dict[str, float]) -> float:
    """FLOP share of the MatMuls whose two operands are both dequantized int8 in ``quantized``."""
    graph = onnx.load(str(quantized), load_external_data=False).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    int8 = {n.name for n in graph.node if n.op_type == "MatMul"
            and all(producers.get(i) == "DequantizeLinear" for i in n.input[:2])}
    total = sum(flops.values())
    return sum(f for name, f in flops.items() if name in int8) / total if total else 0.0


def fp32_embeddings(fp32: Path, feeds: list[dict]) -> list[np.ndarray]:
    """The FP32 model's embedding of every evaluation window, computed once for all variants."""
    from mlperf_qx.runtime import open_session

    reference = open_session(fp32)
    return [reference.run(None, feed)[0].astype(np.float64).ravel() for feed in feeds]


def score(references: list[np.ndarray], candidate: Path, feeds: list[dict], ort_defaults: bool = False) -> dict:
    """``ort_defaults``: open the candidate as onnxruntime does by default. onnxruntime's own int8
    model does not load with qx's exact U8U8 option (``session.x64quantprecision=1``: its shared
    initializers fail "Attempt to replace the existing tensor"), so it runs on onnxruntime's default
    (saturating U8S8 on CPUs without VNNI) path, as its users run it."""
    import onnxruntime as ort

    from mlperf_qx.runtime import open_session

    if ort_defaults:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(candidate), options, providers=["CPUExecutionProvider"])
    else:
        session = open_session(candidate)
    cosines, latencies = [], []
    for index, (feed, a) in enumerate(zip(feeds, references)):
        started = time.perf_counter()
        b = session.run(None, feed)[0].astype(np.float64).ravel()
        if index < LATENCY_RUNS:
            latencies.append(time.perf_counter() - started)
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return {"mean_cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines)),
            "latency_ms": 1000 * float(np.median(latencies))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(data.ENCODERS), default="mpnet")
    parser.add_argument("--skip-ort", action="store_true", help="leave out onnxruntime's quantize_static")
    parser.add_argument("--searched-only", action="store_true", help="FP32 and the searched qx variant only")
    parser.add_argument("--out", type=Path, help="folder for the variants and bench_transformer.json "
                                                 "(default: benchmarks/.cache/<model>/variants)")
    args = parser.parse_args()
    from mlperf_qx.onnx_io import load_model_proto
    from mlperf_qx.quant.flops import matmul_flops

    encoder = data.ENCODERS[args.model]
    model = data.ensure_model(encoder)
    windows = data.windows(encoder)
    calibration = windows["calibration"] + windows["holdout"][:encoder.holdout]
    calib = encoder.cache / "calib"
    calib_list = data.write_calibration(calib, calibration)
    flops = matmul_flops(load_model_proto(model), windows["evaluation"][0])
    out = args.out or encoder.cache / "variants"
    out.mkdir(parents=True, exist_ok=True)
    ranges_only = ["--samples", str(encoder.calibration)]  # the same windows set the ranges everywhere
    searched_name = "qx --equalize smoothquant --target-cosine 0.993"

    def quantize(*extra: str):
        return lambda p: qx_quantize(model, calib, calib_list, p, [*extra], calibration)

    variants = {
        "qx default (minmax)": quantize(*ranges_only),
        "qx --equalize smoothquant": quantize(*ranges_only, "--equalize", "smoothquant"),
        searched_name: quantize("--equalize", "smoothquant", "--target-cosine", "0.993",
                                "--holdout", str(encoder.holdout)),
    }
    if args.searched_only:
        variants = {searched_name: variants[searched_name]}
    elif not args.skip_ort:
        variants["onnxruntime quantize_static entropy"] = lambda p: ort_quantize(model, p, windows["calibration"], "entropy")
        variants["onnxruntime quantize_static minmax"] = lambda p: ort_quantize(model, p, windows["calibration"], "minmax")
    references = fp32_embeddings(model, windows["evaluation"])
    rows = {"FP32": {"exit": 0, **score(references, model, windows["evaluation"]), "int8_matmul_flops": 0.0}}
    for index, (name, run) in enumerate(variants.items()):
        path = out / f"variant_{index}.onnx"
        print(f"running: {name}", flush=True)
        info = {**run(path), "model": str(path)}
        if info["exit"] == 0:
            info.update(score(references, path, windows["evaluation"], ort_defaults=name.startswith("onnxruntime")))
            info["int8_matmul_flops"] = int8_matmul_share(path, flops)
        rows[name] = info
    if rows.get(searched_name, {}).get("exit") == 0:
        print("verifying (intensional) the searched model against the FP32 model", flush=True)
        rows[searched_name]["verify"] = qx_verify(model, Path(rows[searched_name]["model"]), calib, calib_list, out / "verify")
    (out / "bench_transformer.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print_results(rows, encoder, len(windows["evaluation"]), len(calibration), searched_name)


def print_results(rows: dict, encoder, evaluation: int, floor_windows: int, searched_name: str) -> None:
    table = []
    for name, r in rows.items():
        if r["exit"] != 0:
            table.append([name, f"exit {r['exit']}: {' '.join(r.get('error', []))[:60]}", "", "", "", ""])
            continue
        table.append([name, f"{r['mean_cosine']:.4f}", f"{r['min_cosine']:.4f}", f"{100 * r['int8_matmul_flops']:.1f}%",
                      f"{r.get('quantize_s', 0):.1f}", f"{r['latency_ms']:.1f}"])
    common.print_table(f"{encoder.folder_name}, {evaluation} held-out windows of {encoder.seq} tokens "
                       "(cosine vs FP32)", ["variant", "mean cos", "min cos", "MatMul FLOPs int8", "quantize s",
                                            "latency ms"], table)
    for name, r in rows.items():
        if r.get("timings_s"):
            print_phases(name, r, floor_windows)
    searched = rows.get(searched_name, {})
    if searched.get("search"):
        s = searched["search"]
        print(f"\nsearch: {s['target']}, {len(s['fp32_ops'])} ops kept FP32, {s['trials']} trials in {s['seconds']:.1f} s "
              f"(no recalibration); held-out mean cosine {s['start_mean_cosine']:.4f} all int8 -> "
              f"{s['final_mean_cosine']:.4f}")
    if searched.get("target"):
        t = searched["target"]
        print(f"written model on the held-out windows: {t['description']}: {'met' if t['met'] else 'NOT met'}")
    if searched.get("verify"):
        verdict = searched["verify"]
        print(f"\nqx verify-equivalence --mode intensional of it against the FP32 model: exit {verdict['exit']}")
        for name, measured in verdict.get("checks", {}).items():
            print(f"  {name}: {measured}")
    best_ort = max((r["mean_cosine"] for n, r in rows.items() if n.startswith("onnxruntime") and r["exit"] == 0),
                   default=None)
    if best_ort is not None and searched.get("exit") == 0:
        print(f"qx (equalize + target) mean cosine {searched['mean_cosine']:.4f} vs best onnxruntime {best_ort:.4f}: "
              f"error (1 - cos) ratio {(1 - best_ort) / max(1 - searched['mean_cosine'], 1e-9):.1f}x smaller")


def print_phases(name: str, row: dict, windows: int) -> None:
    """quantize's phases in seconds and as multiples of one FP32 pass over the same windows."""
    before, after = row["fp32_pass_s"]
    floor = (before + after) / 2
    phases = [[phase, f"{seconds:.2f}", f"{seconds / floor:.1f}x"] for phase, seconds in row["timings_s"].items()]
    total = sum(row["timings_s"].values())
    phases.append(["total (quantize's phases)", f"{total:.2f}", f"{total / floor:.1f}x"])
    phases.append(["wall, process start to exit", f"{row['quantize_s']:.2f}", f"{row['quantize_s'] / floor:.1f}x"])
    own = f"; quantize's own estimate {row['quantize_fp32_pass_s']:.3f} s" if row.get("quantize_fp32_pass_s") else ""
    common.print_table(f"{name}: phases vs one FP32 pass over the {windows} calibration-list windows "
                       f"({floor:.3f} s; {before:.3f} s before, {after:.3f} s after{own})",
                       ["phase", "seconds", "x FP32 pass"], phases)


if __name__ == "__main__":
    main()
