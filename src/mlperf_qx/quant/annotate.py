"""Decide, node by node, what is quantized and why; and which tensors share a scale.

Rules are a registry from op type to a small rule object, so the decisions read as a table.
Every node gets a decision with a reason, the FP32 ones included, for ``--explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

from ..ir.graph_edit import constant_array


@dataclass(frozen=True)
class Rule:
    kind: str  # "compute" (int8 GEMM/conv), "elementwise", "shared" (output on the input's grid), "own"
    data_inputs: tuple[int, ...] | None = None  # None: every input
    weight_inputs: tuple[int, ...] = ()
    bias_input: int | None = None
    stats_from: str = "input"  # for "shared": which side's statistics define the common scale


RULES: dict[str, Rule] = {
    "Conv": Rule("compute", data_inputs=(0,), weight_inputs=(1,), bias_input=2),
    "Gemm": Rule("compute", data_inputs=(0, 1), bias_input=2),
    "MatMul": Rule("compute", data_inputs=(0, 1)),
    "Add": Rule("elementwise"),
    "Mul": Rule("elementwise"),
    "AveragePool": Rule("own", data_inputs=(0,)),
    "GlobalAveragePool": Rule("own", data_inputs=(0,)),
    # Same grid on both sides: the int8 op is then exact (max, move, clamp at zero).
    "Relu": Rule("shared", data_inputs=(0,), stats_from="output"),
    "Concat": Rule("shared", stats_from="output"),
    "MaxPool": Rule("shared", data_inputs=(0,)),
    "GlobalMaxPool": Rule("shared", data_inputs=(0,)),
    "Reshape": Rule("shared", data_inputs=(0,)),
    "Flatten": Rule("shared", data_inputs=(0,)),
    "Transpose": Rule("shared", data_inputs=(0,)),
    "Squeeze": Rule("shared", data_inputs=(0,)),
    "Unsqueeze": Rule("shared", data_inputs=(0,)),
}

FP32_REASONS: dict[str, str] = {
    "Softmax": "probabilities span orders of magnitude below one int8 step; kept FP32 (MLPerf allows per-op precision)",
    "LayerNormalization": "mean/variance need float accumulation and its outputs carry trained outliers; kept FP32",
    "Gelu": "nonlinear with no int8 kernel in onnxruntime; kept FP32",
    "Erf": "part of GELU; nonlinear with no int8 kernel; kept FP32",
    "Sigmoid": "nonlinear; int8 lookup not in the lowest-common-denominator set; kept FP32",
    "Tanh": "nonlinear; int8 lookup not in the lowest-common-denominator set; kept FP32",
    "Div": "division amplifies quantization error of small denominators; kept FP32",
    "Sqrt": "normalization arithmetic; kept FP32",
    "Pow": "normalization arithmetic; kept FP32",
    "ReduceMean": "reduction; onnxruntime has no int8 kernel for it; kept FP32",
    "Sub": "no symmetric int8 kernel in onnxruntime; kept FP32",
}


@dataclass
class NodeDecision:
    name: str
    op_type: str
    quantized: bool
    reason: str


@dataclass
class QuantPlan:
    decisions: list[NodeDecision] = field(default_factory=list)
    activation_uses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # tensor -> (node, input)
    weight_uses: list[tuple[str, int]] = field(default_factory=list)  # (node, input) of constant operands
    bias_uses: list[tuple[str, int, int, int]] = field(default_factory=list)  # (node, bias in, data in, weight in)
    groups: dict[str, str] = field(default_factory=dict)  # tensor -> group representative
    group_stats: dict[str, set[str]] = field(default_factory=dict)  # representative -> tensors observed

    def observed_tensors(self) -> list[str]:
        wanted = {self.groups.get(t, t) for t in self.activation_uses}
        return sorted({s for rep in wanted for s in self.group_stats.get(rep, {rep})})

    def group_of(self, tensor: str) -> str:
        return self.groups.get(tensor, tensor)


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype in (ir.DataType.FLOAT, None)


def plan_quantization(model: ir.Model, exclude: set[str]) -> QuantPlan:
    plan = QuantPlan()
    parent: dict[str, str] = {}
    designated: set[str] = set()  # tensors whose statistics define their scale group

    def find(t: str) -> str:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for node in model.graph:
        decision, rule = _decide(node, exclude)
        plan.decisions.append(decision)
        if not decision.quantized:
            continue
        indices = rule.data_inputs if rule.data_inputs is not None else range(len(node.inputs))
        activations = []
        for index in indices:
            value = node.inputs[index] if index < len(node.inputs) else None
            if not _is_float(value):
                continue
            if constant_array(value) is not None:
                if rule.kind != "shared":  # a constant joining a shared grid stays float
                    plan.weight_uses.append((node.name, index))
                continue
            activations.append(value.name)
            plan.activation_uses.setdefault(value.name, []).append((node.name, index))
        plan.weight_uses.extend((node.name, index) for index in rule.weight_inputs)
        if rule.bias_input is not None and _has_constant(node, rule.bias_input):
            plan.bias_uses.append((node.name, rule.bias_input, 0, 1))
        if rule.kind == "shared":
            output = node.outputs[0].name
            for member in activations:
                root_a, root_b = find(output), find(member)
                if root_a != root_b:
                    parent[root_b] = root_a
            designated.add(output if rule.stats_from == "output" else activations[0])
    tensors = set(plan.activation_uses) | set(parent) | designated
    for tensor in tensors:
        plan.groups[tensor] = find(tensor)
    for tensor in sorted(designated):
        plan.group_stats.setdefault(find(tensor), set()).add(tensor)
    for tensor in tensors:
        plan.group_stats.setdefault(find(tensor), {find(tensor)})
    return plan


def _has_constant(node: ir.Node, index: int) -> bool:
    return index < len(node.inputs) and constant_array(node.inputs[index]) is not None


def _decide(node: ir.Node, exclude: set[str]) -> tuple[NodeDecision, Rule | None]:
    op = node.op_type
    if node.name in exclude or op in exclude:
        return NodeDecision(node.name, op, False, "excluded by --exclude"), None
    if node.domain not in ("", "ai.onnx"):
        return NodeDecision(node.name, op, False, f"custom domain '{node.domain}'; kept FP32"), None
    rule = RULES.get(op)
    if rule is None:
        reason = FP32_REASONS.get(op, f"no symmetric int8 rule for {op}; kept FP32")
        return NodeDecision(node.name, op, False, reason), None
    if not any(_is_float(v) for v in node.inputs if v is not None):
        return NodeDecision(node.name, op, False, "no float input (shape or index arithmetic)"), None
    rule_reason = _rule_blocker(node, rule)
    if rule_reason:
        return NodeDecision(node.name, op, False, rule_reason), None
    return NodeDecision(node.name, op, True, _quantized_reason(rule)), rule


def _rule_blocker(node: ir.Node, rule: Rule) -> str | None:
    if rule.kind == "compute" and node.op_type == "Conv" and constant_array(node.inputs[1]) is None:
        return "Conv weight is computed at run time; per-tensor weight scale unknown, kept FP32"
    if node.op_type == "Gemm":
        trans_a = node.attributes.get("transA")
        if trans_a is not None and trans_a.value:
            return "Gemm with transA has no int8 kernel in onnxruntime; kept FP32"
    if rule.kind == "shared" and (
        not node.inputs or not _is_float(node.inputs[0]) or constant_array(node.inputs[0]) is not None
    ):
        return "no float activation input"
    return None


def _quantized_reason(rule: Rule) -> str:
    return {
        "compute": "int8 inputs and weights, int32 bias (s_in*s_w), int32 accumulation",
        "elementwise": "int8 operands and output (QLinear elementwise)",
        "own": "int8 input and output, each with its calibrated scale",
        "shared": "int8 pass-through: input and output share one scale, so the int8 op is exact",
    }[rule.kind]
