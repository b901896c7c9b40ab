"""RemoveNoOpReshapes: a Reshape to its input's own static shape goes, every other stays."""

import numpy as np
import pytest
from onnx import helper

from helpers import apply_pass, assert_same_numerics, make_model, op_types, rng_array, tensor
from mlperf_qx.ir.passes.infer_shapes import InferShapes
from mlperf_qx.ir.passes.remove_noop_reshapes import RemoveNoOpReshapes


def _remove(model):
    """The pass as the pipeline runs it: after shape inference."""
    return apply_pass(RemoveNoOpReshapes(), apply_pass(InferShapes(), model)[1])


def _conv_behind_reshape(target: list[int], source_shape=(1, 4, 1, 1)):
    weight = rng_array((3, 4, 1, 1), 1)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["s"]),
             helper.make_node("Conv", ["s", "w"], ["y"])]
    return make_model(nodes, [tensor("x", list(source_shape))], [tensor("y", [1, 3, 1, 1])],
                      [("shape", np.array(target, np.int64)), ("w", weight)])


@pytest.mark.parametrize("target", [[1, 4, 1, 1], [1, -1, 1, 1], [0, 4, 0, 0]])
def test_a_reshape_to_the_same_shape_is_removed(target):
    model = _conv_behind_reshape(target)
    result, after = _remove(model)
    assert result.modified
    assert op_types(after) == ["Relu", "Conv"]
    assert_same_numerics(model, after, {"x": rng_array((1, 4, 1, 1), 2)})


def test_a_reshape_that_changes_the_shape_stays():
    model = _conv_behind_reshape([1, 4, 1, 1], source_shape=(1, 4))
    result, after = _remove(model)
    assert not result.modified
    assert "Reshape" in op_types(after)


def test_a_reshape_of_a_dynamic_shape_stays():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["y"])]
    model = make_model(nodes, [tensor("x", ["batch", 4])], [tensor("y", ["batch", 4])],
                       [("shape", np.array([-1, 4], np.int64))])
    result, _ = _remove(model)
    assert not result.modified


def test_a_noop_reshape_at_the_graph_output_keeps_the_output_name():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["y"])]
    model = make_model(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 3])], [("shape", np.array([2, 3], np.int64))])
    result, after = _remove(model)
    assert result.modified and op_types(after) == ["Relu"]
    assert after.graph.output[0].name == "y"
    assert_same_numerics(model, after, {"x": rng_array((2, 3), 2)})
