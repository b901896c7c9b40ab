"""The quantization report: per-tensor ranges and histograms with the chosen threshold, per-layer
SQNR of int8 against FP32 on the check samples (held-out ones with a precision target), as JSON, Markdown and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx

from ..atomic import write_text_atomic
from ..plots import pyplot, save
from ..onnx_io import load_model_proto
from .annotate import QuantPlan
from .observers import HistogramObserver
from .runtime_check import cosine, run_with_tensors, sqnr_db

MAX_HISTOGRAM_PANELS = 16


def layer_errors(fp32: Path | onnx.ModelProto, int8_path: Path, tensors: list[str], feeds: list[dict]) -> list[dict]:
    """Each quantized tensor, FP32 model vs the int8 model's dequantized value of it. ``fp32``: the
    model that was quantized (the equalized one, when equalized: its tensors are the ones quantized)."""
    if not feeds or not tensors:
        return []
    int8 = onnx.load(str(int8_path))
    fp32 = fp32 if isinstance(fp32, onnx.ModelProto) else load_model_proto(fp32)
    produced = {o for node in int8.graph.node for o in node.output}
    # Only tensors a node of the reference computes: canonicalization may have renamed or folded
    # one (it is then not in the file as given), and an initializer cannot be made an output.
    computed = {o for node in fp32.graph.node for o in node.output} | {i.name for i in fp32.graph.input}
    computed -= {t.name for t in fp32.graph.initializer}
    pairs = [(t, f"{t}_dequantized") for t in tensors if f"{t}_dequantized" in produced and t in computed]
    reference = run_with_tensors(fp32, feeds, [t for t, _ in pairs])
    candidate = run_with_tensors(int8, feeds, [q for _, q in pairs])
    rows = []
    for tensor, quantized in pairs:
        a, b = reference[tensor], candidate[quantized]
        rows.append({"tensor": tensor, "sqnr_db": sqnr_db(a, b), "cosine": cosine(a, b),
                     "max_abs_error": float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0})
    return rows


def write_report(folder: Path, fp32_path: Path, int8_path: Path, plan: QuantPlan, result, observers: dict,
                 layers: list[dict], options) -> list[Path]:
    """``layers``: ``layer_errors`` of the two models (measured once by the caller)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: {"amax": r.amax, "scale": r.scale, "count": r.count, "group": plan.group_of(name),
               "observed_max": getattr(observers.get(name), "amax", None)}
        for name, r in sorted(result.ranges.items())
    }
    payload = {
        "fp32_model": str(fp32_path), "int8_model": str(int8_path), "method": options.method.value,
        "percentile": options.percentile, "format": options.fmt.value, "samples": result.samples,
        "tensors": tensors, "layers": layers, "output_sqnr_db": result.output_sqnr_db,
        "onnxruntime_int8_kernels": result.fusion.int8_kernels, "onnxruntime_fused_nodes": result.fusion.fused_nodes,
        "nodes": [vars(d) for d in result.decisions],
        "output_sqnr_samples": result.sqnr_on,
        "held_out": result.held_out.as_dict() if result.held_out else None,
        "target": result.claim.describe() if result.claim else None,
        "layer_tolerance": {"layers": result.tolerance.layers_measured,
                            "failing": [vars(f) for f in result.tolerance.failing],
                            "changes": result.tolerance.remedies} if result.tolerance else None,
    }
    files = [folder / "quantization_report.json", folder / "quantization_report.md"]
    write_text_atomic(files[0], json.dumps(payload, indent=2, sort_keys=True, default=_json_number) + "\n")
    write_text_atomic(files[1], _markdown(payload))
    files.append(_plot_sqnr(folder / "layer_sqnr.png", layers))
    histograms = {n: o for n, o in observers.items() if isinstance(o, HistogramObserver) and o.width}
    if histograms:
        files.append(_plot_histograms(folder / "histograms.png", histograms, result.ranges))
    return files


def _json_number(value):
    return float(value)


def _markdown(payload: dict) -> str:
    lines = [f"# Quantization report: {Path(payload['int8_model']).name}", "",
             f"Method **{payload['method']}**, format **{payload['format']}**, {payload['samples']} calibration "
             "samples. Symmetric per-tensor int8, zero point 0, int32 bias.", ""]
    lines += [f"## Outputs, int8 vs FP32 (written model, {payload['output_sqnr_samples']} samples)", "",
              "| output | SQNR (dB) |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in payload["output_sqnr_db"].items()]
    if payload["target"]:
        lines += ["", f"Target {payload['target']}"]
    tolerance = payload["layer_tolerance"]
    if tolerance and tolerance["layers"]:
        lines += ["", f"Verify's layer tolerance: {tolerance['layers'] - len(tolerance['failing'])}/{tolerance['layers']} "
                  "layers within, on the reference's inputs."]
        lines += [f"- {change}" for change in tolerance["changes"]]
    lines += ["", "## onnxruntime int8 kernels after fusion", ""]
    lines += [f"- {op}: {n}" for op, n in payload["onnxruntime_int8_kernels"].items()] or ["- none"]
    lines += ["", "## Per-layer error (quantized tensors)", "", "| tensor | SQNR (dB) | cosine | max abs error |",
              "|---|---|---|---|"]
    lines += [f"| {r['tensor']} | {r['sqnr_db']:.2f} | {r['cosine']:.5f} | {r['max_abs_error']:.4g} |" for r in payload["layers"]]
    lines += ["", "## Tensor ranges", "", "| tensor | threshold (amax) | scale | values seen |", "|---|---|---|---|"]
    lines += [f"| {n} | {t['amax']:.5g} | {t['scale']:.5g} | {t['count']} |" for n, t in payload["tensors"].items()]
    lines += ["", "## Nodes kept in FP32", "", "| node | op | reason |", "|---|---|---|"]
    lines += [f"| {d['name']} | {d['op_type']} | {d['reason']} |" for d in payload["nodes"] if not d["quantized"]]
    return "\n".join(lines) + "\n"


def _plot_sqnr(path: Path, layers: list[dict]) -> Path:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
    values = [min(r["sqnr_db"], 80.0) for r in layers]
    axis.bar(range(len(values)), values, color="#3b7dd8")
    axis.set_xticks(range(len(values)), [r["tensor"] for r in layers], rotation=70, ha="right", fontsize=7)
    axis.set_ylabel("SQNR int8 vs FP32 (dB)")
    axis.set_title("Per-layer SQNR on the check samples (end to end)")
    return save(figure, path, dpi=110)


def _plot_histograms(path: Path, observers: dict, ranges: dict) -> Path:
    plt = pyplot()
    names = sorted(observers)[:MAX_HISTOGRAM_PANELS]
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for axis, name in zip(axes.ravel(), names):
        observer = observers[name]
        edges = np.arange(observer.hist.size) * observer.width
        axis.bar(edges, observer.hist, width=observer.width, color="#777777", log=True)
        axis.axvline(ranges[name].amax, color="#d62728", label=f"threshold {ranges[name].amax:.3g}")
        axis.set_title(name, fontsize=8)
        axis.legend(fontsize=7)
    for axis in axes.ravel()[len(names):]:
        axis.axis("off")
    figure.suptitle("|x| histograms and chosen thresholds")
    return save(figure, path)
