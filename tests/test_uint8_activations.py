"""QOperator activations as uint8 at zero point 128: value for value the int8 grid at zero point 0,
accepted by the audit as that grid and nothing else, and the session precision rule per CPU."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.quant.lower_qoperator import LowerToQOperator
from mlperf_qx.runtime import int8_precision, open_session
from mlperf_qx.verify.audit import _check_qdq, _check_weights
from mlperf_qx.verify.graph_match import compute_view, match_graphs


def _quantize_model(dtype: int, zero_point: int) -> bytes:
    zp = numpy_helper.from_array(np.array(zero_point, helper.tensor_dtype_to_np_dtype(dtype)), "zp")
    scale = helper.make_tensor_value_info("s", TensorProto.FLOAT, [])
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None]), scale],
        [helper.make_tensor_value_info("q", dtype, [None]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [zp])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(x=hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(-400, 400, width=32)),
       scale=st.floats(0.0009765625, 2.0, width=32), halves=st.booleans())
def test_uint8_at_128_holds_exactly_the_int8_grid(x, scale, halves):
    """onnxruntime's own QuantizeLinear/DequantizeLinear: u = q + 128 for every input (round half
    to even and saturation included), and both dequantize to the same floats."""
    if halves:  # exact .5 steps, where rounding half to even decides
        x = (np.round(x) + np.float32(0.5)) * np.float32(scale)
    feeds = {"x": x, "s": np.array(scale, np.float32)}
    q, y_int8 = open_session(_quantize_model(TensorProto.INT8, 0)).run(None, feeds)
    u, y_uint8 = open_session(_quantize_model(TensorProto.UINT8, 128)).run(None, feeds)
    assert q.dtype == np.int8 and u.dtype == np.uint8
    np.testing.assert_array_equal(u.astype(np.int16), q.astype(np.int16) + 128)
    np.testing.assert_array_equal(y_uint8, y_int8)


def _conv_relu_model(quantized: bool = True) -> onnx.ModelProto:
    """x -> Conv (int8 weight, int32 bias) -> Relu -> Clip(0, 6) -> Add(constant) -> y, in the QDQ
    form qx writes (every activation behind Q/DQ), or as its FP32 reference (the same weights,
    dequantized): small enough to lower and audit in a test."""
    rng = np.random.default_rng(0)
    weight, constant = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), rng.integers(-127, 128, (1, 4, 1, 1)).astype(np.int8)
    weight[0, 0, 0, 0] = constant[0, 0, 0, 0] = 127  # scales are max|w|/127, as qx writes them
    constants = {"w": (weight, 0.02),
                 "b": (rng.integers(-500, 500, 4).astype(np.int32), 0.05 * 0.02),
                 "c": (constant, 0.03)}
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "low"), numpy_helper.from_array(np.array(6.0, np.float32), "high")]
    nodes = []
    for name, (q, scale) in constants.items():
        if quantized:
            inits += [numpy_helper.from_array(q, f"{name}_q"), numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
                      numpy_helper.from_array(np.zeros((), q.dtype), f"{name}_z")]
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name]))
        else:
            inits.append(numpy_helper.from_array((q.astype(np.float32) * np.float32(scale)).astype(np.float32), name))
    value = "x"
    for k, (op, scale) in enumerate([("Conv", 0.05), ("Relu", 0.08), ("Clip", 0.08), ("Add", 0.08), (None, 0.1)]):
        if quantized:
            inits += [numpy_helper.from_array(np.array(scale, np.float32), f"s{k}"),
                      numpy_helper.from_array(np.array(0, np.int8), f"z{k}")]
            nodes += [helper.make_node("QuantizeLinear", [value, f"s{k}", f"z{k}"], [f"q{k}"]),
                      helper.make_node("DequantizeLinear", [f"q{k}", f"s{k}", f"z{k}"], [f"d{k}"])]
            value = f"d{k}"
        if op is not None:
            inputs = {"Conv": [value, "w", "b"], "Relu": [value], "Clip": [value, "low", "high"], "Add": [value, "c"]}[op]
            nodes.append(helper.make_node(op, inputs, [f"{op.lower()}{k}"], name=f"{op}{k}",
                                          **({"pads": [1, 1, 1, 1]} if op == "Conv" else {})))
            value = f"{op.lower()}{k}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info(value, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def lowered():
    qdq = _conv_relu_model()
    model = ir.serde.deserialize_model(qdq)
    LowerToQOperator()(model)
    return qdq, ir.serde.serialize_model(model)


def test_lowering_stores_activations_as_uint8_on_the_same_grid(lowered):
    qdq, qop = lowered
    ops = [n.op_type for n in qop.graph.node]
    assert "QLinearConv" in ops and "Max" in ops and "Relu" not in ops and "Clip" in ops and "QLinearAdd" in ops
    inits = {t.name: numpy_helper.to_array(t) for t in qop.graph.initializer}
    conv = next(n for n in qop.graph.node if n.op_type == "QLinearConv")
    assert inits[conv.input[2]].dtype == np.uint8 and inits[conv.input[2]] == 128  # activation
    assert inits[conv.input[5]].dtype == np.int8 and inits[conv.input[5]] == 0  # weight stays int8
    clip = next(n for n in qop.graph.node if n.op_type == "Clip")
    assert inits[clip.input[1]] == 128 and inits[clip.input[2]] == 128 + round(6.0 / 0.08)
    add = next(n for n in qop.graph.node if n.op_type == "QLinearAdd")
    assert inits[add.input[3]].dtype == np.uint8 and inits[add.input[5]] == 128  # QLinearAdd: one type for all
    x = {"x": np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32) * 3}
    expected = open_session(qdq).run(None, x)[0]
    got = open_session(qop).run(None, x)[0]
    assert np.abs(got - expected).max() <= 0.1 + 1e-6  # within one step, as the int8 lowering
    check = _check_qdq(qop)
    assert check.passed, check
    reference = compute_view(_conv_relu_model(quantized=False))
    match = match_graphs(reference, compute_view(qop))
    assert match.equal, match.detail  # Max(u, 128) is the reference's Relu
    weights = _check_weights(reference, compute_view(qop), match)
    # The conv weight and bias, the uint8 constant of the Add; Clip's bounds checked on the grid.
    assert weights.checked == 3 and weights.max_error_in_half_steps <= 1.0, weights
    assert not weights.replaced_float and not weights.scale_mismatches and weights.pruned == 0, weights


@pytest.mark.parametrize("zero_point", [127, 0, 255])
def test_audit_refuses_other_uint8_zero_points(lowered, zero_point):
    _, qop = lowered
    tampered = onnx.ModelProto()
    tampered.CopyFrom(qop)
    conv = next(n for n in tampered.graph.node if n.op_type == "QLinearConv")
    zp = next(t for t in tampered.graph.initializer if t.name == conv.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(zero_point, np.uint8), zp.name))
    check = _check_qdq(tampered)
    assert not check.passed and "is not 128" in check.detail


def test_precision_option_only_without_vnni(lowered):
    _, qop = lowered
    for flags, machine, expected in [({"avx2"}, "x86_64", True), ({"avx2", "avx512_vnni"}, "x86_64", False),
                                     ({"avx2", "avx_vnni"}, "x86_64", False), ({"amx_int8", "avx512_vnni"}, "x86_64", False),
                                     (set(), "aarch64", False)]:
        decision = int8_precision(qop, frozenset(flags), machine)
        assert decision.exact_option is expected, (flags, decision)
    # Legacy QOperator files with int8 activations run S8S8 kernels: never the option.
    legacy = onnx.ModelProto()
    legacy.CopyFrom(qop)
    conv = next(n for n in legacy.graph.node if n.op_type == "QLinearConv")
    zp = next(t for t in legacy.graph.initializer if t.name == conv.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.int8), zp.name))
    assert not int8_precision(legacy, frozenset({"avx2"}), "x86_64").exact_option
    fp32 = _conv_relu_model(quantized=False)
    assert int8_precision(fp32, frozenset({"avx2"}), "x86_64").reason == "no int8 operators in the model"
