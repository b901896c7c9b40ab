"""Several LoadGen performance runs per model: the order they run in, and which one is reported."""

from pathlib import Path

from mlperf_qx.verify.loadgen_log import DetailLog
from mlperf_qx.verify.performance_runs import alternating_order, default_runs, median_run
from mlperf_qx.verify.results import LoadGenRun


def _run(scenario: str, folder: str, samples_per_second=None, p90_ns=None, p99_ns=None) -> LoadGenRun:
    summary = {}
    if samples_per_second is not None:
        summary["Samples per second"] = str(samples_per_second)
    if p90_ns is not None:
        summary["90.00 percentile latency (ns)"] = str(p90_ns)
    if p99_ns is not None:
        summary["99.00 percentile latency (ns)"] = str(p99_ns)
    return LoadGenRun("performance", Path(folder), "PerformanceOnly", summary,
                      DetailLog({"effective_scenario": scenario}))


def test_models_alternate_so_that_neither_always_runs_first():
    assert alternating_order(["reference", "candidate"], 1) == ["reference", "candidate"]
    assert alternating_order(["reference", "candidate"], 3) == ["reference", "candidate", "candidate", "reference",
                                                                 "reference", "candidate"]
    assert default_runs(quick=True) == 3 and default_runs(quick=False) == 1


def test_the_median_run_is_reported_and_of_two_middles_the_worse():
    runs = [_run("Offline", f"run_{n}", rate) for n, rate in enumerate((200.0, 100.0, 300.0), 1)]
    assert median_run(runs).folder.name == "run_1"
    assert median_run(runs[:2]).folder.name == "run_2"  # 100 and 200 samples/s: the slower
    assert median_run(runs[:1]).folder.name == "run_1"
    # A run without a figure (it failed) counts as the worst, never as the median's better half.
    failed = _run("Offline", "run_4")
    assert median_run([runs[2], failed, runs[0]]).folder.name == "run_1"


def test_stream_scenarios_take_the_median_of_their_scored_latency_where_lower_is_better():
    single = [_run("SingleStream", f"run_{n}", p90_ns=ns) for n, ns in enumerate((3e6, 1e6, 2e6), 1)]
    assert median_run(single).folder.name == "run_3"
    assert median_run(single[:2]).folder.name == "run_1"  # 3 ms and 1 ms: the slower
    multi = [_run("MultiStream", f"run_{n}", p90_ns=1e6, p99_ns=ns) for n, ns in enumerate((9e6, 5e6), 1)]
    assert median_run(multi).folder.name == "run_1"  # scored by the 99th percentile, not the 90th
    assert multi[1].scored_figure == 5.0
