import numpy as np
import pytest
from onnx import helper

from helpers import apply_pass, assert_same_numerics, make_model, op_types, rng_array, tensor
from mlperf_qx.ir.passes.fold_batchnorm import FoldBatchNorm
from mlperf_qx.ir.passes.infer_shapes import InferShapes


def _bn_params(channels, seed):
    rng = np.random.default_rng(seed)
    return [
        ("gamma", rng.uniform(0.5, 2, channels).astype(np.float32)),
        ("beta", rng.standard_normal(channels).astype(np.float32)),
        ("mean", rng.standard_normal(channels).astype(np.float32)),
        ("var", rng.uniform(0.1, 3, channels).astype(np.float32)),
    ]


def _bn(x, y, eps=1e-3):
    return helper.make_node("BatchNormalization", [x, "gamma", "beta", "mean", "var"], [y], epsilon=eps)


@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_batchnorm_folds_into_conv(with_bias):
    inits = [("w", rng_array((4, 3, 3, 3), 1))] + _bn_params(4, 2)
    conv_inputs = ["x", "w"]
    if with_bias:
        inits.append(("b", rng_array((4,), 3)))
        conv_inputs.append("b")
    model = make_model(
        [helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1]), _bn("c", "y")],
        [tensor("x", [2, 3, 6, 6])], [tensor("y", [2, 4, 6, 6])], inits)
    result, after = apply_pass(FoldBatchNorm(), model)
    assert result.modified
    assert op_types(after) == ["Conv"]
    assert after.graph.output[0].name == "y"
    assert_same_numerics(model, after, {"x": rng_array((2, 3, 6, 6), 4)})


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_batchnorm_folds_with_alpha_beta(trans_b):
    w_shape = (5, 8) if trans_b else (8, 5)
    inits = [("w", rng_array(w_shape, 1)), ("c", rng_array((5,), 2))] + _bn_params(5, 3)
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "c"], ["g"], transB=trans_b, alpha=0.7, beta=1.3), _bn("g", "y")],
        [tensor("x", [3, 8])], [tensor("y", [3, 5])], inits)
    result, after = apply_pass(FoldBatchNorm(), model)
    assert op_types(after) == ["Gemm"]
    assert_same_numerics(model, after, {"x": rng_array((3, 8), 4)})


def test_conv_transpose_batchnorm_folds():
    inits = [("w", rng_array((3, 4, 2, 2), 1))] + _bn_params(4, 2)
    model = make_model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2]), _bn("c", "y")],
        [tensor("x", [1, 3, 4, 4])], [tensor("y", [1, 4, 8, 8])], inits)
    _, after = apply_pass(FoldBatchNorm(), model)
    assert op_types(after) == ["ConvTranspose"]
    assert_same_numerics(model, after, {"x": rng_array((1, 3, 4, 4), 4)})


def test_batchnorm_without_producer_becomes_mul_add():
    model = make_model([_bn("x", "y")], [tensor("x", [2, 4, 3, 3])], [tensor("y", [2, 4, 3, 3])], _bn_params(4, 2))
    _, after = apply_pass(FoldBatchNorm(), model)
    assert op_types(after) == ["Mul", "Add"]
    assert_same_numerics(model, after, {"x": rng_array((2, 4, 3, 3), 4)})


def test_conv_output_used_twice_is_not_folded_but_bn_still_removed():
    inits = [("w", rng_array((4, 3, 1, 1), 1))] + _bn_params(4, 2)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), _bn("c", "b"), helper.make_node("Add", ["b", "c"], ["y"])],
        [tensor("x", [1, 3, 4, 4])], [tensor("y", [1, 4, 4, 4])], inits)
    _, shaped = apply_pass(InferShapes(), model)  # the Mul + Add fallback needs the input rank
    _, after = apply_pass(FoldBatchNorm(), shaped)
    assert "BatchNormalization" not in op_types(after)
    assert op_types(after).count("Conv") == 1
    assert_same_numerics(model, after, {"x": rng_array((1, 3, 4, 4), 4)})


def test_graph_without_batchnorm_is_unmodified():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [2])], [tensor("y", [2])])
    result, _ = apply_pass(FoldBatchNorm(), model)
    assert not result.modified
