"""The runtimes an ONNX model can answer LoadGen from: onnxruntime (the default) or OpenVINO.

Both read the same ONNX file; nothing in the model changes. OpenVINO is used directly
(``openvino.Core().compile_model``) rather than through onnxruntime's OpenVINO execution
provider: that provider ships as its own onnxruntime build (``onnxruntime-openvino``, 1.24 on the
registry) that installs the same ``onnxruntime`` module as the pinned 1.32 CPU build, so the two
cannot sit side by side in one environment, and qx's reference numerics (the intensional audit)
need the pinned build.

OpenVINO runs int8 QDQ models on its own int8 kernels (VNNI/AMX where the CPU has them). Its
settings are the same for reference and candidate so runs compare: the CPU device, the cores this
process may use, f32 as the precision of whatever runs in float (on CPUs with AMX-BF16 OpenVINO
would otherwise run an FP32 reference in bf16), and OpenVINO's own performance hint for the
scenario, as OpenVINO's MLPerf submissions run: LATENCY (one stream, every core on each query) for
SingleStream and MultiStream, THROUGHPUT for Offline and Server, whose streams (OpenVINO's choice,
one per core on a small CPU) the SUT keeps busy with one batch each (``Backend.streams``). On
2 cores with digits, THROUGHPUT's two streams answered 25 % more samples/s than one stream, the
int8 model gaining more than FP32 (its fixed cost per run weighs less on one thread).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from ..runtime import usable_cores
from .loadgen_harness import Backend

BACKENDS = ("onnxruntime", "openvino")


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise UserInputError(f"--backend must be one of {', '.join(BACKENDS)} (got '{name}')")
    return name


def model_backend(model: Path, batch: int, backend: str = "onnxruntime", threads: int = 0,
                  throughput: bool = False) -> Backend:
    """A ``Backend`` running the ONNX file ``model`` on ``backend`` (see BACKENDS); ``throughput``:
    for a scenario scored in samples/s (Offline, Server), where OpenVINO runs several streams."""
    check_backend_name(backend)
    if backend == "openvino":
        return openvino_backend(model, batch, threads, throughput)
    return onnxruntime_backend(model, batch, threads)


def _batch(first_dim, batch: int) -> int:
    """The SUT's batch: ``batch`` when the model's batch dimension is free, else 1."""
    return batch if first_dim is None or not isinstance(first_dim, int) else 1


def onnxruntime_backend(model: Path, batch: int, threads: int = 0, x64quantprecision: bool | None = None) -> Backend:
    """``x64quantprecision``: see ``runtime.open_session`` (None: qx decides, as verify always does)."""
    import onnxruntime as ort

    from ..runtime import open_session

    session = open_session(model, threads=threads, spin_between_runs=False, x64quantprecision=x64quantprecision)
    first = session.get_inputs()[0].shape
    outputs = [o.name for o in session.get_outputs()]
    precision = session.qx_int8_precision.describe()
    batch = _batch(first[0] if first else None, batch)
    return Backend(f"onnxruntime {ort.__version__} CPU ({model.name}; max batch {batch}; {precision})",
                   [i.name for i in session.get_inputs()], batch, lambda feeds: dict(zip(outputs, session.run(outputs, feeds))))


def openvino_config(threads: int = 0, throughput: bool = False) -> dict:
    """The compile settings of every OpenVINO model qx runs (see the module's docstring)."""
    return {"PERFORMANCE_HINT": "THROUGHPUT" if throughput else "LATENCY",
            "INFERENCE_NUM_THREADS": threads or usable_cores(), "INFERENCE_PRECISION_HINT": "f32"}


def openvino_backend(model: Path, batch: int, threads: int = 0, throughput: bool = False) -> Backend:
    import openvino as ov

    config = openvino_config(threads, throughput)
    threads, hint = config["INFERENCE_NUM_THREADS"], config["PERFORMANCE_HINT"]
    # The child's compiled model, kept in OpenVINO's model cache for this call only, is what this
    # process then loads (by path: a model object hashes otherwise and misses): ResNet-50's int8
    # file in 0.08 s instead of 0.36 s compiled again, BERT-base's in 0.11 s instead of 0.83 s.
    with tempfile.TemporaryDirectory(prefix="qx-openvino-") as cache:
        config_cached = {**config, "CACHE_DIR": cache}
        _compiles_in_a_child(model, config_cached)
        try:
            compiled = ov.Core().compile_model(str(model), "CPU", config_cached)
        except RuntimeError as exc:
            raise _refused(model, f"it cannot compile it ({str(exc).strip().splitlines()[0][:200]})") from None
    streams = int(compiled.get_property("NUM_STREAMS")) if throughput else 1
    # One request per stream; a run takes a free one, so up to ``streams`` runs overlap.
    requests: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(streams):
        requests.put(compiled.create_infer_request())
    inputs = [port.get_any_name() for port in compiled.inputs]
    outputs = [(port.get_any_name(), port) for port in compiled.outputs]
    first = compiled.inputs[0].get_partial_shape()[0] if compiled.inputs and compiled.inputs[0].get_partial_shape().rank.get_length() else None

    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = requests.get()
        try:
            # The request reads the arrays in place (they live through the call): no copy.
            results = request.infer(feeds, share_inputs=True)
            # The request reuses its output buffers on its next run: copy what is returned.
            return {name: np.array(results[port]) for name, port in outputs}
        finally:
            requests.put(request)

    _bridge_numpy_once()

    version = ov.get_version().split("-")[0]
    batch = _batch(None if first is None or first.is_dynamic else first.get_length(), batch)
    return Backend(f"OpenVINO {version} CPU ({model.name}; max batch {batch}; {threads} threads, {hint} hint: "
                   f"{streams} stream{'s' if streams > 1 else ''}; f32 precision hint)", inputs, batch, _OneAtFirst(infer), streams)


def _bridge_numpy_once() -> None:
    """Set up OpenVINO's numpy bridge on this thread, before any worker runs. Its first use in a
    process initializes a function-local static (the element type -> dtype table) whose initializer
    drops the GIL inside pybind11's once-only numpy setup and takes it back: two threads arriving
    there at once deadlock, one holding the static's guard and waiting for the GIL, the other holding
    the GIL and waiting for the guard. Seen in an accuracy-mode Offline run on two streams (no timing
    run first): both workers asleep for good in ``Type.to_dtype`` under ``InferRequest.infer``."""
    import openvino as ov

    ov.Type.f32.to_dtype()
    np.array(ov.Tensor(np.zeros(1, np.float32), shared_memory=True).data)


class _OneAtFirst:
    """Calls ``run`` one at a time until a call has returned, then freely: whatever else a first
    call sets up once per process is set up by one thread (see ``_bridge_numpy_once``)."""

    def __init__(self, run):
        self.run, self.lock, self.done = run, threading.Lock(), False

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.done:
            with self.lock:
                if not self.done:  # the ones that waited here run freely once the first is done
                    result = self.run(feeds)
                    self.done = True
                    return result
        return self.run(feeds)


_COMPILE = "import json, sys, openvino; openvino.Core().compile_model(sys.argv[1], 'CPU', json.loads(sys.argv[2]))"


def _compiles_in_a_child(model: Path, config: dict) -> None:
    """OpenVINO compiles ``model`` once in a child process before qx does: some int8 graphs crash
    its CPU plugin outright (SIGFPE in compile_model on PP-OCRv4 recognition's int8 QDQ model, with
    OpenVINO 2026.4), which in qx's own process would end the run without a word or a report. A
    child that dies by a signal or fails becomes one line naming the file and the way out."""
    done = subprocess.run([sys.executable, "-c", _COMPILE, str(model), json.dumps(config)],
                          capture_output=True, text=True)
    if done.returncode == 0:
        return
    if done.returncode < 0:
        cause = f"its CPU plugin crashed compiling it ({signal.Signals(-done.returncode).name})"
    else:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        cause = f"it cannot compile it ({lines[-1][:200] if lines else f'exit {done.returncode}'})"
    raise _refused(model, cause)


def _refused(model: Path, cause: str) -> UserInputError:
    return UserInputError(f"{model}: OpenVINO: {cause}; use --backend onnxruntime")
