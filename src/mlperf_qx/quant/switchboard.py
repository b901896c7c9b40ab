"""One FP32 graph in which every quantized op can be switched between int8 and FP32 at run time.

Built once from the FP32 model, the quantization plan and the calibrated scales: each activation
a quantized op reads gets its QuantizeLinear -> DequantizeLinear pair, each weight and int32 bias
its dequantized int8 value, and each op (a *unit*) a boolean graph input, its gate. The op reads
``Where(gate, fake-quantized operand, FP32 operand)``. Feeding other gates gives the outputs of
the model with any set of ops kept in FP32 - no re-quantization, no recalibration, no new session
per trial; the scales are the calibrated ones throughout, exactly as the int8 model will use them.

Units are the quantized ops: those that compute (MatMul, Conv, Gemm, Add, Mul, pooling...) and the
pass-through ops that share their input's grid (Reshape, Transpose, Squeeze, MaxPool, Concat...).
The op itself is exact on the grid, but the Q/DQ written before it rounds its input: real error,
measured like any other (on magika it took the written model to 0.707 cosine while a search that
called those ops exact promised 1.0). A Linear's bias Add follows its MatMul's gate (int32 only
when both operands are int8). With every gate off the graph is the FP32 model exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..kernels.quantize import quantize_bias_int32, quantize_int8
from ..runtime import open_session
from .annotate import QuantPlan
from .op_specs import spec_for
from .scales import weight_scale

GATE_PREFIX = "qx_gate/"
SHARED_GATE = "qx_gate/shared"  # any other gated node (none today): on whenever a unit is int8
QUICK_SAMPLES = 4  # samples per single-op sensitivity trial (the search itself uses all held-out samples)


@dataclass
class OutputError:
    mean_cosine: float
    min_cosine: float
    sqnr_db: float
    accuracy: float | None = None  # top-1 of the first output against held-out labels, in %


def gate_name(unit: str) -> str:
    return GATE_PREFIX + unit


class Switchboard:
    def __init__(self, fp32: onnx.ModelProto, plan: QuantPlan, scales: dict[str, np.float32],
                 feeds: list[dict[str, np.ndarray]], labels: list[int] | None = None):
        self.labels = labels
        self.units = _units(fp32, plan)
        proto = _gated_model(fp32, plan, scales, self.units)
        self.output_names = [o.name for o in fp32.graph.output]
        self.session = open_session(proto)
        self.feeds, probed = _batched(self.session, feeds)
        self.reference = probed or self.outputs(set())
        # The first few samples, for the many single-op trials of the sensitivity pass.
        self.quick = _Subset(self, feeds[:QUICK_SAMPLES], labels[:QUICK_SAMPLES] if labels else None) \
            if len(feeds) > QUICK_SAMPLES else self

    def outputs(self, int8: set[str], feeds: list[dict] | None = None) -> list[list[np.ndarray]]:
        """The model's outputs per feed batch, with the units in ``int8`` quantized, the rest FP32."""
        gates = {gate_name(u): np.array(u in int8) for u in self.units}
        gates[SHARED_GATE] = np.array(bool(int8))
        return [self.session.run(self.output_names, {**feed, **gates}) for feed in (feeds or self.feeds)]

    def error(self, int8: set[str]) -> OutputError:
        """The outputs' error against all-FP32 on every held-out sample (all-FP32 itself is the
        reference already computed: with every gate off the graph is the FP32 model)."""
        return _error(self.reference, self.outputs(int8) if int8 else self.reference, self.labels)


