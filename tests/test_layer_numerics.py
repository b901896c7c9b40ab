"""layer_numerics runs the next sample while it sums the last (verify/layer_numerics._layer_errors):
a candidate that fails in onnxruntime on a sample still FAILs the check, whichever sample and
thread it fails in, and the figures do not depend on how many samples are in flight."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.verify.graph_match import compute_view, match_graphs
from mlperf_qx.verify.layer_numerics import _layer_errors, layer_numerics_check


def _reshape_relu(rows: int) -> onnx.ModelProto:
    """x[n,3] -> Reshape(rows, 2) -> Relu -> Mul(w) -> y; the batch is dynamic, so a wrong shape
    only fails when a sample runs (the session builds)."""
    inits = [numpy_helper.from_array(np.array([rows, 2], np.int64), "shape"),
             numpy_helper.from_array(np.linspace(-1, 1, 2, dtype=np.float32), "w")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["a"], name="relu"),
             helper.make_node("Mul", ["a", "w"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((2, 3)).astype(np.float32)} for _ in range(count)]


def test_a_candidate_failing_on_a_sample_fails_the_check():
    reference, candidate = _reshape_relu(3), _reshape_relu(4)  # 2x3 values do not fill 4x2
    match = match_graphs(compute_view(reference), compute_view(candidate))
    assert match.pairs
    check, layers = layer_numerics_check(reference, candidate, match, _feeds(3), {})
    assert not check.passed and check.measured == "the candidate does not run in onnxruntime", check
    assert layers == []


def test_the_figures_of_each_sample_add_up_in_order():
    """Three samples measured together (the next one running while the last is summed) give each
    layer the largest error of the three measured one by one; a layer the candidate computes
    exactly (the Reshape) stays at infinite SQNR."""
    reference = _reshape_relu(3)
    candidate = _reshape_relu(3)
    candidate.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([-1.0, 0.999], np.float32), "w"))
    match = match_graphs(compute_view(reference), compute_view(candidate))
    feeds = _feeds(3)
    together, _ = _layer_errors(reference, candidate, match, feeds, {}, end_to_end=False)
    alone = [_layer_errors(reference, candidate, match, [feed], {}, end_to_end=False)[0] for feed in feeds]
    assert [layer.tensor for layer in together] == ["r", "a", "y"]
    for index, layer in enumerate(together):
        assert layer.max_abs_error == max(run[index].max_abs_error for run in alone)
    assert together[0].sqnr_db == float("inf") and together[2].sqnr_db < 80
