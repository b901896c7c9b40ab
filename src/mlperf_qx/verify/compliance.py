"""MLPerf's compliance tests TEST01 and TEST04 for the candidate, run with LoadGen's audit config
and verified the way ``compliance/TEST0X/verify_*.py`` of the MLPerf inference repository verify
them; each writes the ``verify_*.txt`` files those scripts write ("TEST PASS" / "TEST FAIL").

- TEST01: a performance run that also logs a sample of its responses (accuracy_log_rng_seed,
  accuracy_log_sampling_target); every logged response must equal the accuracy run's answer for
  that sample (first value, in the response dtype), and the throughput or latency must stay within
  10 % of the performance run (20 % for SingleStream under 200 µs).
- TEST04: a performance run issuing one sample over and over; it must not be more than 10 %
  faster than the performance run (which would reveal caching of results).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..calibration.readers import CalibrationSet
from .loadgen_harness import Backend, Encode, run_loadgen
from .loadgen_settings import LoadGenConfig
from .results import ComplianceResult, LoadGenRun

TESTS = ("TEST01", "TEST04")
# The keys of MLPerf's compliance/TEST01/<model>/audit.config and compliance/TEST04/audit.config
# (mode 2 = PerformanceOnly).
AUDIT_CONFIGS = {
    "TEST01": ("*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n"
               "*.*.accuracy_log_sampling_target = 4096\n"),
    "TEST04": "".join(f"*.{s}.mode = 2\n*.{s}.performance_issue_unique = 0\n*.{s}.performance_issue_same = 1\n"
                      f"*.{s}.performance_issue_same_index = 3\n" for s in ("SingleStream", "Offline")),
}


def run_compliance(test: str, backend: Backend, samples: CalibrationSet, encode: Encode, folder: Path,
                   config: LoadGenConfig, accuracy_run: LoadGenRun, performance_run: LoadGenRun,
                   dtype: str) -> ComplianceResult:
    folder.mkdir(parents=True, exist_ok=True)
    audit = folder / "audit.config"
    audit.write_text(AUDIT_CONFIGS[test], encoding="utf-8")
    run = run_loadgen(backend, samples, encode, "performance", folder / "run", replace(config, audit_config=audit))
    run.mode = test
    lines = {}
    if test == "TEST01":
        lines["verify_accuracy.txt"] = _verify_accuracy(accuracy_run, run, np.dtype(dtype), folder)
    lines["verify_performance.txt"] = _verify_performance(test, performance_run, run, folder)
    return ComplianceResult(test, all(line == "TEST PASS" for line in lines.values()), run, lines)


def _score(run: LoadGenRun) -> tuple[str, float | None]:
    """MLPerf's figure of merit as a throughput: samples/s (Offline), 1e9 / early-stopping latency (SingleStream)."""
    scenario = run.detail.get("effective_scenario")
    if scenario == "SingleStream":
        latency = run.detail.get("early_stopping_latency_ss")
        return scenario, (1e9 / float(latency)) if latency else None
    return scenario, run.samples_per_second


def _verify_performance(test: str, reference: LoadGenRun, run: LoadGenRun, folder: Path) -> str:
    ref_scenario, ref_score = _score(reference)
    scenario, score = _score(run)
    report = ["Verifying performance.", f"Reference score = {ref_score}", f"Test score = {score}"]
    if reference.result_validity != "VALID" or run.result_validity != "VALID":
        verdict = (f"TEST FAIL: Invalid results (performance run {reference.result_validity}, "
                   f"{test} run {run.result_validity})")
    elif scenario != ref_scenario or not ref_score or not score:
        verdict = "TEST FAIL: scenarios differ or a score is missing"
    else:
        threshold = 0.20 if scenario == "SingleStream" and 1e9 / ref_score <= 200_000 else 0.10
        within = score < ref_score * (1 + threshold) if test == "TEST04" else \
            ref_score * (1 - threshold) <= score <= ref_score * (1 + threshold)
        verdict = "TEST PASS" if within else "TEST FAIL: Test score invalid"
    write_text_atomic(folder / "verify_performance.txt", "\n".join(report + [verdict]) + "\n")
    return verdict


def _verify_accuracy(accuracy: LoadGenRun, run: LoadGenRun, dtype: np.dtype, folder: Path) -> str:
    first = {}
    for entry in json.loads((accuracy.folder / "mlperf_log_accuracy.json").read_text(encoding="utf-8")):
        first.setdefault(entry["qsl_idx"], entry["data"])
    logged = json.loads((run.folder / "mlperf_log_accuracy.json").read_text(encoding="utf-8"))
    matched = mismatched = missing = 0
    for entry in logged:
        if entry["qsl_idx"] not in first:
            missing += 1
            continue
        matched += 1
        a = np.frombuffer(bytes.fromhex(first[entry["qsl_idx"]]), dtype)
        b = np.frombuffer(bytes.fromhex(entry["data"]), dtype)
        if a.size != b.size or (a.size and a[0] != b[0]):
            mismatched += 1
    verdict = "TEST PASS" if mismatched == 0 and matched > 0 else "TEST FAIL"
    report = [f"num_acc_log_entries = {len(first)}", f"num_perf_log_entries = {len(logged)}",
              f"num_perf_log_qsl_idx_match = {matched}", f"num_perf_log_data_mismatch = {mismatched}",
              f"num_missing_qsl_idxs = {missing}", verdict]
    write_text_atomic(folder / "verify_accuracy.txt", "\n".join(report) + "\n")
    return verdict
