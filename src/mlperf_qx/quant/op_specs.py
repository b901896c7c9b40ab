"""Everything qx knows about one operator, in one entry.

One ``OpSpec`` per ONNX op says how it is quantized (which inputs are activations, weights and
bias, and whether its output has a scale of its own or shares its input's), what its QOperator
form is (domain, op type, where each operand and its scale sit), and, for ops kept in FP32, why.
Every consumer reads this table: the annotator (what to quantize), the QDQ inserter (weights and
int32 biases), the QOperator lowering, the intensional audit and graph matcher (how a QOperator
node maps back to the float op and where its weights are), and the runtime (which session options
a model needs). A new op is one entry here; the audit cannot lag behind the lowering.

Scale vocabulary, after torchao's pt2e specs (data, not behaviour):
  ``Calibrated``   the tensor's own observed range defines its scale
  ``SharedScale``  output and input sit on one grid (torchao's SharedQuantizationSpec): the int8
                   op is then exact; ``stats_from`` names the side whose statistics define it
  the bias scale is derived (torchao's DerivedQuantizationSpec): s_input * s_weight, int32
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    COMPUTE = "compute"  # int8 GEMM/conv: int8 operands, int32 bias at s_in*s_w, int32 accumulation
    ELEMENTWISE = "elementwise"  # int8 operands and output, each with its own calibrated scale
    OWN_SCALE = "own"  # int8 input and output with their own scales (pooling, hard activations)
    SHARED = "shared"  # output on the input's grid: an exact int8 pass-through
    FP32 = "fp32"  # kept in float, with a reason


@dataclass(frozen=True)
class Calibrated:
    """The output has its own scale from its calibrated range."""


@dataclass(frozen=True)
class SharedScale:
    """Input(s) and output share one scale, defined by the statistics of ``stats_from``.

    ``stats_from="output"`` for clamping ops (Relu, Clip at 0): the clamped side's range is the
    one worth the 256 levels; the producer is then given the same scale, and clipping before or
    after the clamp is the same."""

    stats_from: str = "input"


@dataclass(frozen=True)
class Operand:
    """Where a float input's int8 value, scale and zero point sit among a QOperator node's inputs."""

    value: int
    scale: int
    zero_point: int


@dataclass(frozen=True)
class QOperatorForm:
    domain: str
    op_type: str
    operands: tuple[Operand, ...]  # in the order of the float op's inputs
    output_scale: int = 6
    output_zero_point: int = 7
    bias: int | None = None  # int32 bias input; its scale is operands[0].scale * operands[1].scale

    def float_positions(self) -> tuple[int, ...]:
        """Positions of the float op's inputs among the QOperator node's inputs (bias last)."""
        positions = tuple(o.value for o in self.operands)
        return positions + ((self.bias,) if self.bias is not None else ())


@dataclass(frozen=True)
class OpSpec:
    op_type: str
    role: Role
    data_inputs: tuple[int, ...] | None = None  # activations to quantize; None: every input
    weight_inputs: tuple[int, ...] = ()  # constant operands quantized as weights (narrow int8)
    bias_input: int | None = None  # constant int32 bias at s_in * s_w
    output: Calibrated | SharedScale = Calibrated()
    qoperator: QOperatorForm | None = None
    fp32_reason: str = ""

    @property
    def quantized(self) -> bool:
        return self.role is not Role.FP32

    @property
    def reason(self) -> str:
        if self.role is Role.FP32:
            return self.fp32_reason
        return {
            Role.COMPUTE: "int8 inputs and weights, int32 bias (s_in*s_w), int32 accumulation",
            Role.ELEMENTWISE: "int8 operands and output (QLinear elementwise)",
            Role.OWN_SCALE: "int8 input and output, each with its calibrated scale",
            Role.SHARED: "int8 pass-through: input and output share one scale, so the int8 op is exact",
        }[self.role]


_X, _W = Operand(0, 1, 2), Operand(3, 4, 5)
_SHARED_IN = SharedScale("input")


def _fp32(op_type: str, reason: str) -> OpSpec:
    return OpSpec(op_type, Role.FP32, fp32_reason=reason)


def _shared(op_type: str, stats_from: str = "input", data_inputs: tuple[int, ...] | None = (0,)) -> OpSpec:
    return OpSpec(op_type, Role.SHARED, data_inputs=data_inputs, output=SharedScale(stats_from))


OPS: dict[str, OpSpec] = {spec.op_type: spec for spec in [
    OpSpec("Conv", Role.COMPUTE, data_inputs=(0,), weight_inputs=(1,), bias_input=2,
           qoperator=QOperatorForm("", "QLinearConv", (_X, _W), bias=8)),
    OpSpec("Gemm", Role.COMPUTE, data_inputs=(0, 1), bias_input=2),
    # No int8 form where it would run: onnxruntime's CPU provider registers no QLinearConvTranspose
    # and leaves DQ -> ConvTranspose -> Q unfused (tests/test_foreign_models.py checks both).
    _fp32("ConvTranspose", "onnxruntime's CPU provider has no int8 ConvTranspose kernel (com.microsoft."
          "QLinearConvTranspose is not registered) and does not fuse DequantizeLinear -> ConvTranspose -> "
          "QuantizeLinear: int8 would add rounding and run in float anyway; kept FP32"),
    # MatMul's bias is the constant Add that follows it (a Linear on a 3-D input); see annotate.
    OpSpec("MatMul", Role.COMPUTE, data_inputs=(0, 1),
           qoperator=QOperatorForm("", "QLinearMatMul", (_X, _W))),
    OpSpec("Add", Role.ELEMENTWISE, qoperator=QOperatorForm("com.microsoft", "QLinearAdd", (_X, _W))),
    OpSpec("Mul", Role.ELEMENTWISE, qoperator=QOperatorForm("com.microsoft", "QLinearMul", (_X, _W))),
    OpSpec("AveragePool", Role.OWN_SCALE, data_inputs=(0,)),
    OpSpec("GlobalAveragePool", Role.OWN_SCALE, data_inputs=(0,)),
    # No int8 kernel in onnxruntime, but their inputs and outputs are ordinary activations: int8
    # tensors around a float op (QDQ), so the int8 producers and consumers stay fused.
    OpSpec("HardSwish", Role.OWN_SCALE, data_inputs=(0,)),
    OpSpec("HardSigmoid", Role.OWN_SCALE, data_inputs=(0,)),
    # onnxruntime fuses DQ -> LeakyRelu -> Q into com.microsoft.QLinearLeakyRelu (a lookup table).
    OpSpec("LeakyRelu", Role.OWN_SCALE, data_inputs=(0,)),
    _shared("Relu", stats_from="output"),
    _shared("Clip", stats_from="output"),  # only with min 0 (ReLU6): see annotate
    _shared("Concat", stats_from="output", data_inputs=None),
    _shared("MaxPool"),
    _shared("GlobalMaxPool"),
    _shared("Reshape"),
    _shared("Flatten"),
    _shared("Transpose"),
    _shared("Squeeze"),
    _shared("Unsqueeze"),
    _fp32("Softmax", "probabilities span orders of magnitude below one int8 step; kept FP32 (MLPerf allows per-op precision)"),
    _fp32("LayerNormalization", "mean/variance need float accumulation and its outputs carry trained outliers; kept FP32"),
    _fp32("Gelu", "nonlinear with no int8 kernel in onnxruntime; kept FP32"),
    _fp32("Erf", "part of GELU; nonlinear with no int8 kernel; kept FP32"),
    _fp32("Sigmoid", "nonlinear; int8 lookup not in the lowest-common-denominator set; kept FP32"),
    _fp32("Tanh", "nonlinear; int8 lookup not in the lowest-common-denominator set; kept FP32"),
    _fp32("Div", "division amplifies quantization error of small denominators; kept FP32"),
    _fp32("Sqrt", "normalization arithmetic; kept FP32"),
    _fp32("Pow", "normalization arithmetic; kept FP32"),
    _fp32("ReduceMean", "reduction; onnxruntime has no int8 kernel for it; kept FP32"),
    _fp32("Sub", "no symmetric int8 kernel in onnxruntime; kept FP32"),
    _fp32("Where", "selects between tensors (attention masks hold -3.4e38); kept FP32"),
    _fp32("InstanceNormalization", "per-sample, per-channel mean and variance need float accumulation, and "
          "onnxruntime has no int8 InstanceNormalization kernel nor a QDQ fusion for it; kept FP32"),
    _fp32("PRelu", "onnxruntime has no int8 PRelu kernel nor a QDQ fusion for it (its QLinearLeakyRelu takes one "
          "scalar slope, PRelu's slope is a tensor); kept FP32"),
]}

# The int32-bias form of MatMul + constant Add in QOperator models: the Add runs on the int32
# accumulator, a DequantizeLinear at s_in*s_w turns it into float, and the usual QuantizeLinear
# requantizes (QLinearMatMul has no bias input, and QGemm takes 2-D inputs only).
INTEGER_MATMUL = ("", "MatMulInteger")

# QOperator op type -> the OpSpec of the float op it implements.
QOPERATOR_FORMS: dict[str, OpSpec] = {s.qoperator.op_type: s for s in OPS.values() if s.qoperator is not None}

# Ops that only occur in quantized models (refused as FP32 input; they also name what runs in int8).
QUANTIZED_OP_TYPES = frozenset(QOPERATOR_FORMS) | {
    "QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "QGemm", "DynamicQuantizeLinear",
    "MatMulIntegerToFloat",
}

# onnxruntime kernels that run in int8 after its graph optimizations (what a QDQ model fuses into).
ORT_INT8_KERNELS = frozenset(QOPERATOR_FORMS) | {
    "QGemm", "QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool", "MatMulIntegerToFloat",
    "ConvInteger", "MatMulInteger", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax", "QLinearReduceMean",
}


def spec_for(op_type: str, domain: str = "") -> OpSpec | None:
    if domain not in ("", "ai.onnx"):
        return None
    return OPS.get(op_type)


def is_int8_passthrough(op_type: str) -> bool:
    """Ops that run directly on int8 data when input and output share a scale (QOperator)."""
    spec = OPS.get(op_type)
    return spec is not None and spec.role is Role.SHARED and op_type not in ("Concat", "GlobalMaxPool")
