from onnx import helper

from helpers import apply_pass, assert_same_numerics, make_model, op_types, rng_array, tensor
from mlperf_qx.ir.passes.cancel_transposes import CancelTransposes


def test_inverse_pair_cancels():
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 3, 1]),
         helper.make_node("Transpose", ["a"], ["b"], perm=[0, 3, 1, 2]),
         helper.make_node("Relu", ["b"], ["y"])],
        [tensor("x", [1, 2, 3, 4])], [tensor("y", [1, 2, 3, 4])])
    result, after = apply_pass(CancelTransposes(), model)
    assert result.modified
    assert op_types(after) == ["Relu"]
    assert_same_numerics(model, after, {"x": rng_array((1, 2, 3, 4))})


def test_non_inverse_pair_merges_into_one():
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 3, 1]),
         helper.make_node("Transpose", ["a"], ["y"], perm=[0, 2, 3, 1])],
        [tensor("x", [1, 2, 3, 4])], [tensor("y", [1, 4, 2, 3])])
    _, after = apply_pass(CancelTransposes(), model)
    assert op_types(after) == ["Transpose"]
    assert_same_numerics(model, after, {"x": rng_array((1, 2, 3, 4))})


def test_inverse_pair_ending_at_graph_output_keeps_output_name():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Transpose", ["r"], ["a"], perm=[1, 0]),
         helper.make_node("Transpose", ["a"], ["y"], perm=[1, 0])],
        [tensor("x", [2, 3])], [tensor("y", [2, 3])])
    _, after = apply_pass(CancelTransposes(), model)
    assert op_types(after) == ["Relu"]
    assert after.graph.output[0].name == "y"
    assert_same_numerics(model, after, {"x": rng_array((2, 3))})


def test_shared_first_transpose_stays_for_its_other_reader():
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0]),
         helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0]),
         helper.make_node("Relu", ["b"], ["y"]), helper.make_node("Neg", ["a"], ["z"])],
        [tensor("x", [2, 3])], [tensor("y", [2, 3]), tensor("z", [3, 2])])
    _, after = apply_pass(CancelTransposes(), model)
    assert op_types(after).count("Transpose") == 1
    assert_same_numerics(model, after, {"x": rng_array((2, 3))})