def _error(references: list[list[np.ndarray]], outputs: list[list[np.ndarray]], labels: list[int] | None) -> OutputError:
    """Per-sample cosine (each output flattened), SQNR and top-1 of the outputs against the references."""
    cosines, noise, signal = [], 0.0, 0.0
    for reference, candidate in zip(references, outputs):
        a = np.concatenate([r.reshape(r.shape[0], -1) for r in reference if r.ndim >= 1], axis=1).astype(np.float64)
        b = np.concatenate([c.reshape(c.shape[0], -1) for c in candidate if c.ndim >= 1], axis=1).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosines.extend(np.where(norms > 0, np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0), 1.0))
        noise += float(np.sum((a - b) ** 2))
        signal += float(np.sum(a ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(signal / noise) if signal > 0 else float("-inf")
    return OutputError(float(np.mean(cosines)), float(np.min(cosines)), float(sqnr), _accuracy(outputs, labels))




def _accuracy(outputs: list[list[np.ndarray]], labels: list[int] | None) -> float | None:
    """Top-1 of the first output, scored by the classification accuracy script's own function."""
    if labels is None:
        return None
    from ..accuracy.classification import score

    first = np.concatenate([o[0].reshape(o[0].shape[0], -1) for o in outputs])
    good, total = score({i: int(row.argmax()) for i, row in enumerate(first)}, labels)
    return 100.0 * good / max(total, 1)


class _Subset:
    """The same switchboard on fewer samples (same session, own reference outputs)."""

    def __init__(self, board: Switchboard, feeds: list[dict], labels: list[int] | None):
        self.board, self.labels = board, labels
        self.feeds, probed = _batched(board.session, feeds)
        self.reference = probed or board.outputs(set(), self.feeds)

    def error(self, int8: set[str]) -> OutputError:
        return _error(self.reference, self.board.outputs(int8, self.feeds) if int8 else self.reference, self.labels)


def _units(fp32: onnx.ModelProto, plan: QuantPlan) -> list[str]:
    """The quantized ops that get a gate, in graph order."""
    quantized = {d.name for d in plan.decisions if d.quantized}
    bias_adds = {b.node for b in plan.bias_uses if b.node != b.compute}
    units = []
    for node in fp32.graph.node:
        if node.name not in quantized or node.name in bias_adds:
            continue
        if spec_for(node.op_type, node.domain) is not None:
            units.append(node.name)
    return units


def _gated_model(fp32: onnx.ModelProto, plan: QuantPlan, scales: dict[str, np.float32], units: list[str]) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    proto.CopyFrom(fp32)
    graph = proto.graph
    nodes = {n.name: n for n in graph.node}
    inits = {t.name: t for t in graph.initializer}
    unit_set = set(units)
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    gate_of = {u: u for u in units}
    for use in plan.bias_uses:
        gate_of.setdefault(use.node, use.compute)

    def gated(node_name: str, index: int, fake: str) -> None:
        """node.input[index] := Where(gate, fake, original); ungated nodes read ``fake`` always."""
        node = nodes[node_name]
        gate = gate_of.get(node_name)
        gate_input = gate_name(gate) if gate is not None and gate in unit_set else SHARED_GATE
        switched = f"{fake}/{node_name}/{index}"
        new_nodes.append(helper.make_node("Where", [gate_input, fake, node.input[index]], [switched],
                                          name=f"qx_switch/{node_name}/{index}"))
        node.input[index] = switched

    activation_scale = {}
    for tensor, uses in plan.activation_uses.items():
        scale = np.float32(scales[plan.group_of(tensor)])
        activation_scale[tensor] = scale
        s_name, z_name, q_name, fake = (f"qx_fq/{tensor}/{k}" for k in ("scale", "zero", "q", "dq"))
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), s_name),
                      numpy_helper.from_array(np.array(0, np.int8), z_name)]
        new_nodes += [helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q_name], name=f"qx_fq/{tensor}/Q"),
                      helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [fake], name=f"qx_fq/{tensor}/DQ")]
        for node_name, index in uses:
            gated(node_name, index, fake)
    weight_scales = {}
    for node_name, index in plan.weight_uses:
        name = nodes[node_name].input[index]
        if name not in inits or name.startswith("qx_fq/"):
            continue
        weights = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = weight_scale(weights)
        weight_scales[(node_name, index)] = scale
        fake = f"qx_fq/{name}/{node_name}"
        new_inits.append(numpy_helper.from_array(quantize_int8(weights, scale, narrow=True).astype(np.float32) * scale, fake))
        gated(node_name, index, fake)
    for use in plan.bias_uses:
        compute = nodes[use.compute]
        s_in = activation_scale.get(compute.input[use.data_index])
        s_w = weight_scales.get((use.compute, use.weight_index))
        name = nodes[use.node].input[use.bias_index]
        if s_in is None or s_w is None or name not in inits:
            continue
        quantized, scale = quantize_bias_int32(numpy_helper.to_array(inits[name]), s_in, s_w)
        fake = f"qx_fq/{name}/{use.node}"
        new_inits.append(numpy_helper.from_array(quantized.astype(np.float32) * np.float32(scale), fake))
        gated(use.node, use.bias_index, fake)
    graph.initializer.extend(new_inits)
    graph.input.extend(helper.make_tensor_value_info(name, onnx.TensorProto.BOOL, [])
                       for name in [*map(gate_name, units), SHARED_GATE])
    ordered = list(new_nodes) + list(graph.node)
    del graph.node[:]
    graph.node.extend(_topological(ordered, {i.name for i in graph.input} | {t.name for t in graph.initializer}))
    del graph.value_info[:]
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if not value.name.startswith(GATE_PREFIX) and len(dims) > 0:
            dims[0].Clear()
            dims[0].dim_param = "qx_batch"
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    return proto


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's order, stable: among ready nodes the earlier in ``nodes`` goes first."""
    import heapq

    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in set(node.input):
            if name and name not in available and name in producer:
                waiting[k] += 1
                readers.setdefault(producer[name], []).append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        k = heapq.heappop(ready)
        ordered.append(nodes[k])
        for reader in readers.get(k, []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(ordered) != len(nodes):
        raise ValueError("the gated graph has a cycle")
    return ordered


def _batched(session, feeds: list[dict[str, np.ndarray]]) -> tuple[list[dict[str, np.ndarray]], list | None]:
    """The feeds as one batch when the model takes one (same shapes, batch axis 0), else one by one;
    and, when batched, the all-FP32 outputs of that batch (the probe run is the reference run)."""
    if len(feeds) > 1 and all(f.keys() == feeds[0].keys() and all(f[k].shape == feeds[0][k].shape for k in f) for f in feeds):
        joined = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
        try:
            names = [o.name for o in session.get_outputs()]
            gates = {i.name: np.array(False) for i in session.get_inputs() if i.name.startswith(GATE_PREFIX)}
            batch = session.run(names, {**joined, **gates})
            single = session.run(names, {**feeds[0], **gates})
            if all(b.shape[0] == len(feeds) and b.shape[1:] == s.shape[1:] and np.allclose(b[:1], s, rtol=1e-4, atol=1e-5)
                   for b, s in zip(batch, single) if s.ndim >= 1):
                return [joined], [batch]
        except Exception:
            pass
    return feeds, None
