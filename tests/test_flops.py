"""MatMul/Gemm/Conv work from the declared shapes, from shape inference or a run where they do not say."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.quant import flops
from mlperf_qx.quant.flops import declared_shapes, matmul_flops, shapes_by_run


def _two_matmuls(hidden_declared: bool):
    """x [n, 8] @ w1 [8, 16] -> h [n, 16] @ w2 [16, 4] -> y [n, 4]; h declared or not."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("w1", (8, 16)), ("w2", (16, 4)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    if hidden_declared:
        graph.value_info.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["n", 16]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_declared_shapes_bind_the_feed_s_symbols_and_give_the_run_s_flops():
    model = _two_matmuls(hidden_declared=True)
    feed = {"x": np.zeros((3, 8), np.float32)}
    names = ["h", "x", "y"]
    assert declared_shapes(model.graph, feed, names) == shapes_by_run(model, feed, names) == \
        {"h": (3, 16), "x": (3, 8), "y": (3, 4)}
    assert matmul_flops(model, feed) == {"mm1": 2.0 * 3 * 16 * 8, "mm2": 2.0 * 3 * 4 * 16}


def test_a_shape_the_model_does_not_declare_comes_from_shape_inference_else_from_a_run(monkeypatch):
    model = _two_matmuls(hidden_declared=False)
    feed = {"x": np.zeros((5, 8), np.float32)}
    assert declared_shapes(model.graph, feed, ["h", "x", "y"]) is None  # h undeclared
    with monkeypatch.context() as patched:  # onnx's inference tells h's shape: no session
        patched.setattr(flops, "shapes_by_run", lambda *args: pytest.fail("ran the model"))
        assert matmul_flops(model, feed) == {"mm1": 2.0 * 5 * 16 * 8, "mm2": 2.0 * 5 * 4 * 16}
    # h reshaped by a shape fed at run time: only a run can tell
    model.graph.node[1].input[0] = "r"
    model.graph.node.insert(1, helper.make_node("Reshape", ["h", "s"], ["r"], name="reshape"))
    model.graph.input.append(helper.make_tensor_value_info("s", TensorProto.INT64, [2]))
    feed["s"] = np.array([-1, 16], np.int64)
    assert matmul_flops(model, feed) == {"mm1": 2.0 * 5 * 16 * 8, "mm2": 2.0 * 5 * 4 * 16}
    declared = _two_matmuls(hidden_declared=True)
    declared.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 9  # the feed disagrees with the model
    assert declared_shapes(declared.graph, feed, ["h"]) is None
