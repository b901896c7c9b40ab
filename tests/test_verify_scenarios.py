"""LoadGen's four scenarios on a tiny real ONNX model, the v6.1 benchmark names and the submission
checker's rules (values read from MLPerf's inference repository, cited per test), without the CLI's
reference/candidate pairs: each LoadGen run here is a quick run of a fraction of a second."""

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from importlib.metadata import version

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import REPO
from mlperf_qx.calibration.model_inputs import ModelInput
from mlperf_qx.calibration.readers import open_all_samples
from mlperf_qx.errors import UserInputError
from mlperf_qx.verify.benchmarks import BENCHMARKS, LOADGEN_VERSION, benchmark, check_compliance, check_scenario
from mlperf_qx.verify.loadgen_harness import onnx_backend, run_loadgen
from mlperf_qx.verify.loadgen_log import DetailLog
from mlperf_qx.verify.loadgen_settings import LoadGenConfig, QuickRun
from mlperf_qx.verify.offline_target import (
    LOADGEN_OFFLINE_SLACK,
    MAX_FASTEST_OVER_MEDIAN,
    OFFICIAL_OVERRUN,
    QUICK_OVERRUN,
    fastest_planned_rate,
    offline_expected_qps,
    offline_run_seconds,
    offline_sample_count,
)
from mlperf_qx.verify.results import LoadGenRun
from mlperf_qx.verify.tasks import make_task
from mlperf_qx.verify.validity import checker_problems, submission_problems

QUICK = QuickRun(min_duration_ms=300, min_query_count=64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 16 -> 10 MatMul classifier and 64 samples: fast enough that LoadGen's own overhead shows."""
    folder = tmp_path_factory.mktemp("scenarios")
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "tiny.onnx")
    (folder / "data").mkdir()
    for i in range(64):
        np.save(folder / "data" / f"s{i:03d}.npy", rng.standard_normal((1, 16)).astype(np.float32))
    samples = open_all_samples(folder / "data", [ModelInput("x", (None, 16), np.dtype(np.float32))], "--dataset")
    return {"folder": folder, "model": folder / "tiny.onnx", "samples": samples,
            "task": make_task("classification", ["logits"], [], None, 0)}


def _run(tiny, scenario, name, backend=None, **config):
    config = LoadGenConfig(scenario=scenario, quick=QUICK, **{"model_name": "resnet", **config})
    backend = backend or onnx_backend(tiny["model"], 16)
    return run_loadgen(backend, tiny["samples"], tiny["task"].encode, "performance", tiny["folder"] / name, config), \
        config


@pytest.mark.parametrize("scenario", ["Server", "MultiStream", "SingleStream", "Offline"])
def test_each_scenario_runs_under_loadgen_and_loadgen_judges_it_valid(tiny, scenario, tmp_path):
    extra = {}
    if scenario == "Server":
        # dlrm-v3's 80 ms bound (mlperf.conf) at a modest rate: on a shared CI machine one stall of
        # other processes pushes resnet's 15 ms 99th percentile out, whatever the rate.
        extra["user_conf"] = tmp_path / "user.conf"
        extra["user_conf"].write_text("dlrm-v3.Server.target_qps = 400\n")
        extra["model_name"] = "dlrm-v3"
    run, config = _run(tiny, scenario, scenario, **extra)
    assert run.detail.get("effective_scenario") == scenario
    assert run.result_validity == "VALID", run.summary
    # Only the quick run's shortening (duration, and Offline's sample count with it) and the tiny
    # data set (dlrm-v3 asks a performance sample count of 349823) keep it from submission.
    problems = submission_problems(run, config)
    shortened = ("quick", "min_duration_ms", "samples per query", "performance_sample_count 64 < 349823")
    assert problems and all(any(s in p for s in shortened) for p in problems), problems
    # The quick run's query floor as LoadGen applied it; in Offline, the size of its one query.
    quick = next(p for p in problems if "quick check" in p)
    assert (f"(one query of {run.detail.get('effective_samples_per_query')} samples)" if scenario == "Offline"
            else f" and at least {run.detail.get('effective_min_query_count')} queries") in quick, quick
    if scenario == "MultiStream":
        assert run.detail.get("effective_samples_per_query") == 8  # mlperf.conf *.MultiStream.samples_per_query
    if scenario == "Offline":
        # LoadGen itself issued the sample count qx's plan counts on, from the probe window's rate
        # (the plan's own value: the log rounds requested_offline_expected_qps to 6 digits).
        assert len(run.offline_probe_rates) == 1
        planned = offline_expected_qps(run.offline_probe_rates, QUICK_OVERRUN)
        assert run.detail.get("requested_offline_expected_qps") == pytest.approx(planned, rel=1e-5)
        assert run.detail.get("effective_samples_per_query") == offline_sample_count(planned, 0.3, 64)
    if scenario == "Server":
        # dlrm-v3.Server.target_latency = 80 and resnet50.Server.target_latency = 15 (ms) in mlperf.conf.
        assert run.detail.get("effective_target_latency_ns") == 80_000_000
        assert run.detail.get("early_stopping_met") is True
        from mlperf_qx.verify.loadgen_settings import official_settings

        assert official_settings("resnet50", "Server").server_target_latency_ns == 15_000_000


