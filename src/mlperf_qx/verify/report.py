"""verify-equivalence report: Markdown, JSON and PNG plots; the last line is PASSED or FAILED."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..plots import pyplot, save
from .results import SCORED_PERCENTILE, ExtensionalResult, VerifyResult

PERCENTILES = ("50.00", "90.00", "99.00")


def write_report(out: Path, result: VerifyResult, output_errors: np.ndarray | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json", out / "report.md"]
    write_text_atomic(files[0], result.to_json())
    write_text_atomic(files[1], _markdown(result))
    plt = pyplot()
    layers = result.layers
    if layers:
        figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
        axis.bar(range(len(layers)), [min(l.sqnr_db, 80) for l in layers], color="#3b7dd8")
        axis.axhline(result.tolerances.get("min_layer_sqnr_db", 0), color="#d62728", linestyle="--")
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
    if result.extensional is not None:
        files.append(_accuracy_and_latency(plt, result.extensional, out / "accuracy_and_latency.png"))
    return files


def _repeats_lines(ext: ExtensionalResult) -> list[str]:
    """With several performance runs: every run's figure, and that the table shows the median run."""
    roles = {"reference": ext.reference, "candidate": ext.candidate}
    if not all(r.performance_repeats for r in roles.values()):
        return []
    count = len(ext.candidate.performance_repeats)
    even = " (of an even count, the worse of the two middle ones)" if count % 2 == 0 else ""
    lines = ["", f"Performance: {count} LoadGen runs of each model, reference and candidate alternating "
                 f"(reference first in odd rounds, candidate first in even ones); the table shows each model's "
                 f"median run{even}, the one its figures and validity come from. Every run's figure in "
                 f"{ext.candidate.performance_run.scored_unit}:", ""]
    for role, result in roles.items():
        shown = ", ".join(run.scored_text for run in result.performance_repeats)
        lines.append(f"- {role}: {shown} (median: {result.performance_run.folder.name})")
    return lines



def _accuracy_and_latency(plt, ext: ExtensionalResult, path: Path) -> Path:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    roles = {"reference": ext.reference, "candidate": ext.candidate}
    values = [r.score.value for r in roles.values()]
    left.bar(list(roles), values, color=["#777777", "#3b7dd8"])
    left.axhline(ext.threshold, color="#d62728", linestyle="--", label=f"target {ext.target}%")
    left.set_ylabel(ext.metric)
    left.set_ylim(max(0, min(values + [ext.threshold]) - 5), max(100, max(values)))
    left.legend()
    left.set_title(f"{ext.task} (LoadGen AccuracyOnly)")
    for offset, (role, r) in enumerate(roles.items()):
        latency = r.performance_run.latency_ms if r.performance_run else {}
        right.bar(np.arange(3) + 0.4 * offset, [latency.get(p, 0.0) for p in PERCENTILES], width=0.4, label=role)
    right.set_xticks(np.arange(3) + 0.2, [f"p{p[:2]}" for p in PERCENTILES])
    right.set_ylabel("latency (ms)")
    right.set_title("LoadGen PerformanceOnly latency")
    right.legend()
    return save(figure, path)


def _markdown(result: VerifyResult) -> str:
    lines = ["# Equivalence report", "", f"- reference: `{result.reference}`", f"- candidate: `{result.candidate}`",
             f"- dataset: `{result.dataset}` ({result.samples} samples)"
             + (f", labels `{result.labels}`" if result.labels else ""), ""]
    if result.extensional is not None:
        lines += _extensional_markdown(result.extensional)
    if result.intensional is not None:
        lines += ["## Intensional verdict (same mathematics, MLPerf training rules)", "",
                  "Computed on onnxruntime's exact reference numerics, whatever runtime answered LoadGen.", "",
                  "| check | measured | result | detail |", "|---|---|---|---|"]
        for check in result.intensional.checks:
            lines.append(f"| {check['name']} | {check['measured']} | {check['status']} | {check['detail']} |")
        lines += ["", f"**{result.intensional.verdict}**", ""]
    if result.layers:
        lines += ["## Per-layer numerics", "", "| tensor | op | SQNR dB | cosine | max abs |", "|---|---|---|---|---|"]
        lines += [f"| {l.tensor} | {l.op_type} | {l.sqnr_db:.2f} | {l.cosine:.5f} | {l.max_abs_error:.4g} |"
                  for l in result.layers]
        lines.append("")
    lines.append(result.verdict)
    return "\n".join(lines) + "\n"


