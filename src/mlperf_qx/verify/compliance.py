"""MLPerf's compliance tests TEST01 and TEST04 for the candidate, run with LoadGen's audit config
and verified the way ``compliance/TEST0X/verify_*.py`` of the MLPerf inference repository verify
them; each writes the ``verify_*.txt`` files those scripts write ("TEST PASS" / "TEST FAIL").

- TEST01: a performance run that also logs a sample of its responses (accuracy_log_rng_seed and
  the benchmark's accuracy_log_sampling_target, compliance/TEST01/<benchmark>/audit.config); every
  logged response must equal the accuracy run's answer for that sample (first value, in the
  response dtype), and the run's result field must stay within 10 % of the performance run's
  (TEST01/verify_performance.py:33-38, 96-102): samples/s for Offline and Server, the early-stopping
  latency itself for SingleStream and MultiStream; 20 % when that latency is <= 200 us
  (SingleStream) or <= 1.6 ms (MultiStream).
- TEST04: a performance run issuing one sample over and over; its score must stay below 1.1 x the
  performance run's (TEST04/verify_performance.py:137-148): samples/s for Offline, completed
  samples/s for Server, 1e9 / early-stopping latency for SingleStream and MultiStream; 1.2 x when
  that score is <= 200000 (SingleStream) or <= 1600000 (MultiStream), as the script compares it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..calibration.readers import CalibrationSet
from .loadgen_harness import Backend, run_loadgen
from .loadgen_settings import LoadGenConfig
from .results import RESULT_FIELDS, ComplianceResult, LoadGenRun  # TEST01 reads RESULT_FIELDS (TEST01/verify_performance.py:33-38)
from .tasks import Task

TESTS = ("TEST01", "TEST04")
SCENARIO_NAMES = ("MultiStream", "Offline", "SingleStream", "Server")
# The keys of MLPerf's compliance/TEST01/<model>/audit.config and compliance/TEST04/audit.config
# (mode 2 = PerformanceOnly); TEST01's sampling target is the benchmark's (benchmarks.py).
TEST01_SEED = 720381539243781796
DEFAULT_SAMPLING_TARGET = 4096  # compliance/TEST01/resnet50|bert|rgat|whisper/audit.config
TEST04_AUDIT = "".join(f"*.{s}.mode = 2\n*.{s}.performance_issue_unique = 0\n*.{s}.performance_issue_same = 1\n"
                       f"*.{s}.performance_issue_same_index = 3\n" for s in SCENARIO_NAMES)
# Where the 10 % band widens to 20 % for the latency scenarios (both verify_performance.py scripts).
RELAXED_BOUND = {"SingleStream": 200_000, "MultiStream": 1_600_000}


def audit_config_text(test: str, config: LoadGenConfig) -> str:
    if test == "TEST04":
        return TEST04_AUDIT
    bench = config.benchmark
    target = bench.test01_sampling_target if bench and bench.test01_sampling_target else DEFAULT_SAMPLING_TARGET
    return (f"*.*.mode = 2\n*.*.accuracy_log_rng_seed = {TEST01_SEED}\n"
            f"*.*.accuracy_log_sampling_target = {target}\n")


def run_compliance(test: str, backend: Backend, samples: CalibrationSet, task: Task, labels: Path | None,
                   folder: Path, config: LoadGenConfig, runs: tuple[LoadGenRun, LoadGenRun],
                   reference_log: Path) -> ComplianceResult:
    """``runs``: the candidate's accuracy and performance runs; ``reference_log``: the reference's
    accuracy log (the truth of tasks scored without labels). The compliance run's logs stay whole
    in ``folder/run``: MLPerf's TEST01/run_verification.py reads them from there (-c), and the
    candidate's accuracy/ and performance/run_1/ from the folder above (-r)."""
    accuracy_run, performance_run = runs
    folder.mkdir(parents=True, exist_ok=True)
    audit = folder / "audit.config"
    audit.write_text(audit_config_text(test, config), encoding="utf-8")
    run = run_loadgen(backend, samples, task.encode, "performance", folder / "run",
                      replace(config, audit_config=audit))
    run.mode = test
    lines, part_three = {}, {}
    if test == "TEST01":
        lines["verify_accuracy.txt"] = _verify_accuracy(accuracy_run, run, np.dtype(task.response.dtype), folder)
        if lines["verify_accuracy.txt"] != "TEST PASS":
            part_three = _part_three(task, labels, accuracy_run, run, reference_log, folder)
    lines["verify_performance.txt"] = _verify_performance(test, performance_run, run, folder)
    accurate = lines.get("verify_accuracy.txt", "TEST PASS") == "TEST PASS" or (
        part_three and part_three["delta_percent"] <= delta_allowed(config))
    return ComplianceResult(test, bool(accurate) and lines["verify_performance.txt"] == "TEST PASS", run, lines,
                            part_three)