class _Overlaps:
    """A backend's run made a model of at least 0.5 ms (so that waiting samples pile up while one
    runs), counting the most runs at once and each batch's size."""

    def __init__(self, backend):
        self.backend, self.running, self.most, self.batches, self.lock = backend, 0, 0, [], threading.Lock()

    def __call__(self, feeds):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            outputs = self.backend.run(feeds)
            threading.Event().wait(0.0005)
            return outputs
        finally:
            with self.lock:
                self.running -= 1
                self.batches.append(len(feeds["x"]))


def test_server_answers_concurrently_and_batches_what_is_waiting(tiny, tmp_path):
    """Asked for far more than one sample at a time can be answered, the Server SUT's workers run
    side by side and take several waiting samples per batch."""
    real = onnx_backend(tiny["model"], 16)
    counted = _Overlaps(real)
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Server.target_qps = 6000\n")
    run, _ = _run(tiny, "Server", "server-busy", replace(real, run=counted), user_conf=conf)
    assert run.detail.get("requested_server_target_qps") == 6000
    assert max(counted.batches) > 1 and counted.most == 2, (max(counted.batches), counted.most)
    assert float(run.summary["Completed samples per second"]) > 0


def test_a_multi_stream_backend_answers_offline_on_its_streams_side_by_side(tiny, tmp_path):
    """OpenVINO's THROUGHPUT hint (Offline, Server) gives several streams: the Offline SUT keeps
    each busy with a batch at once, and the answers are the ones one stream gives."""
    from mlperf_qx.verify.backends import openvino_backend

    streamed = openvino_backend(tiny["model"], 4, threads=2, throughput=True)
    assert streamed.streams >= 2 and "THROUGHPUT hint" in streamed.name, streamed.name
    counted = _Overlaps(streamed)
    config = LoadGenConfig(scenario="Offline", quick=QUICK)
    runs = {name: run_loadgen(backend, tiny["samples"], tiny["task"].encode, "accuracy", tmp_path / name, config)
            for name, backend in (("streams", replace(streamed, run=counted)),
                                  ("one", openvino_backend(tiny["model"], 4, threads=2)))}
    assert counted.most >= 2
    answers = {name: {entry["qsl_idx"]: entry["data"] for entry in json.loads(
        (run.folder / "mlperf_log_accuracy.json").read_text())} for name, run in runs.items()}
    assert len(answers["streams"]) == len(tiny["samples"]) and answers["streams"] == answers["one"]


def test_offline_queries_are_queued_a_batch_at_a_time_and_the_tail_shared_by_every_worker():
    """A multi-stream Offline query goes on the workers' queue in chunks of at most a batch, in
    order, every sample once; the last samples are split among the workers, none of them idle
    while one runs a full last batch. Server's single samples stay chunks of one."""
    from mlperf_qx.verify.loadgen_harness import _chunks

    for count in (0, 1, 5, 31, 32, 63, 64, 65, 100, 1000, 268_103):
        for batch, workers in ((32, 2), (32, 3), (1, 2), (8, 1)):
            queries = list(range(count))
            chunks = _chunks(queries, batch, workers)
            assert [q for chunk in chunks for q in chunk] == queries
            assert all(0 < len(chunk) <= batch for chunk in chunks)
            if count >= workers:
                tail = chunks[-workers:]
                assert max(map(len, tail)) - min(map(len, tail)) <= 1, (count, batch, workers, list(map(len, tail)))
    assert [len(c) for c in _chunks(list(range(100)), 32, 2)] == [32, 32, 18, 18]
    assert _chunks(["one"], 32, 4) == [["one"]]


