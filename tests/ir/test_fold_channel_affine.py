import numpy as np
from onnx import helper

from helpers import apply_pass, assert_same_numerics, make_model, op_types, rng_array, tensor
from mlperf_qx.ir.passes.fold_channel_affine import FoldChannelAffine
from mlperf_qx.ir.passes.infer_shapes import InferShapes


def _shaped(model):
    return apply_pass(InferShapes(), model)[1]


def test_tf2onnx_batchnorm_after_depthwise_conv_folds_into_it():
    """tf2onnx writes BatchNorm after a depthwise conv as Mul + Add of per-channel constants."""
    inits = [("w", rng_array((4, 1, 3, 3), 1)), ("b", rng_array((4,), 2)),
             ("scale", rng_array((1, 4, 1, 1), 3)), ("shift", rng_array((4, 1, 1), 4))]
    model = _shaped(make_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=4, pads=[1, 1, 1, 1]),
         helper.make_node("Mul", ["c", "scale"], ["m"]), helper.make_node("Add", ["shift", "m"], ["y"])],
        [tensor("x", [2, 4, 6, 6])], [tensor("y", [2, 4, 6, 6])], inits))
    result, after = apply_pass(FoldChannelAffine(), model)
    assert result.modified and op_types(after) == ["Conv"]
    assert after.graph.output[0].name == "y"
    assert_same_numerics(model, after, {"x": rng_array((2, 4, 6, 6), 5)})


def test_scalar_mul_after_matmul_scales_its_weight_columns():
    model = _shaped(make_model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Mul", ["h", "s"], ["y"])],
        [tensor("x", [2, 5, 8])], [tensor("y", [2, 5, 6])], [("w", rng_array((8, 6), 1)), ("s", rng_array((6,), 2))]))
    result, after = apply_pass(FoldChannelAffine(), model)
    assert result.modified and op_types(after) == ["MatMul"]
    assert_same_numerics(model, after, {"x": rng_array((2, 5, 8), 3)})


def test_left_alone_when_not_per_channel_or_read_twice():
    spatial = _shaped(make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "s"], ["y"])],
        [tensor("x", [1, 2, 5, 5])], [tensor("y", [1, 3, 3, 3])],
        [("w", rng_array((3, 2, 3, 3), 1)), ("s", rng_array((1, 1, 3, 3), 2))]))
    assert not apply_pass(FoldChannelAffine(), spatial)[0].modified
    shared = _shaped(make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "s"], ["y"]),
         helper.make_node("Relu", ["c"], ["z"])],
        [tensor("x", [1, 2, 5, 5])], [tensor("y", [1, 3, 3, 3]), tensor("z", [1, 3, 3, 3])],
        [("w", rng_array((3, 2, 3, 3), 1)), ("s", np.full((3, 1, 1), 2.0, np.float32))]))
    assert not apply_pass(FoldChannelAffine(), shared)[0].modified
    biased_matmul = _shaped(make_model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        [tensor("x", [2, 8])], [tensor("y", [2, 6])], [("w", rng_array((8, 6), 1)), ("b", rng_array((6,), 2))]))
    assert not apply_pass(FoldChannelAffine(), biased_matmul)[0].modified  # stays the Linear's int32-bias unit
