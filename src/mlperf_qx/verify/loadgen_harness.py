"""Real MLPerf LoadGen runs over an onnxruntime session (or a framework model): a QSL over the
preprocessed dataset and a SUT that answers each sample in its task's response format."""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import mlperf_loadgen as lg
import numpy as np

from ..calibration.readers import CalibrationSet
from .loadgen_log import parse_detail, parse_summary
from .loadgen_settings import MODE_NAMES, LoadGenConfig, QuickRun, audit_config_path, build_settings, user_sets_target
from .offline_target import OFFICIAL_OVERRUN, OFFICIAL_WINDOWS, QUICK_OVERRUN, QUICK_WINDOWS, offline_expected_qps
from .results import LoadGenRun
from .stall_watchdog import StallWatchdog

Encode = Callable[[dict[str, np.ndarray], int], np.ndarray]  # outputs, count -> uint8 rows, one per sample
# mlperf.conf's *.MultiStream.samples_per_query (loadgen/mlperf.conf:55).
SAMPLES_PER_QUERY = {"MultiStream": 8}
# What a Server query costs beyond answering it: LoadGen's call into Python per query, the hand-over
# to a worker and QuerySamplesComplete (60-120 us measured on a loaded 2-core machine; negligible
# beside a real model's milliseconds, decisive for a tiny one).
SERVER_QUERY_OVERHEAD_S = 150e-6
SERVER_WORKERS = 2  # onnxruntime releases the GIL while it runs: two workers overlap one's Python with the other's run
THROUGHPUT_SCENARIOS = ("Offline", "Server")  # scored in samples/s, not per-query latency


@dataclass
class Backend:
    """What a SUT runs: an onnxruntime session, or the framework model of a reference."""

    name: str
    input_names: list[str]
    batch: int
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # feeds -> outputs by name
    # How many run() calls may overlap, each on its own share of the cores (OpenVINO's throughput
    # streams); Offline and Server then answer batches on that many workers. 1: one at a time.
    streams: int = 1


def onnx_backend(model: Path, batch: int, runtime: str = "onnxruntime", scenario: str = "Offline") -> Backend:
    """The ONNX file on ``runtime`` (onnxruntime or openvino; see backends.py), set up for ``scenario``."""
    from .backends import model_backend

    return model_backend(model, batch, runtime, throughput=scenario in THROUGHPUT_SCENARIOS)


def framework_backend(imported, batch: int) -> Backend:
    """The torch module or TF model itself, for a framework reference."""
    return Backend(imported.framework, [s.name for s in imported.inputs], batch, imported.run_reference)


class Sut:
    """Runs one backend; LoadGen calls issue_queries with (id, QSL index) pairs. SingleStream and
    MultiStream queries are answered on LoadGen's thread, a batch at a time, and Offline's too
    unless the backend has several streams; in Server, queries arrive one sample at a time, and
    there and in a multi-stream Offline ``WorkerQueue`` answers them concurrently."""

    def __init__(self, backend: Backend, samples: CalibrationSet, encode: Encode, watchdog: StallWatchdog):
        self.backend, self.samples, self.encode, self.watchdog = backend, samples, encode, watchdog
        self.loaded: dict[int, dict[str, np.ndarray]] = {}
        # An exception must not escape a LoadGen callback (it aborts the process with
        # std::bad_function_call, exit 134): the first one is kept, every later query is answered
        # empty so the test can end, and run_loadgen raises it once StartTest returns.
        self.error: BaseException | None = None

    # QSL callbacks
    def load(self, indices: list[int]) -> None:
        try:
            for index in indices:
                if index not in self.loaded:
                    self.loaded[index] = self.samples.sample(self.samples.ids[index])
        except Exception as exc:
            self.error = self.error or exc

    def unload(self, indices: list[int]) -> None:
        for index in indices:
            self.loaded.pop(index, None)

    # SUT callbacks
    def issue_queries(self, queries) -> None:
        for start in range(0, len(queries), self.backend.batch):
            self.answer(queries[start:start + self.backend.batch])

    def answer(self, chunk) -> None:
        """Run one batch and complete its samples (after a failure: empty answers, see ``error``)."""
        payloads, responses = [], [lg.QuerySampleResponse(q.id, 0, 0) for q in chunk]
        if self.error is None:
            try:
                payloads, responses = self.respond(chunk)
            except Exception as exc:
                self.error = self.error or exc
        lg.QuerySamplesComplete(responses)
        del payloads  # they had to outlive QuerySamplesComplete, which copies what the accuracy log needs

    def respond(self, chunk) -> tuple[list[np.ndarray], list]:
        feeds = {n: np.concatenate([self.loaded[q.index][n] for q in chunk]) for n in self.backend.input_names}
        entered = self.watchdog.entering()
        try:
            outputs = self.backend.run(feeds)
        finally:
            self.watchdog.left(entered)
        rows = self.encode(outputs, len(chunk))
        start, size = rows.ctypes.data, rows.shape[1]
        return [rows], [lg.QuerySampleResponse(q.id, start + i * size if size else 0, size) for i, q in enumerate(chunk)]

    def flush(self) -> None:
        pass

    def measure(self, per_query: int = 1, count: int = 64) -> Speed:
        """How fast this SUT answers, timed on the path a LoadGen query takes (stacking the
        samples, running, encoding, making the responses), so LoadGen is told what to expect: too
        low an expectation ends an Offline run before its minimum duration (INVALID), too high a one
        runs far longer than it (a batch timed alone can be many times faster than the run)."""
        indices = list(range(min(max(count, per_query), len(self.samples))))
        self.load(indices)
        probes = [_Probe(0, i) for i in indices]
        batch, query = probes[: self.backend.batch], probes[:per_query]
        self.respond(batch)
        per_batch, latency, single = (_timed(self.respond, chunk) for chunk in (batch, query, probes[:1]))
        self.unload(indices)
        return Speed(len(batch) / max(per_batch, 1e-9), latency, 1.0 / (single + SERVER_QUERY_OVERHEAD_S))


