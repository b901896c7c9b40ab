"""verify-equivalence report: Markdown, JSON and PNG plots; the last line is PASSED or FAILED."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..plots import pyplot, save


def write_report(out: Path, verdict: dict, layers: list, output_errors: np.ndarray | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json", out / "report.md"]
    write_text_atomic(files[0], json.dumps({**verdict, "layers": [asdict(l) for l in layers]}, indent=2,
                                           sort_keys=True, default=float) + "\n")
    write_text_atomic(files[1], _markdown(verdict, layers))
    plt = pyplot()
    if layers:
        figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
        axis.bar(range(len(layers)), [min(l.sqnr_db, 80) for l in layers], color="#3b7dd8")
        axis.axhline(verdict.get("tolerances", {}).get("min_layer_sqnr_db", 0), color="#d62728", linestyle="--")
        axis.set_xticks(range(len(layers)), [l.tensor for l in layers], rotation=70, ha="right", fontsize=7)
        axis.set_ylabel("SQNR reference vs candidate (dB)")
        axis.set_title("Per-layer SQNR")
        files.append(save(figure, out / "layer_sqnr.png"))
    if output_errors is not None and output_errors.size:
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.hist(output_errors.ravel(), bins=80, color="#777777", log=True)
        axis.set_xlabel("candidate - reference (model output)")
        axis.set_title("Output error histogram")
        files.append(save(figure, out / "output_error_histogram.png"))
    ext = verdict.get("extensional")
    if ext:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        roles = ["reference", "candidate"]
        left.bar(roles, [ext[r]["accuracy"] for r in roles], color=["#777777", "#3b7dd8"])
        left.axhline(ext["threshold"], color="#d62728", linestyle="--", label=f"target {ext['target']}%")
        left.set_ylabel("top-1 accuracy (%)")
        left.set_ylim(max(0, min(ext[r]["accuracy"] for r in roles) - 5), 100)
        left.legend()
        left.set_title("Accuracy (LoadGen AccuracyOnly)")
        percentiles = ["50.00", "90.00", "99.00"]
        for offset, role in enumerate(roles):
            latency = ext[role].get("latency_ms", {})
            values = [latency.get(p, 0.0) for p in percentiles]
            right.bar(np.arange(3) + 0.4 * offset, values, width=0.4, label=role)
        right.set_xticks(np.arange(3) + 0.2, [f"p{p[:2]}" for p in percentiles])
        right.set_ylabel("latency (ms)")
        right.set_title("LoadGen PerformanceOnly latency")
        right.legend()
        files.append(save(figure, out / "accuracy_and_latency.png"))
    return files


def _markdown(verdict: dict, layers: list) -> str:
    lines = ["# Equivalence report", "", f"- reference: `{verdict['reference']}`", f"- candidate: `{verdict['candidate']}`",
             f"- dataset: `{verdict['dataset']}` ({verdict['samples']} samples), labels `{verdict['labels']}`", ""]
    ext = verdict.get("extensional")
    if ext:
        lines += ["## Extensional verdict (behaviour, MLPerf inference rules)", "",
                  "| model | accuracy | samples/s | p50 ms | p90 ms |", "|---|---|---|---|---|"]
        for role in ("reference", "candidate"):
            r = ext[role]
            lat = r.get("latency_ms", {})
            lines.append(f"| {role} | {r['accuracy']:.3f}% | {r.get('samples_per_second', '-')} | "
                         f"{lat.get('50.00', float('nan')):.3f} | {lat.get('90.00', float('nan')):.3f} |")
        lines += ["", f"Candidate {ext['candidate']['accuracy']:.3f}% vs threshold {ext['threshold']:.3f}% "
                      f"({ext['target']}% of the reference): **{'PASS' if ext['passed'] else 'FAIL'}**", ""]
    intensional = verdict.get("intensional")
    if intensional:
        lines += ["## Intensional verdict (same mathematics, MLPerf training rules)", "",
                  "| check | measured | result | detail |", "|---|---|---|---|"]
        for check in intensional["checks"]:
            lines.append(f"| {check['name']} | {check['measured']} | {'PASS' if check['passed'] else 'FAIL'} | "
                         f"{check['detail']} |")
        lines += ["", f"**{'PASS' if intensional['passed'] else 'FAIL'}**", ""]
    if layers:
        lines += ["## Per-layer numerics", "", "| tensor | op | SQNR dB | cosine | max abs |", "|---|---|---|---|---|"]
        lines += [f"| {l.tensor} | {l.op_type} | {l.sqnr_db:.2f} | {l.cosine:.5f} | {l.max_abs_error:.4g} |" for l in layers]
        lines.append("")
    lines.append("PASSED" if verdict["passed"] else "FAILED")
    return "\n".join(lines) + "\n"
