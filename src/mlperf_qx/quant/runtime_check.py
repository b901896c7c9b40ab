"""What onnxruntime makes of a quantized model: which int8 kernels it fused, and how close the
int8 outputs (and every quantized tensor) stay to FP32."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..runtime import open_session
from .op_specs import ORT_INT8_KERNELS as INT8_KERNELS


@dataclass
class FusionReport:
    int8_kernels: dict[str, int]
    fused_nodes: list[str]
    remaining_float_compute: dict[str, int]
    session: str = ""  # the session.x64quantprecision decision and why (runtime.Int8Precision)
    flops: object | None = None  # fused_flops.FlopCount of the optimized graph on the first check sample


def check_int8_model(model: tuple[onnx.ModelProto, dict[str, np.ndarray]], feeds: list[dict[str, np.ndarray]],
                     names: list[str]) -> tuple[FusionReport, dict[str, np.ndarray]]:
    """One onnxruntime session for both checks of a fresh int8 model (read once: ``load_apart``):
    what it fused (the graph optimized at the EXTENDED level: portable, no hardware-specific
    layouts) and the named outputs on each feed, concatenated along axis 0."""
    from .weights_apart import open_apart

    with tempfile.TemporaryDirectory() as folder:
        optimized = Path(folder) / "optimized.onnx"
        session = open_apart(*model, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, optimized_model_path=optimized)
        graph_only = onnx.load(str(optimized), load_external_data=False)  # its weights stay in the file beside it
        flops = _fused_flops(graph_only, Path(folder), feeds)
    graph = graph_only.graph
    kernels = Counter(n.op_type for n in graph.node if n.op_type in INT8_KERNELS)
    fused = sorted(n.name for n in graph.node if n.op_type in INT8_KERNELS)
    float_compute = Counter(n.op_type for n in graph.node if n.op_type in {"Conv", "MatMul", "Gemm", "FusedConv", "FusedGemm"})
    report = FusionReport(dict(sorted(kernels.items())), fused, dict(sorted(float_compute.items())),
                          session.qx_int8_precision.describe(), flops)
    results = [session.run(names, feed) for feed in feeds]
    outputs = {name: join_samples([r[i] for r in results]) for i, name in enumerate(names)} if results else {}
    return report, outputs


def _fused_flops(graph_only: onnx.ModelProto, folder: Path, feeds: list[dict[str, np.ndarray]]):
    """What the optimized graph runs in int8, by multiply-adds (see fused_flops); None without a
    sample, or when the optimized graph cannot be run on its own (a diagnostic: never fatal). The
    graph is read without its weights: onnxruntime reads them from the data file in ``folder``
    (loading them into protobuf, copying and serializing them took 3.9 s of check_int8_model's
    6.7 s on mpnet)."""
    from .fused_flops import count_flops

    if not feeds:
        return None
    try:
        return count_flops(graph_only, feeds[0], folder)
    except Exception:
        return None


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    reference = reference.astype(np.float64)
    noise = np.sum((reference - candidate.astype(np.float64)) ** 2)
    signal = np.sum(reference ** 2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """1.0 for two all-zero tensors (they agree), 0.0 when only one is all zero (nothing of the
    other survives: an all-zero int8 layer must not read as a perfect one)."""
    a, b = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    if denominator == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(a @ b / denominator)


def expose_tensors(graph: onnx.GraphProto, names: list[str]) -> None:
    """Make each named intermediate tensor a graph output too (with its element type), so a
    session returns it."""
    present = {o.name for o in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    for node in graph.node:  # Q outputs are int8 even where no value_info says so
        if node.op_type == "QuantizeLinear" or node.op_type.startswith("QLinear"):
            types.setdefault(node.output[0], onnx.TensorProto.INT8)
    for name in names:
        if name not in present:
            graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name) or onnx.TensorProto.FLOAT, None))


def with_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``proto`` whose graph also outputs the named tensors."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(proto)
    expose_tensors(augmented.graph, names)
    return augmented


def run_with_tensors(proto: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """Run ``proto`` on each feed; the named tensors (added as outputs when needed), joined over
    the feeds (``join_samples``)."""
    session = open_session(with_outputs(proto, names))
    results = [session.run(names, feed) for feed in feeds]
    return {name: join_samples([r[i] for r in results]) for i, name in enumerate(names)}


def join_samples(parts: list[np.ndarray]) -> np.ndarray:
    """One tensor's values on several samples, in sample order, as one array: concatenated along
    axis 0 where every part has the same trailing shape, else each part flattened first. A model
    with dynamic sizes (a fully convolutional net calibrated on images of several sizes) gives
    outputs of different shapes per sample, which axis 0 cannot join; the figures taken over the
    join (SQNR, largest difference) read every value either way, and two models' outputs on the
    same samples are joined alike."""
    parts = [np.atleast_1d(part) for part in parts]
    if len({part.shape[1:] for part in parts}) <= 1:
        return np.concatenate(parts)
    return np.concatenate([part.reshape(-1) for part in parts])