@dataclass(frozen=True)
class _Probe:
    """A stand-in for LoadGen's QuerySample when timing the answer path outside a test."""

    id: int
    index: int


@dataclass(frozen=True)
class Speed:
    samples_per_second: float  # at the backend's batch
    query_latency_s: float  # one query of the scenario's samples per query
    answers_per_second: float  # one sample run and encoded alone: how fast Server queries are answered

    def expected_qps(self, scenario: str) -> float:
        """What LoadGen is told to expect. Offline: the timed rate, which a performance run replaces
        by the plan of LoadGen probe windows (``offline_target``; a batch timed alone runs several
        times faster than under LoadGen). Server:
        half the rate at which single queries are answered (capped by the batched rate): Poisson
        arrivals near full throughput queue up past the latency bound, and LoadGen reports the run
        INVALID; what dynamic batching gains above it, a user.conf target_qps states."""
        if scenario == "Server":
            return 0.5 * min(self.samples_per_second, self.answers_per_second)
        return self.samples_per_second


def _timed(run, feeds, repeats: int = 5) -> float:
    """The median time of ``repeats`` runs: one stall of a loaded machine does not set the target."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


class WorkerQueue:
    """Server's SUT (LoadGen issues each sample as it arrives, Poisson at target_qps) and a
    multi-stream backend's Offline SUT (every sample at once): worker threads take whatever is
    waiting, up to the backend's batch, and answer it (dynamic batching). The runtimes release the
    GIL while they run, so the workers overlap."""

    def __init__(self, sut: Sut, workers: int):
        self.sut, self.waiting = sut, queue.Queue()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def issue_queries(self, queries) -> None:
        for chunk in _chunks(queries, self.sut.backend.batch, len(self.threads)):
            self.waiting.put(chunk)

    def _work(self) -> None:
        carried = None  # a chunk taken that did not fit the last batch: the next one starts with it
        while (first := carried if carried is not None else self.waiting.get()) is not None:
            chunk, carried = list(first), None
            # Dynamic batching (Server's samples arrive one at a time): more of what is waiting, up to
            # a fair share of it, so that the last samples go to every worker, not all to one.
            share = min(self.sut.backend.batch, -(-(self.waiting.qsize() + 1) // len(self.threads)))
            while len(chunk) < share:
                try:
                    item = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.waiting.put(None)  # the stop mark is for every worker
                    break
                if len(chunk) + len(item) > self.sut.backend.batch:
                    carried = item
                    break
                chunk.extend(item)
            self.sut.answer(chunk)
        self.waiting.put(None)

    def stop(self) -> None:
        self.waiting.put(None)
        for thread in self.threads:
            thread.join()


def _chunks(queries, batch: int, workers: int) -> list:
    """``queries`` in chunks of at most ``batch``, the last ``workers`` batches' worth split evenly
    among the workers. WHY: one queue operation per batch, not per sample: an Offline query of
    268 K digits samples spent more time queued than in OpenVINO. The split tail keeps the last
    samples on every worker (one full batch on one stream while the other idles halved a run)."""
    count = len(queries)
    whole = -(-max(0, count - batch * workers) // batch) * batch  # in full batches; the tail fits workers batches
    chunks = [queries[start:start + batch] for start in range(0, whole, batch)]
    tail = count - whole
    pieces = min(workers, tail)
    for index in range(pieces):
        chunks.append(queries[whole + tail * index // pieces:whole + tail * (index + 1) // pieces])
    return chunks


def run_loadgen(backend: Backend, samples: CalibrationSet, encode: Encode, mode: str, outdir: Path,
                config: LoadGenConfig, settings=None) -> LoadGenRun:
    """One LoadGen test (mode: accuracy or performance) writing mlperf_log_* into ``outdir``.
    ``settings``: an earlier run's, to repeat it as it was (no timing, no probe windows again)."""
    outdir.mkdir(parents=True, exist_ok=True)
    with StallWatchdog(f"LoadGen {mode} run on {backend.name}", config.stall_timeout_s) as watchdog:
        return _run_loadgen(Sut(backend, samples, encode, watchdog), mode, outdir, config, settings)


