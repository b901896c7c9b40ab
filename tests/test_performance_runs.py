"""Several LoadGen performance runs per model: the order they run in, and which one is reported."""

from pathlib import Path

from mlperf_qx.verify.loadgen_log import DetailLog
from mlperf_qx.verify.performance_runs import alternating_order, default_runs, drop_stale_runs, median_run
from mlperf_qx.verify.results import LoadGenRun


def _run(scenario: str, folder: str, samples_per_second=None, p90_ns=None, p99_ns=None, **detail) -> LoadGenRun:
    summary = {}
    if samples_per_second is not None:
        summary["Samples per second"] = str(samples_per_second)
    if p90_ns is not None:
        summary["90.00 percentile latency (ns)"] = str(p90_ns)
    if p99_ns is not None:
        summary["99.00 percentile latency (ns)"] = str(p99_ns)
    return LoadGenRun("performance", Path(folder), "PerformanceOnly", summary,
                      DetailLog({"effective_scenario": scenario, **detail}))


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


def test_each_scenario_is_ranked_by_the_field_the_submission_checker_scores():
    """Server by its completed samples/s, stream scenarios by LoadGen's early-stopping estimate
    (ns in the detail log) rather than the plain percentile, where the log has them."""
    server = [_run("Server", f"run_{n}", result_completed_samples_per_sec=rate) for n, rate in enumerate((3091, 3089, 3090), 1)]
    assert [run.scored_figure for run in server] == [3091.0, 3089.0, 3090.0]
    assert median_run(server).folder.name == "run_3" and server[0].scored_unit == "completed samples/s"
    single = [_run("SingleStream", f"run_{n}", p90_ns=1e6, early_stopping_latency_ss=ns)
              for n, ns in enumerate((4e6, 2e6, 3e6), 1)]
    assert single[0].scored_figure == 4.0 and median_run(single).folder.name == "run_3"
    assert "early-stopping p90" in single[0].scored_unit
    offline = _run("Offline", "run_1", 100.0, result_samples_per_second="250.5")
    assert offline.scored_figure == 250.5


def test_runs_an_earlier_verify_left_beyond_the_count_are_removed_and_nothing_else(tmp_path):
    for role in ("reference", "candidate"):
        for name in ("run_1", "run_2", "run_3", "run_10", "run_x", "notes"):
            (tmp_path / role / "performance" / name).mkdir(parents=True)
    (tmp_path / "reference" / "performance" / "run_4").write_text("a file, not a run folder")
    drop_stale_runs(tmp_path, ["reference", "candidate"], 2)
    for role in ("reference", "candidate"):
        left = sorted(p.name for p in (tmp_path / role / "performance").iterdir())
        assert left == (["notes", "run_1", "run_2", "run_4", "run_x"] if role == "reference"
                        else ["notes", "run_1", "run_2", "run_x"])
