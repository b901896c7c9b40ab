"""OpenVINO's own per-layer times, split into the int8/FP32 compute layers and the rest.

A whole model's int8/FP32 latency ratio cannot beat the ratio of its convolutions and matrix
products, which is the runtime's kernels on this CPU, whoever wrote the file; the rest (pooling,
normalization, reorders, and the time between layers) is where a file's structure shows. Measured
with ``PERF_COUNT`` on, one model after the other, on qx's OpenVINO settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# OpenVINO CPU plugin node types that hold a convolution or a matrix product (int8 or float).
COMPUTE = frozenset({"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected",
                     "FullyConnectedQuantized", "FullyConnectedQuantizedLegacy", "MatMul"})


def layer_times(models: dict[str, Path], feed: np.ndarray, runs: int) -> dict[str, dict[str, float]]:
    """Per model: the median ms per run spent in compute layers and in the other layers. One model
    profiled at a time: with five taking turns, BERT-base FP32's compute layers once read 99 ms,
    against 53-54 ms profiled alone or taking turns with one other (cause not found; an idle
    compiled model in the process does not slow another one's runs)."""
    return {role: _one_model(path, feed, runs) for role, path in models.items()}


def _one_model(model: Path, feed: np.ndarray, runs: int) -> dict[str, float]:
    import openvino as ov

    from mlperf_qx.verify.backends import openvino_config

    request = ov.Core().compile_model(str(model), "CPU", openvino_config() | {"PERF_COUNT": True}).create_infer_request()
    request.infer({0: feed})
    spent: dict[str, list[float]] = {"compute_ms": [], "other_ms": []}
    for _ in range(runs):
        request.infer({0: feed})
        compute = other = 0.0
        for layer in request.get_profiling_info():
            ms = layer.real_time.total_seconds() * 1e3
            if layer.node_type in COMPUTE:
                compute += ms
            else:
                other += ms
        spent["compute_ms"].append(compute)
        spent["other_ms"].append(other)
    return {part: float(np.median(values)) for part, values in spent.items()}