def _run_loadgen(sut: Sut, mode: str, outdir: Path, config: LoadGenConfig, settings=None) -> LoadGenRun:
    probe_rates = []
    if settings is None:
        settings, probe_rates = _planned_settings(sut, mode, config)
    audit = audit_config_path(config)
    _start(sut, config, settings, outdir, audit)
    return LoadGenRun(mode, outdir, MODE_NAMES[mode], parse_summary(outdir / "mlperf_log_summary.txt"),
                      parse_detail(outdir / "mlperf_log_detail.txt"),
                      audit if config.audit_config is not None else None, settings=settings,
                      offline_probe_rates=probe_rates)


def _planned_settings(sut: Sut, mode: str, config: LoadGenConfig):
    """The run's TestSettings, with LoadGen told how fast this SUT is (timed, and for Offline
    measured in probe windows), and the probe windows' samples/s."""
    per_query = SAMPLES_PER_QUERY.get(config.scenario, 1)
    speed = sut.measure(per_query) if mode == "performance" else Speed(1000.0, 1e-3, 1000.0)
    expected, probe_rates = speed.expected_qps(config.scenario), []
    if mode == "performance" and config.scenario == "Offline" and not user_sets_target(config):
        quick = config.quick is not None
        probe_rates = offline_rates(sut, config, speed.samples_per_second, QUICK_WINDOWS if quick else OFFICIAL_WINDOWS)
        expected = offline_expected_qps(probe_rates, QUICK_OVERRUN if quick else OFFICIAL_OVERRUN)
    return build_settings(config, mode, expected, speed.query_latency_s), probe_rates


def offline_rates(sut: Sut, config: LoadGenConfig, timed_rate: float, windows: int) -> list[float]:
    """Samples/s of ``windows`` one-second Offline LoadGen runs of this SUT, the rate an official
    run will see: LoadGen's own threads share the CPU with the SUT's, and a batch timed alone was
    5-10x faster than the run on digits (issue 22: target_qps 157116 against 17818 measured). Each
    window expects the previous one's rate, so each lasts about a second."""
    probe = replace(config, quick=QuickRun(min_duration_ms=1000, min_query_count=1), audit_config=None)
    rates, expected = [], max(1.0, timed_rate / 4)
    for _ in range(windows):
        settings = build_settings(probe, "performance", expected, 1e-3)
        with tempfile.TemporaryDirectory(prefix="qx-probe-") as folder:
            _start(sut, probe, settings, Path(folder), audit_config_path(probe))
            rate = parse_detail(Path(folder) / "mlperf_log_detail.txt").get("result_samples_per_second")
        rates.append(float(rate) if rate else expected)
        expected = rates[-1]
    return rates


def _start(sut: Sut, config: LoadGenConfig, settings, outdir: Path, audit: str) -> None:
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    server = None
    if config.scenario == "Server":
        server = WorkerQueue(sut, max(SERVER_WORKERS, sut.backend.streams))
    elif config.scenario == "Offline" and sut.backend.streams > 1:
        server = WorkerQueue(sut, sut.backend.streams)
    handle = lg.ConstructSUT(server.issue_queries if server else sut.issue_queries, sut.flush)
    qsl = lg.ConstructQSL(len(sut.samples), min(len(sut.samples), 1024), sut.load, sut.unload)
    try:
        lg.StartTestWithLogSettings(handle, qsl, settings, log_settings, audit)
    finally:
        if server is not None:
            server.stop()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(handle)
    if sut.error is not None:
        raise sut.error
