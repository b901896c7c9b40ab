"""The runtimes an ONNX model can answer LoadGen from: onnxruntime (the default) or OpenVINO.

Both read the same ONNX file; nothing in the model changes. OpenVINO is used directly
(``openvino.Core().compile_model``) rather than through onnxruntime's OpenVINO execution
provider: that provider ships as its own onnxruntime build (``onnxruntime-openvino``, 1.24 on the
registry) that installs the same ``onnxruntime`` module as the pinned 1.32 CPU build, so the two
cannot sit side by side in one environment, and qx's reference numerics (the intensional audit)
need the pinned build.

OpenVINO runs int8 QDQ models on its own int8 kernels (VNNI/AMX where the CPU has them). Its
settings are fixed so runs compare: the CPU device, one stream (the SUT issues one batch at a
time), the given number of threads (default: every core, as onnxruntime's default), and f32 as the
precision of whatever runs in float, since on CPUs with AMX-BF16 OpenVINO would otherwise run an
FP32 reference in bf16.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from .loadgen_harness import Backend

BACKENDS = ("onnxruntime", "openvino")


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise UserInputError(f"--backend must be one of {', '.join(BACKENDS)} (got '{name}')")
    return name


def model_backend(model: Path, batch: int, backend: str = "onnxruntime", threads: int = 0) -> Backend:
    """A ``Backend`` running the ONNX file ``model`` on ``backend`` (see BACKENDS)."""
    check_backend_name(backend)
    if backend == "openvino":
        return openvino_backend(model, batch, threads)
    return onnxruntime_backend(model, batch, threads)


def _batch(first_dim, batch: int) -> int:
    """The SUT's batch: ``batch`` when the model's batch dimension is free, else 1."""
    return batch if first_dim is None or not isinstance(first_dim, int) else 1


def onnxruntime_backend(model: Path, batch: int, threads: int = 0) -> Backend:
    import onnxruntime as ort

    from ..runtime import open_session

    session = open_session(model, threads=threads, spin_between_runs=False)
    first = session.get_inputs()[0].shape
    outputs = [o.name for o in session.get_outputs()]
    precision = session.qx_int8_precision.describe()
    return Backend(f"onnxruntime {ort.__version__} CPU ({model.name}; {precision})",
                   [i.name for i in session.get_inputs()], _batch(first[0] if first else None, batch),
                   lambda feeds: dict(zip(outputs, session.run(outputs, feeds))))


def openvino_backend(model: Path, batch: int, threads: int = 0) -> Backend:
    import openvino as ov

    threads = threads or os.cpu_count() or 1
    core = ov.Core()
    try:
        network = core.read_model(str(model))
        compiled = core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                                       "INFERENCE_PRECISION_HINT": "f32"})
    except RuntimeError as exc:
        raise UserInputError(f"{model}: OpenVINO cannot compile it ({str(exc).strip().splitlines()[0][:200]}); "
                             "use --backend onnxruntime") from None
    request = compiled.create_infer_request()
    inputs = [port.get_any_name() for port in compiled.inputs]
    outputs = [(port.get_any_name(), port) for port in compiled.outputs]
    first = network.inputs[0].get_partial_shape()[0] if network.inputs and network.inputs[0].get_partial_shape().rank.get_length() else None

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = request.infer(feeds)
        # The request reuses its output buffers on the next call: copy what is returned.
        return {name: np.array(results[port]) for name, port in outputs}

    version = ov.get_version().split("-")[0]
    return Backend(f"OpenVINO {version} CPU ({model.name}; {threads} threads, 1 stream, f32 precision hint)",
                   inputs, _batch(None if first is None or first.is_dynamic else first.get_length(), batch), run)