def delta_allowed(config: LoadGenConfig) -> float:
    """The accuracy delta Part III allows, in percent: 0.1 for a 99.9 % benchmark, else 1
    (submission_checker/configuration/configuration.py get_delta_perc)."""
    return 0.1 if config.model_name and "99.9" in config.benchmark.name else 1.0


def _part_three(task: Task, labels: Path | None, accuracy_run: LoadGenRun, run: LoadGenRun, reference_log: Path,
                folder: Path) -> dict:
    """TEST01 Part III (compliance/TEST01/README.md), needed when Part I finds responses that differ:
    the accuracy run restricted to the samples the compliance run logged (create_accuracy_baseline.sh)
    and the compliance run's log, each scored by the accuracy script; their scores must agree within
    the benchmark's delta. Writes accuracy/{baseline,compliance}_accuracy.txt."""
    logged = json.loads((run.folder / "mlperf_log_accuracy.json").read_text(encoding="utf-8"))
    indices = {entry["qsl_idx"] for entry in logged}
    everything = json.loads((accuracy_run.folder / "mlperf_log_accuracy.json").read_text(encoding="utf-8"))
    baseline_log = folder / "mlperf_log_accuracy_baseline.json"
    write_text_atomic(baseline_log, json.dumps([e for e in everything if e["qsl_idx"] in indices]))
    baseline = task.score(baseline_log, reference_log, labels)
    compliance = task.score(run.folder / "mlperf_log_accuracy.json", reference_log, labels)
    (folder / "accuracy").mkdir(exist_ok=True)
    write_text_atomic(folder / "accuracy" / "baseline_accuracy.txt", baseline.line + "\n")
    write_text_atomic(folder / "accuracy" / "compliance_accuracy.txt", compliance.line + "\n")
    delta = abs(1 - baseline.value / compliance.value) * 100 if compliance.value else float("inf")
    return {"baseline_accuracy.txt": baseline.line, "compliance_accuracy.txt": compliance.line,
            "delta_percent": delta}


def score(test: str, run: LoadGenRun) -> tuple[str | None, float | None]:
    """The figure MLPerf's verify_performance.py of ``test`` compares, and the run's scenario."""
    scenario = run.detail.get("effective_scenario")
    if test == "TEST01":
        value = run.detail.get(RESULT_FIELDS.get(scenario, ""))
    elif scenario in ("SingleStream", "MultiStream"):
        latency = run.detail.get(RESULT_FIELDS[scenario])
        value = 1e9 / float(latency) if latency else None
    else:
        value = run.summary.get("Completed samples per second" if scenario == "Server" else "Samples per second")
    try:
        return scenario, float(value) if value is not None else None
    except ValueError:
        return scenario, None


def performance_verdict(test: str, scenario: str, reference: float, measured: float) -> str:
    """TEST01: the score within the band around the reference's; TEST04: below its upper edge."""
    threshold = 0.20 if reference <= RELAXED_BOUND.get(scenario, -1) else 0.10
    if test == "TEST04":
        within = measured < reference * (1 + threshold)
    else:
        within = reference * (1 - threshold) <= measured <= reference * (1 + threshold)
    return "TEST PASS" if within else "TEST FAIL: Test score invalid"


def _verify_performance(test: str, reference: LoadGenRun, run: LoadGenRun, folder: Path) -> str:
    ref_scenario, ref_score = score(test, reference)
    scenario, test_score = score(test, run)
    report = ["Verifying performance.", f"Reference score = {ref_score}", f"Test score = {test_score}"]
    if reference.result_validity != "VALID" or run.result_validity != "VALID":
        verdict = (f"TEST FAIL: Invalid results (performance run {reference.result_validity}, "
                   f"{test} run {run.result_validity})")
    elif scenario != ref_scenario or not ref_score or not test_score:
        verdict = "TEST FAIL: scenarios differ or a score is missing"
    elif scenario == "Server" and (run.detail.get("effective_target_latency_ns")
                                   != reference.detail.get("effective_target_latency_ns")):
        verdict = "TEST FAIL: Server target latency mismatch"
    else:
        verdict = performance_verdict(test, scenario, ref_score, test_score)
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
