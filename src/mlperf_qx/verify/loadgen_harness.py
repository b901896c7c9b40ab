"""Real MLPerf LoadGen runs over an onnxruntime session (or a framework model): a QSL over the
preprocessed dataset and a SUT that answers each sample in its task's response format."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlperf_loadgen as lg
import numpy as np

from ..calibration.readers import CalibrationSet
from .loadgen_log import parse_detail, parse_summary
from .loadgen_settings import MODE_NAMES, LoadGenConfig, audit_config_path, build_settings
from .results import LoadGenRun

Encode = Callable[[dict[str, np.ndarray], int], list[bytes]]


@dataclass
class Backend:
    """What a SUT runs: an onnxruntime session, or the framework model of a reference."""

    name: str
    input_names: list[str]
    batch: int
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # feeds -> outputs by name


def onnx_backend(model: Path, batch: int, runtime: str = "onnxruntime") -> Backend:
    """The ONNX file on ``runtime`` (onnxruntime or openvino; see backends.py)."""
    from .backends import model_backend

    return model_backend(model, batch, runtime)


def framework_backend(imported, batch: int) -> Backend:
    """The torch module or TF model itself, for a framework reference."""
    return Backend(imported.framework, [s.name for s in imported.inputs], batch, imported.run_reference)


class Sut:
    """Runs one backend; LoadGen calls issue_queries with (id, QSL index) pairs."""

    def __init__(self, backend: Backend, samples: CalibrationSet, encode: Encode):
        self.backend, self.samples, self.encode = backend, samples, encode
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
            chunk = queries[start:start + self.backend.batch]
            if self.error is None:
                try:
                    self._answer(chunk)
                    continue
                except Exception as exc:
                    self.error = exc
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in chunk])

    def _answer(self, chunk) -> None:
        feeds = {n: np.concatenate([self.loaded[q.index][n] for q in chunk]) for n in self.backend.input_names}
        payloads = [np.frombuffer(p, np.uint8) for p in self.encode(self.backend.run(feeds), len(chunk))]
        # The arrays must outlive QuerySamplesComplete, which copies what the accuracy log needs.
        responses = [lg.QuerySampleResponse(q.id, p.ctypes.data if p.size else 0, p.size)
                     for q, p in zip(chunk, payloads)]
        lg.QuerySamplesComplete(responses)

    def flush(self) -> None:
        pass

    def measure(self, count: int = 64) -> tuple[float, float]:
        """Samples per second at this SUT's batch, and single-sample latency in seconds, so LoadGen
        can be told what to expect (too low an expectation ends an Offline run before its minimum
        duration and makes the run INVALID)."""
        indices = list(range(min(count, len(self.samples))))
        self.load(indices)
        names = self.backend.input_names
        feeds = {n: np.concatenate([self.loaded[i][n] for i in indices[: self.backend.batch]]) for n in names}
        single = {n: self.loaded[0][n] for n in names}
        self.backend.run(feeds)
        repeats = 5
        started = time.perf_counter()
        for _ in range(repeats):
            self.backend.run(feeds)
        per_batch = (time.perf_counter() - started) / repeats
        started = time.perf_counter()
        for _ in range(repeats):
            self.backend.run(single)
        latency = (time.perf_counter() - started) / repeats
        self.unload(indices)
        return len(next(iter(feeds.values()))) / max(per_batch, 1e-9), latency


def run_loadgen(backend: Backend, samples: CalibrationSet, encode: Encode, mode: str, outdir: Path,
                config: LoadGenConfig) -> LoadGenRun:
    """One LoadGen test (mode: accuracy or performance) writing mlperf_log_* into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    sut = Sut(backend, samples, encode)
    qps, latency = sut.measure() if mode == "performance" else (1000.0, 1e-3)
    settings = build_settings(config, mode, 1.5 * qps, latency)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    handle = lg.ConstructSUT(sut.issue_queries, sut.flush)
    qsl = lg.ConstructQSL(len(samples), min(len(samples), 1024), sut.load, sut.unload)
    audit = audit_config_path(config)
    try:
        lg.StartTestWithLogSettings(handle, qsl, settings, log_settings, audit)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(handle)
    if sut.error is not None:
        raise sut.error
    return LoadGenRun(mode, outdir, MODE_NAMES[mode], parse_summary(outdir / "mlperf_log_summary.txt"),
                      parse_detail(outdir / "mlperf_log_detail.txt"),
                      audit if config.audit_config is not None else None, settings=settings)