def test_openvino_answers_its_first_call_alone_then_side_by_side(tiny):
    """OpenVINO's first call in a process sets up its numpy bridge once, and two threads doing that
    at once deadlocked (both Offline workers asleep for good in ``Type.to_dtype``): the backend sets
    the bridge up when it is built and lets its first call run alone; every later call overlaps."""
    from mlperf_qx.verify.backends import _OneAtFirst, openvino_backend

    streamed = openvino_backend(tiny["model"], 4, threads=2, throughput=True)
    assert isinstance(streamed.run, _OneAtFirst)
    spans, lock, start = [], threading.Lock(), threading.Barrier(4)

    def slow(feeds):
        began = time.perf_counter()
        outputs = streamed.run.run(feeds)  # the requests themselves, then long enough to overlap
        threading.Event().wait(0.05)
        with lock:
            spans.append((began, time.perf_counter()))
        return outputs

    gated, feeds = _OneAtFirst(slow), {"x": np.ones((2, 16), np.float32)}

    def call():
        start.wait()
        gated(feeds)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, *rest = sorted(spans, key=lambda span: span[1])
    assert all(began >= first[1] for began, _ in rest), spans  # nobody started before the first ended
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(rest) for b in rest[i + 1:]), spans


HUNG_RUN = """
import sys, threading
from pathlib import Path
from dataclasses import replace
import numpy as np
from mlperf_qx.calibration.model_inputs import ModelInput
from mlperf_qx.calibration.readers import open_all_samples
from mlperf_qx.verify.loadgen_harness import onnx_backend, run_loadgen
from mlperf_qx.verify.loadgen_settings import LoadGenConfig, QuickRun
from mlperf_qx.verify.tasks import make_task

folder = Path(sys.argv[1])
samples = open_all_samples(folder / "data", [ModelInput("x", (None, 16), np.dtype(np.float32))], "--dataset")
backend = onnx_backend(folder / "tiny.onnx", 16)
calls = []
def hangs_on_the_third(feeds):  # a runtime that never returns from one inference
    calls.append(1)
    if len(calls) == 3:
        threading.Event().wait()
    return backend.run(feeds)
config = LoadGenConfig(scenario=sys.argv[2], quick=QuickRun(min_duration_ms=300, min_query_count=64), stall_timeout_s=1.0)
run_loadgen(replace(backend, run=hangs_on_the_third, batch=4), samples, make_task("classification", ["logits"], [], None, 0).encode,
            "accuracy", folder / ("hung-" + sys.argv[2]), config)
print("StartTest returned")
"""


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream"])
def test_a_runtime_that_stops_answering_ends_the_run_in_one_line(tiny, scenario):
    """StartTest cannot be interrupted: a runtime hung inside one inference would hold verify (and a
    user's CI) for good. Past --stall-timeout without any inference returning, one line names the
    run and the runtime, and the process ends with exit 3 (internal error, never a failed check)."""
    done = subprocess.run([sys.executable, "-c", HUNG_RUN, str(tiny["folder"]), scenario], capture_output=True,
                          text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3 and "StartTest returned" not in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: internal error: LoadGen accuracy run on onnxruntime"), lines
    assert "returned no answer for 1 s" in lines[0] and "--stall-timeout" in lines[0]


def test_time_with_nothing_inside_the_runtime_is_not_a_stall():
    """A Server run waits between Poisson arrivals with nothing in the runtime: that never counts."""
    from mlperf_qx.verify.stall_watchdog import StallWatchdog

    watchdog = StallWatchdog("test", 0.05)
    threading.Event().wait(0.1)
    assert watchdog.stalled_for() == 0.0
    first = watchdog.entering()
    second = watchdog.entering()
    watchdog.left(first)  # one returned: the clock starts again from there, the other is still inside
    threading.Event().wait(0.06)
    assert 0.05 < watchdog.stalled_for() < 1.0
    watchdog.left(second)
    assert watchdog.stalled_for() == 0.0
    # A model shown to be slow gets SLOWEST_MARGIN times its slowest inference, not less.
    assert 10 * 0.06 <= watchdog.limit() < 10 * 1.0


def test_an_official_offline_run_is_planned_to_last_its_minimum_and_a_little_more():
    """LoadGen issues kSlack (1.1) x min_duration x offline_expected_qps samples in Offline
    (test_settings_internal.cc) and the run is VALID only if they take min_duration; the plan is
    min_duration at the faster of 1.2 x the median probe window and the fastest window."""
    assert LOADGEN_OFFLINE_SLACK == 1.1 and OFFICIAL_OVERRUN == 1.2
    assert offline_sample_count(10_000, 600) == 6_600_000
    assert offline_sample_count(10, 600, 24576) == 24576  # resnet50.Offline.min_query_count wins
    # A steady machine: windows within 5 %. At the median rate the run lasts 720 s, at every window's
    # rate 686-756 s; it meets 600 s unless the whole run is 20 % faster than the median window.
    steady = [5000.0, 5100.0, 5250.0, 5200.0, 5150.0]
    qps = offline_expected_qps(steady, OFFICIAL_OVERRUN)
    assert offline_run_seconds(qps, 5150, 600) == pytest.approx(720, abs=0.01)
    assert all(686 <= offline_run_seconds(qps, rate, 600) <= 756 for rate in steady)
    assert offline_run_seconds(qps, 1.19 * 5150, 600) > 600 > offline_run_seconds(qps, 1.21 * 5150, 600)
    # A loaded machine, a window in a lull 1.6x the median: the run lasts min_duration even if the
    # whole of it is as fast as that window (issue 22's INVALID candidate ran 1.66x its one window).
    noisy = [4000.0, 5000.0, 8000.0, 4500.0, 5500.0]
    assert fastest_planned_rate(noisy, OFFICIAL_OVERRUN) == 8000
    qps = offline_expected_qps(noisy, OFFICIAL_OVERRUN)
    assert offline_run_seconds(qps, 8000, 600) == pytest.approx(600, abs=0.01)
    assert offline_run_seconds(qps, 5000, 600) == pytest.approx(960, abs=0.01)
    # A lull beyond twice the median counts as twice the median: 1200 s at the median, not 3600.
    lull = [5000.0, 5000.0, 30000.0]
    assert fastest_planned_rate(lull, OFFICIAL_OVERRUN) == MAX_FASTEST_OVER_MEDIAN * 5000 == 10000
    assert offline_run_seconds(offline_expected_qps(lull, OFFICIAL_OVERRUN), 5000, 600) == pytest.approx(1200, abs=0.01)
    # A quick run keeps twice the probe's rate as its expectation (2.2 x its minimum at that rate).
    assert offline_expected_qps([3000.0], QUICK_OVERRUN) == pytest.approx(6000)
    with pytest.raises(ValueError):
        offline_expected_qps([], OFFICIAL_OVERRUN)


def test_benchmark_names_map_to_mlperf_conf_keys_and_unknown_names_are_refused():
    # The reference harnesses' FromConfig keys (vision/classification_and_detection/python/main.py:138,
    # language/bert/run.py:157, vision/medical_imaging/3d-unet-kits19/run.py:158, yolo_loadgen.py:123).
    expected = {"resnet": "resnet50", "bert-99": "bert", "bert-99.9": "bert", "3d-unet-99.9": "3d-unet",
                "yolo-99": "yolo", "llama3.1-8b": "llama3_1-8b", "whisper": "whisper", "rgat": "rgat"}
    assert {name: BENCHMARKS[name].conf_key for name in expected} == expected
    assert benchmark("resnet50").name == "resnet"  # the checker's model_mapping (constants.py:232-239)
    for name in ("bert", "3d-unet", "gpt-j"):
        with pytest.raises(UserInputError, match="bert-99, bert-99.9"):
            benchmark(name)
    for name in ("retinanet", "gptj-99", "dlrm-v2-99"):
        with pytest.raises(UserInputError, match="earlier round, not of v6.1"):
            benchmark(name)
    with pytest.raises(UserInputError, match="no Server result for bert-99"):
        check_scenario(benchmark("bert-99"), "Server")
    check_scenario(benchmark("resnet"), "MultiStream")
    with pytest.raises(UserInputError, match="asks no TEST04 of bert-99"):
        check_compliance(benchmark("bert-99"), "TEST04")


def test_mlperf_conf_settings_of_the_benchmark_are_applied(tiny):
    """bert-99 runs with bert's mlperf.conf lines (performance_sample_count 10833): the checker's
    complaint about '*' defaults ('found 100, needs to be >= 10833') cannot happen."""
    config = LoadGenConfig(scenario="Offline", model_name="bert-99", quick=QUICK)
    assert config.conf_model == "bert" and config.folder_name == "bert-99"
    from mlperf_qx.verify.loadgen_settings import official_settings

    assert official_settings(config.conf_model, "Offline").performance_sample_count_override == 10833


def _detail(**values):
    base = {"effective_qsl_rng_seed": 2085463073848966840, "effective_sample_index_rng_seed": 2747215439041700203,
            "effective_schedule_rng_seed": 16159082839903944936, "effective_min_duration_ms": 600000,
            "effective_performance_sample_count": 1024}
    return LoadGenRun("performance", REPO, "PerformanceOnly", {}, DetailLog({**base, **values}))


def test_offline_is_judged_by_samples_per_query_as_the_checker_does():
    """performance_check.py:343-377: without early stopping (Offline) the query count is checked
    against min-queries (1 for resnet Offline, constants.py:263-268) and the samples per query against
    OFFLINE_MIN_SPQ_SINCE_V4 (24576 for resnet, constants.py:1507); LoadGen logs one query."""
    resnet = benchmark("resnet")
    official = _detail(effective_min_query_count=1, effective_samples_per_query=24576)
    assert checker_problems(official, resnet, "Offline") == []
    short = _detail(effective_min_query_count=1, effective_samples_per_query=24575)
    assert checker_problems(short, resnet, "Offline") == [
        "samples per query 24575 < 24576 required for resnet Offline"]
    # Early-stopping scenarios: no query count, early_stopping_met; Server's bound at most 15 ms.
    server = _detail(effective_min_query_count=100, early_stopping_met=True, effective_target_latency_ns=16_000_000)
    assert checker_problems(server, resnet, "Server") == ["target latency 16000000 ns > 15000000 ns allowed"]
    stream = _detail(effective_min_query_count=100, early_stopping_met=False, early_stopping_result="x")
    assert checker_problems(stream, resnet, "SingleStream") == ["early stopping condition not met (x)"]


# The submission checker's accuracy patterns (tools/submission/submission_checker/constants.py:1805
# "acc" and :1813 "F1", MLPerf inference at b66003e), against each task's line.
ACC_PATTERN = {"acc": r"^(?:\{\"accuracy|accuracy)[\": ]*=?\s*([\d\.]+).*",
               "F1": r"^{[\"\']exact_match[\"\']\:\s*[\d\.]+,\s*[\"\']f1[\"\']\:\s*([\d\.]+)}"}


def test_every_task_line_matches_the_checker_pattern_of_its_benchmarks(tmp_path):
    from mlperf_qx.accuracy import classification, spans
    from mlperf_qx.verify.tasks import TASKS, check_task_metric

    lines = {"classification": classification.accuracy_line(9, 10),
             "spans": spans.accuracy_line({"exact_match": 100.0, "f1": 87.25, "total": 40})}
    values = {"classification": "90.000", "spans": "87.250"}
    for name, line in lines.items():
        metric = TASKS[name].checker_metric
        match = re.match(ACC_PATTERN[metric], line)
        assert match and match.group(1) == values[name], (name, line)
        for bench in BENCHMARKS.values():
            if bench.metric == metric:
                check_task_metric(bench, name)
    # The first round's spans line carried a total after f1: the checker's F1 pattern misses it.
    assert not re.match(ACC_PATTERN["F1"], '{"exact_match": 100.000, "f1": 100.000, "total": 40}')
    with pytest.raises(UserInputError, match="'acc' line, but the submission checker reads bert-99's accuracy as 'F1'"):
        check_task_metric(benchmark("bert-99"), "classification")
    with pytest.raises(UserInputError, match="qx's own agreement line"):
        check_task_metric(benchmark("resnet"), "raw")


def test_loadgen_is_the_pinned_version_of_the_round():
    assert version("mlcommons-loadgen") == LOADGEN_VERSION
    assert f'"mlcommons-loadgen=={LOADGEN_VERSION}"' in (REPO / "pyproject.toml").read_text()
    done = subprocess.run([sys.executable, "-m", "mlperf_qx.cli.main", "verify-equivalence", "--help"],
                          capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    help_text = " ".join(done.stdout.split())
    assert "MLPerf Inference v6.1" in help_text and f"LoadGen {LOADGEN_VERSION}" in help_text, help_text[:600]


def test_test01_part_three_scores_baseline_and_compliance_logs_when_responses_differ(tiny, tmp_path):
    """A SUT that answers some samples differently in the compliance run than in the accuracy run
    fails TEST01 Part I; Part III (compliance/TEST01/README.md) then scores the accuracy run's
    entries for the logged samples and the compliance log with the accuracy script."""
    from mlperf_qx.verify.compliance import run_compliance

    config = LoadGenConfig(scenario="Offline", model_name="resnet", quick=QUICK)
    real, task, samples = onnx_backend(tiny["model"], 16), tiny["task"], tiny["samples"]
    stacked = np.concatenate([samples.sample(i)["x"] for i in samples.ids])
    truth = np.argmax(real.run({"x": stacked})["logits"], axis=1)
    labels = tmp_path / "val_map.txt"
    labels.write_text("".join(f"{i}.npy {t}\n" for i, t in zip(samples.ids, truth)))

    def drifting(feeds):  # samples whose first value is large answer class 0 in the compliance run
        logits = real.run(feeds)["logits"].copy()
        logits[feeds["x"][:, 0] > 0.5, 0] = 1e6
        return {"logits": logits}

    accuracy = run_loadgen(real, samples, task.encode, "accuracy", tmp_path / "accuracy", config)
    performance = run_loadgen(real, samples, task.encode, "performance", tmp_path / "performance" / "run_1", config)
    result = run_compliance("TEST01", replace(real, run=drifting), samples, task, labels, tmp_path / "TEST01",
                            config, (accuracy, performance), tmp_path / "accuracy" / "mlperf_log_accuracy.json")
    assert result.lines["verify_accuracy.txt"] == "TEST FAIL"
    assert "num_perf_log_data_mismatch = 0" not in (tmp_path / "TEST01" / "verify_accuracy.txt").read_text()
    part = result.part_three
    assert part["baseline_accuracy.txt"].startswith("accuracy=100.000%")
    assert re.match(ACC_PATTERN["acc"], part["compliance_accuracy.txt"])
    assert part["delta_percent"] > 1 and not result.passed
    for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):
        assert (tmp_path / "TEST01" / "accuracy" / name).read_text().strip() == part[name]


def test_an_invalid_result_names_each_unmet_constraint_with_its_own_no(tmp_path):
    """LoadGen's summary marks each constraint YES or NO: an INVALID run's problem names every one
    that is NO, each with its own NO, and none that is YES."""
    summary = {"Result is": "INVALID", "Min duration satisfied": "Yes", "Min queries satisfied": "Yes",
               "Performance constraints satisfied": "NO", "Early stopping satisfied": "NO"}
    run = LoadGenRun("performance", tmp_path, "PerformanceOnly", summary, DetailLog())
    problem = next(p for p in submission_problems(run, LoadGenConfig(scenario="Server"))
                   if p.startswith("LoadGen's result"))
    assert problem == ("LoadGen's result is INVALID (Performance constraints satisfied: NO; "
                       "Early stopping satisfied: NO)"), problem
