"""Decide, node by node, what is quantized and why; and which tensors share a scale.

What each op type allows comes from the ``OpSpec`` table (``op_specs.py``); this module applies
it to one graph. Every node gets a decision with a reason, the FP32 ones included, for
``--explain``. Two graph-level rules live here because they need the neighbourhood of a node:

- a MatMul whose only reader is an Add of a constant vector (a Linear on a 3-D input) forms one
  unit with it, and that Add's constant becomes the MatMul's int32 bias at s_in * s_w;
- Clip is an exact int8 pass-through only when it clamps at 0 (ReLU6); any other Clip stays FP32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ..ir.graph_edit import constant_array
from .compute_reason import compute_reason
from .op_specs import OpSpec, Role, SharedScale, spec_for

# A tensor this large holds masking values (Hugging Face writes torch.finfo(float32).min into
# additive attention masks), not a signal: one int8 step would be 2.7e36.
MASK_MAGNITUDE = 1e30


@dataclass
class NodeDecision:
    name: str
    op_type: str
    quantized: bool
    reason: str


@dataclass(frozen=True)
class BiasUse:
    """An int32 bias: ``node.inputs[bias_index]`` at scale s(compute.inputs[data]) * s(compute.inputs[weight])."""

    node: str
    bias_index: int
    compute: str
    data_index: int = 0
    weight_index: int = 1


@dataclass
class QuantPlan:
    decisions: list[NodeDecision] = field(default_factory=list)
    activation_uses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # tensor -> (node, input)
    weight_uses: list[tuple[str, int]] = field(default_factory=list)  # (node, input) of constant operands
    bias_uses: list[BiasUse] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # tensor -> group representative
    group_stats: dict[str, set[str]] = field(default_factory=dict)  # representative -> tensors observed

    def observed_tensors(self) -> list[str]:
        wanted = {self.groups.get(t, t) for t in self.activation_uses}
        return sorted({s for rep in wanted for s in self.group_stats.get(rep, {rep})})

    def group_of(self, tensor: str) -> str:
        return self.groups.get(tensor, tensor)

    def group_members(self, representative: str) -> set[str]:
        return {t for t, rep in self.groups.items() if rep == representative} | {representative}


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype in (ir.DataType.FLOAT, None)


class _Groups:
    """Union-find over tensors that share a scale."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.designated: set[str] = set()  # tensors whose statistics define their group's scale

    def find(self, tensor: str) -> str:
        while self.parent.get(tensor, tensor) != tensor:
            tensor = self.parent[tensor]
        return tensor

    def join(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a


def plan_quantization(model: ir.Model, exclude: set[str], kept_fp32: dict[str, str] | None = None) -> QuantPlan:
    """``exclude``: node names or op types from ``--exclude``; ``kept_fp32``: node name -> reason
    for nodes the calibration showed cannot be int8 (see ``nodes_reading_masks``)."""
    plan = QuantPlan()
    groups = _Groups()
    bias_adds = _matmul_bias_adds(model.graph, exclude, kept_fp32 or {})
    for node in model.graph:
        decision, spec = _decide(node, exclude, kept_fp32 or {}, bias_adds)
        plan.decisions.append(decision)
        if spec is None:
            continue
        if node.name in bias_adds:
            matmul = bias_adds[node.name]
            plan.bias_uses.append(BiasUse(node.name, _constant_input(node), matmul))
            continue
        activations = _add_operands(plan, node, spec)
        if spec.bias_input is not None and _has_constant(node, spec.bias_input):
            plan.bias_uses.append(BiasUse(node.name, spec.bias_input, node.name))
        if isinstance(spec.output, SharedScale):
            output = node.outputs[0].name
            for member in activations:
                groups.join(output, member)
            groups.designated.add(output if spec.output.stats_from == "output" else activations[0])
    tensors = set(plan.activation_uses) | set(groups.parent) | groups.designated
    for tensor in tensors:
        plan.groups[tensor] = groups.find(tensor)
    for tensor in sorted(groups.designated):
        plan.group_stats.setdefault(groups.find(tensor), set()).add(tensor)
    for tensor in tensors:
        plan.group_stats.setdefault(groups.find(tensor), {groups.find(tensor)})
    return plan


def _add_operands(plan: QuantPlan, node: ir.Node, spec: OpSpec) -> list[str]:
    """Record the node's activation and weight operands; returns the activation names."""
    indices = spec.data_inputs if spec.data_inputs is not None else range(len(node.inputs))
    activations = []
    for index in indices:
        value = node.inputs[index] if index < len(node.inputs) else None
        if not _is_float(value):
            continue
        if constant_array(value) is not None:
            if spec.role is not Role.SHARED:  # a constant joining a shared grid stays float
                plan.weight_uses.append((node.name, index))
            continue
        activations.append(value.name)
        plan.activation_uses.setdefault(value.name, []).append((node.name, index))
    plan.weight_uses.extend((node.name, index) for index in spec.weight_inputs)
    return activations


def nodes_reading_masks(plan: QuantPlan, amax: dict[str, float]) -> dict[str, str]:
    """Quantized nodes that read a tensor holding masking values (|x| >= MASK_MAGNITUDE), with
    the reason they must stay FP32. Checked per scale group: a Reshape of a mask shares its grid."""
    masked: dict[str, str] = {}
    for tensor, uses in plan.activation_uses.items():
        group = plan.group_of(tensor)
        worst = max((amax.get(t, 0.0) for t in plan.group_stats.get(group, {group})), default=0.0)
        if worst >= MASK_MAGNITUDE:
            for node, _ in uses:
                masked.setdefault(node, f"reads '{tensor}', which holds masking values (|x| = {worst:.3g}, an "
                                        "additive attention mask); int8 would flatten the scores Softmax needs; kept FP32")
    return masked


def _has_constant(node: ir.Node, index: int) -> bool:
    return index < len(node.inputs) and constant_array(node.inputs[index]) is not None


def _constant_input(node: ir.Node) -> int:
    return 1 if constant_array(node.inputs[1]) is not None else 0


def _matmul_bias_adds(graph: ir.Graph, exclude: set[str], kept_fp32: dict[str, str]) -> dict[str, str]:
    """Add node -> MatMul node, for every MatMul(x, W) + b with constant W (2-D) and constant b
    broadcasting along W's output columns only, where the Add is the MatMul's only reader."""
    pairs = {}
    for node in graph:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or _blocked(node, exclude, kept_fp32):
            continue
        weight = constant_array(node.inputs[1])
        out = node.outputs[0]
        uses = list(out.uses())
        if weight is None or weight.ndim != 2 or out.is_graph_output() or len(uses) != 1:
            continue
        add = uses[0].node
        if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or _blocked(add, exclude, kept_fp32):
            continue
        bias = constant_array(add.inputs[1 - uses[0].idx])
        if bias is not None and bias.dtype == np.float32 and bias.size == weight.shape[1] and (
                bias.ndim == 1 or all(d == 1 for d in bias.shape[:-1])):
            pairs[add.name] = node.name
    return pairs


def _blocked(node: ir.Node, exclude: set[str], kept_fp32: dict[str, str]) -> bool:
    return node.name in exclude or node.op_type in exclude or node.name in kept_fp32


def _decide(node: ir.Node, exclude: set[str], kept_fp32: dict[str, str],
            bias_adds: dict[str, str]) -> tuple[NodeDecision, OpSpec | None]:
    op = node.op_type

    def fp32(reason: str) -> tuple[NodeDecision, None]:
        return NodeDecision(node.name, op, False, reason), None

    if node.name in exclude or op in exclude:
        return fp32("excluded by --exclude")
    if node.name in kept_fp32:
        return fp32(kept_fp32[node.name])
    if node.domain not in ("", "ai.onnx"):
        return fp32(f"custom domain '{node.domain}'; kept FP32")
    spec = spec_for(op, node.domain)
    if spec is None:
        return fp32(f"no symmetric int8 rule for {op}; kept FP32")
    if not spec.quantized:
        return fp32(spec.fp32_reason)
    if node.name in bias_adds:
        reason = f"bias of MatMul '{bias_adds[node.name]}': int32 at s_in*s_w, added to the int32 accumulator"
        return NodeDecision(node.name, op, True, reason), spec
    if not any(_is_float(v) for v in node.inputs if v is not None):
        return fp32("no float input (shape or index arithmetic)")
    blocker = _spec_blocker(node, spec)
    if blocker:
        return fp32(blocker)
    return NodeDecision(node.name, op, True, compute_reason(node, spec, node.name in bias_adds.values())), spec


def _spec_blocker(node: ir.Node, spec: OpSpec) -> str | None:
    if node.op_type == "Conv" and constant_array(node.inputs[1]) is None:
        return "Conv weight is computed at run time; per-tensor weight scale unknown, kept FP32"
    if node.op_type == "Gemm":
        trans_a = node.attributes.get("transA")
        if trans_a is not None and trans_a.value:
            return "Gemm with transA has no int8 kernel in onnxruntime; kept FP32"
    if node.op_type == "Clip" and not _clamps_at_zero(node):
        return "Clip with a lower bound other than 0 is not exact on a symmetric grid; kept FP32"
    if spec.role is Role.SHARED and (
        not node.inputs or not _is_float(node.inputs[0]) or constant_array(node.inputs[0]) is not None
    ):
        return "no float activation input"
    return None


def _clamps_at_zero(node: ir.Node) -> bool:
    low = constant_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
    high = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if len(node.inputs) > 2 and node.inputs[2] is not None and high is None:
        return False  # an upper bound computed at run time
    return low is not None and low.size == 1 and float(low.reshape(-1)[0]) == 0.0
