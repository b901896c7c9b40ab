"""Real MLPerf LoadGen runs over an onnxruntime session: a QSL over the preprocessed dataset and a
classification SUT that answers each sample with its top-1 index as int32, as MLPerf's
image-classification reference does."""

from __future__ import annotations

import array
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlperf_loadgen as lg
import numpy as np

from ..calibration.readers import CalibrationSet
from ..runtime import open_session

SCENARIOS = {"Offline": lg.TestScenario.Offline, "SingleStream": lg.TestScenario.SingleStream}
MODES = {"accuracy": lg.TestMode.AccuracyOnly, "performance": lg.TestMode.PerformanceOnly}


@dataclass(frozen=True)
class LoadGenConfig:
    scenario: str = "Offline"
    performance_duration_ms: int = 2000
    performance_min_queries: int = 64
    batch: int = 16


@dataclass
class Backend:
    """What a SUT runs: an onnxruntime session, or the framework model of a reference."""

    name: str
    input_names: list[str]
    batch: int
    run: Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> first output


def onnx_backend(model: Path, batch: int) -> Backend:
    session = open_session(model, spin_between_runs=False)
    first = session.get_inputs()[0].shape
    output = session.get_outputs()[0].name
    return Backend(f"onnxruntime ({model.name})", [i.name for i in session.get_inputs()],
                   batch if first and not isinstance(first[0], int) else 1,
                   lambda feeds: session.run([output], feeds)[0])


def framework_backend(imported, batch: int) -> Backend:
    """The torch module or TF model itself, for a framework reference."""
    first_output = imported.output_names[0]
    return Backend(imported.framework, [s.name for s in imported.inputs], batch,
                   lambda feeds: imported.run_reference(feeds)[first_output])


class ClassificationSut:
    """Runs one backend; LoadGen calls issue_queries with (id, QSL index) pairs."""

    def __init__(self, backend: Backend, samples: CalibrationSet):
        self.backend = backend
        self.input_names = backend.input_names
        self.batch = backend.batch
        self.samples = samples
        self.loaded: dict[int, dict[str, np.ndarray]] = {}

    # QSL callbacks
    def load(self, indices: list[int]) -> None:
        for index in indices:
            if index not in self.loaded:
                self.loaded[index] = self.samples.sample(self.samples.ids[index])

    def unload(self, indices: list[int]) -> None:
        for index in indices:
            self.loaded.pop(index, None)

    # SUT callbacks
    def issue_queries(self, queries) -> None:
        for start in range(0, len(queries), self.batch):
            chunk = queries[start:start + self.batch]
            feeds = {n: np.concatenate([self.loaded[q.index][n] for q in chunk]) for n in self.input_names}
            top1 = np.argmax(self.backend.run(feeds).reshape(len(chunk), -1), axis=1).astype(np.int32)
            buffers = [array.array("B", np.int32(value).tobytes()) for value in top1]
            responses = [lg.QuerySampleResponse(q.id, b.buffer_info()[0], len(b)) for q, b in zip(chunk, buffers)]
            lg.QuerySamplesComplete(responses)

    def flush(self) -> None:
        pass

    def measure(self, count: int = 64) -> tuple[float, float]:
        """Samples per second at this SUT's batch, and single-sample latency in seconds, so LoadGen
        can be told what to expect (too low an expectation ends an Offline run before its minimum
        duration and makes the run INVALID)."""
        indices = list(range(min(count, len(self.samples))))
        self.load(indices)
        feeds = {n: np.concatenate([self.loaded[i][n] for i in indices[: self.batch]]) for n in self.input_names}
        single = {n: self.loaded[0][n] for n in self.input_names}
        self.backend.run(feeds)
        started = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            self.backend.run(feeds)
        per_batch = (time.perf_counter() - started) / repeats
        started = time.perf_counter()
        for _ in range(repeats):
            self.backend.run(single)
        latency = (time.perf_counter() - started) / repeats
        self.unload(indices)
        return len(next(iter(feeds.values()))) / max(per_batch, 1e-9), latency


def run_loadgen(backend: Backend, samples: CalibrationSet, mode: str, outdir: Path, config: LoadGenConfig) -> Path:
    """One LoadGen test; returns the folder holding mlperf_log_{summary,detail,accuracy}."""
    outdir.mkdir(parents=True, exist_ok=True)
    runner = ClassificationSut(backend, samples)
    settings = lg.TestSettings()
    settings.scenario = SCENARIOS[config.scenario]
    settings.mode = MODES[mode]
    settings.min_duration_ms = config.performance_duration_ms
    settings.min_query_count = config.performance_min_queries if mode == "performance" else len(samples)
    qps, latency = runner.measure() if mode == "performance" else (1000.0, 1e-3)
    settings.offline_expected_qps = max(1.0, 1.5 * qps)
    settings.single_stream_expected_latency_ns = max(1000, int(latency * 1e9))
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    sut = lg.ConstructSUT(runner.issue_queries, runner.flush)
    qsl = lg.ConstructQSL(len(samples), min(len(samples), 1024), runner.load, runner.unload)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return outdir


def parse_summary(path: Path) -> dict[str, str]:
    """``key : value`` lines of mlperf_log_summary.txt."""
    facts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(" : ")
        if sep:
            facts[key.strip()] = value.strip()
    return facts
