"""How much of a model's multiply-add work onnxruntime actually runs in int8, measured on the graph
onnxruntime executes (after its fusions), not on what qx annotated: a Conv left between a
DequantizeLinear and no QuantizeLinear runs in float whatever the plan said.

Every GEMM-like kernel of the optimized graph counts: (QLinear)Conv, ConvInteger, ConvTranspose,
(QLinear)MatMul, MatMulInteger, Gemm/QGemm, fused variants, LSTM/GRU/RNN and onnxruntime's
Attention (its projections). Shapes come from one run on a sample. Work inside If branches is
measured by running the branch taken as a model of its own (its outer-scope values fed from the
main run); a Loop body's work is not counted (its trip count is data), and ``share`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

import onnxruntime as ort

# op type -> (index of the data input, index of the weight input)
INT8_KERNELS = {"QLinearConv": (0, 3), "ConvInteger": (0, 1), "QLinearConvTranspose": (0, 3), "QLinearMatMul": (0, 3),
                "MatMulInteger": (0, 1), "MatMulIntegerToFloat": (0, 1), "DynamicQuantizeMatMul": (0, 1),
                "QGemm": (0, 3), "DynamicQuantizeLSTM": (0, 1), "QAttention": (0, 1)}
FLOAT_KERNELS = {"Conv": (0, 1), "FusedConv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "FusedMatMul": (0, 1),
                 "Gemm": (0, 1), "FusedGemm": (0, 1), "LSTM": (0, 1), "GRU": (0, 1), "RNN": (0, 1), "Attention": (0, 1)}


@dataclass
class FlopCount:
    int8: float = 0.0
    float: float = 0.0
    inside_if: float = 0.0  # float work inside If branches (part of ``float``)
    loops_uncounted: list[str] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        total = self.int8 + self.float
        return self.int8 / total if total else None


def count_flops(model: onnx.ModelProto, feed: dict[str, np.ndarray], folder: Path | None = None) -> FlopCount:
    """The work of ``model`` on ``feed``. ``folder``: where the model's external data lies, when it
    was read without it (the runs then read the weights from there, not through protobuf)."""
    count = FlopCount()
    _count_graph(model, model.graph, feed, count, inside_if=False, folder=folder)
    return count


def _count_graph(model: onnx.ModelProto, graph: onnx.GraphProto, feed: dict, count: FlopCount, inside_if: bool,
                 folder: Path | None = None) -> None:
    kernels = [n for n in graph.node if n.op_type in INT8_KERNELS or n.op_type in FLOAT_KERNELS]
    branches = [n for n in graph.node if n.op_type == "If"]
    count.loops_uncounted += [n.name for n in graph.node if n.op_type in ("Loop", "Scan")]
    if not kernels and not branches:
        return
    inits = {t.name: tuple(t.dims) for t in graph.initializer}
    wanted = sorted({name for n in kernels for name in (*_operands(n), n.output[0]) if name and name not in inits}
                    | {name for n in branches for name in [n.input[0], *_outer_names(n)] if name not in inits})
    values = _run(_as_model(model, graph), feed, wanted, folder) if wanted else {}
    for node in kernels:
        shapes = {name: inits[name] if name in inits else tuple(values[name].shape) for name in _operands(node) if name}
        flops = _node_flops(node, shapes, inits.get(node.output[0]) or tuple(values[node.output[0]].shape))
        if node.op_type in INT8_KERNELS:
            count.int8 += flops
        else:
            count.float += flops
            count.inside_if += flops if inside_if else 0.0
    for node in branches:
        taken = "then_branch" if bool(np.asarray(values[node.input[0]]).reshape(-1)[0]) else "else_branch"
        branch = next(a.g for a in node.attribute if a.name == taken)
        free = _outer_names(node)
        outer = {name: values[name] if name in values else feed[name] for name in free if name in values or name in feed}
        constants = [t for t in graph.initializer if t.name in free]  # outer-scope initializers
        _count_graph(model, _with_inputs(branch, outer, constants), outer, count, inside_if=True, folder=folder)


def _operands(node: onnx.NodeProto) -> tuple[str, ...]:
    table = INT8_KERNELS if node.op_type in INT8_KERNELS else FLOAT_KERNELS
    data, weight = table[node.op_type]
    extra = (node.input[2],) if node.op_type in ("LSTM", "GRU", "RNN") and len(node.input) > 2 else ()
    return (node.input[data], node.input[weight] if len(node.input) > weight else "", *extra)


def _node_flops(node: onnx.NodeProto, shapes: dict, out: tuple[int, ...]) -> float:
    """2 per multiply-add."""
    data, weight = (shapes.get(name) for name in _operands(node)[:2])
    op = node.op_type
    if op in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        seq, batch = (data[0], data[1]) if layout == 0 else (data[1], data[0])
        recurrence = shapes.get(node.input[2], (0, 0, 0))
        hidden = recurrence[-1] if op != "DynamicQuantizeLSTM" else weight[-1] // 4
        return 2.0 * seq * batch * weight[0] * weight[1] * (data[-1] + hidden)
    if "ConvTranspose" in op:  # every input value meets a (Cout/group x kernel) slice of the weight
        return 2.0 * float(np.prod(data)) * float(np.prod(weight[1:]))
    if "Conv" in op:
        return 2.0 * float(np.prod(out)) * float(np.prod(weight[1:]))
    if "Gemm" in op:
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        return 2.0 * float(np.prod(out)) * (data[0] if trans_a else data[-1])
    if "Attention" in op:  # the Q, K, V projections
        return 2.0 * float(np.prod(data)) * weight[-1]
    return 2.0 * float(np.prod(out)) * data[-1]


def _outer_names(node: onnx.NodeProto) -> list[str]:
    """Values an If's branches read from the enclosing scope."""
    names: set[str] = set()
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            names |= _free_names(attribute.g)
    return sorted(names)


def _free_names(graph: onnx.GraphProto) -> set[str]:
    defined = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    used: set[str] = set()
    for node in graph.node:
        used |= {name for name in node.input if name}
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                used |= _free_names(attribute.g)
        defined |= set(node.output)
    return used - defined


def _with_inputs(branch: onnx.GraphProto, outer: dict[str, np.ndarray], constants: list) -> onnx.GraphProto:
    graph = onnx.GraphProto()
    graph.CopyFrom(branch)
    graph.initializer.extend(constants)
    for name, array in outer.items():
        graph.input.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), array.shape))
    return graph


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray], names: list[str], folder: Path | None = None
         ) -> dict[str, np.ndarray]:
    """The named tensors on ``feed``; exposed as outputs without a declared type (onnxruntime
    infers it: an exposed Equal is bool, a graph's value_info may not say). With ``folder``, the
    model (its weights external data there) is written there and opened by path."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # already optimized, or a branch
    source = exposed.SerializeToString()
    if folder is not None:  # a new name each run (a branch's model beside the main one)
        path = folder / f"qx_flops_{len(list(folder.glob('qx_flops_*.onnx')))}.onnx"
        path.write_bytes(source)
        source = str(path)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(names, {k: v for k, v in feed.items() if k in inputs})))


def _as_model(model: onnx.ModelProto, graph: onnx.GraphProto) -> onnx.ModelProto:
    if graph is model.graph:
        return model
    standalone = onnx.ModelProto()
    standalone.CopyFrom(model)
    standalone.graph.CopyFrom(graph)
    return standalone
