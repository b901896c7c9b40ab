import numpy as np
from onnx import TensorProto, helper

from helpers import apply_pass, assert_same_numerics, make_model, op_types, rng_array, tensor
from mlperf_qx.ir.passes.fold_constants import FoldConstants


def test_constant_subgraph_is_folded_and_result_unchanged():
    inits = [("w", rng_array((3, 4), 1)), ("s", np.array([2.0], np.float32))]
    model = make_model(
        [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
         helper.make_node("Mul", ["wt", "s"], ["ws"]),
         helper.make_node("MatMul", ["x", "ws"], ["y"])],
        [tensor("x", [2, 4])], [tensor("y", [2, 3])], inits)
    result, after = apply_pass(FoldConstants(), model)
    assert result.modified
    assert op_types(after) == ["MatMul"]
    assert_same_numerics(model, after, {"x": rng_array((2, 4), 2)})


def test_cast_like_of_constant_folds_to_the_target_dtype():
    inits = [("b", np.arange(3, dtype=np.float64))]
    model = make_model(
        [helper.make_node("CastLike", ["b", "x"], ["bf"]), helper.make_node("Add", ["x", "bf"], ["y"])],
        [tensor("x", [2, 3])], [tensor("y", [2, 3])], inits)
    _, after = apply_pass(FoldConstants(), model)
    assert op_types(after) == ["Add"]
    folded = {t.name: t for t in after.graph.initializer}["bf"]
    assert folded.data_type == TensorProto.FLOAT
    assert_same_numerics(model, after, {"x": rng_array((2, 3), 2)})


def test_shape_of_static_value_folds():
    model = make_model(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
        [tensor("x", [2, 3])], [tensor("y", [2, 3])])
    _, after = apply_pass(FoldConstants(), model)
    assert op_types(after) == ["Reshape"]


def test_large_expansions_are_left_to_the_runtime():
    inits = [("v", np.ones(1, np.float32)), ("shape", np.array([1024, 1024], np.int64))]
    model = make_model(
        [helper.make_node("Expand", ["v", "shape"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])],
        [tensor("x", [1024, 1024])], [tensor("y", [1024, 1024])], inits)
    result, after = apply_pass(FoldConstants(), model)
    assert not result.modified
    assert op_types(after) == ["Expand", "Add"]


def test_node_reading_a_graph_input_is_not_folded():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [2])], [tensor("y", [2])])
    result, _ = apply_pass(FoldConstants(), model)
    assert not result.modified