def _runtime_caveat(ext: ExtensionalResult) -> list[str]:
    """What a verdict answered by another runtime holds for, and how far that runtime's answers
    are from onnxruntime's on the same files (measured: ``runtime_agreement``)."""
    if not ext.runtime_agreement:
        return []
    runtime = ext.candidate.backend.split(" ")[0]
    lines = [f"The scores are {runtime}'s answers: its int8 arithmetic is its own, so this verdict holds for "
             f"{runtime} and may differ from onnxruntime's on the same files (the intensional verdict is always "
             "computed on onnxruntime's exact reference numerics). Its answers against onnxruntime's on "
             "the same file (the outputs the responses are made of):", ""]
    lines += [f"- {role}: {agreement.describe()}" for role, agreement in ext.runtime_agreement.items()]
    return lines + [""]


def _extensional_markdown(ext: ExtensionalResult) -> list[str]:
    response = ext.response
    lines = ["## Extensional verdict (behaviour, MLPerf inference rules)", "",
             f"Task `{ext.task}`: responses are {response.layout} in {response.dtype} "
             f"(outputs {', '.join(response.outputs)}).", "",
             f"Runtime that answered LoadGen: reference on {ext.reference.backend}; candidate on "
             f"{ext.candidate.backend}.", "", *_runtime_caveat(ext),
             f"| model | {ext.metric} | accuracy script | samples/s | p50 ms | p90 ms | LoadGen result |",
             "|---|---|---|---|---|---|---|"]
    for role in ("reference", "candidate"):
        r = getattr(ext, role)
        run = r.performance_run
        latency = run.latency_ms if run else {}
        # Throughput is Offline's and Server's metric; a stream scenario's run reports latencies only.
        rate = run.scored_figure if run and run.scenario not in SCORED_PERCENTILE else None  # Server: completed
        rate = "-" if rate is None else rate
        lines.append(f"| {role} | {r.score.value:.3f} | `{r.score.line}` | "
                     f"{rate} | {latency.get('50.00', float('nan')):.3f} | "
                     f"{latency.get('90.00', float('nan')):.3f} | {run.result_validity if run else '-'} |")
    lines += _repeats_lines(ext)
    lines += ["", f"Candidate {ext.candidate.score.value:.3f} vs threshold {ext.threshold:.3f} "
                  f"({ext.target}% of the reference): **{accuracy_status(ext)}**", ""]
    for problem in ext.score_problems:
        lines.append(f"- {ext.task}: FAIL: {problem}")
    for problem in ext.run_problems:
        lines.append(f"- run not as asked: {problem}")
    run = ext.candidate.performance_run
    if run is not None:
        if run.submission_problems:
            lines += ["", f"The performance run is **not valid for submission** under {ext.rules}:", ""]
            lines += [f"- {p}" for p in run.submission_problems]
        else:
            lines += ["", f"The performance run is **VALID for submission** under {ext.rules} (the checker's "
                          "performance checks: seeds, duration, sample counts, early stopping, latency bound)."]
    if ext.compliance is not None:
        lines += ["", f"Compliance {ext.compliance.test}: " + "; ".join(f"{k}: {v}" for k, v in ext.compliance.lines.items())]
        if ext.compliance.part_three:
            lines += ["", "TEST01 Part III: " + "; ".join(f"{k}: {v}" for k, v in ext.compliance.part_three.items())]
    lines += ["", f"Extensional verdict: **{'PASS' if ext.passed else 'FAIL'}**"]
    return lines + [""]


def accuracy_status(ext) -> str:
    if not ext.accuracy_passed:
        return "FAIL"
    return f"NOT CHECKED: {ext.not_checked}" if ext.not_checked else "PASS"
