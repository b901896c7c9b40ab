"""The layer check's and the held-out check's sessions take the weights by reference
(quant.weights_apart): the same answers as the whole model, for less."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.quant.runtime_check import with_outputs
from mlperf_qx.quant.weights_apart import open_apart, weights_apart
from mlperf_qx.quant.weights_by_reference import LOCATION
from mlperf_qx.runtime import open_session


def _model() -> onnx.ModelProto:
    """MatMul by a large weight, a small bias, a large int64 index table (Gather), a weight no node
    reads, and a weight read only inside an If branch."""
    rng = np.random.default_rng(5)
    then_branch = helper.make_graph([helper.make_node("MatMul", ["y", "w_branch"], ["z_then"])], "then", [],
                                    [helper.make_tensor_value_info("z_then", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Identity", ["y"], ["z_else"])], "else", [],
                                    [helper.make_tensor_value_info("z_else", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
             helper.make_node("Gather", ["y", "indices"], ["g"], axis=1),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["positive"]),
             helper.make_node("Squeeze", ["positive"], ["flag"]),
             helper.make_node("If", ["flag"], ["z"], then_branch=then_branch, else_branch=else_branch)]
    initializers = {"w": rng.standard_normal((64, 32)).astype(np.float32),  # 8 KiB: by reference
                    "b": rng.standard_normal(32).astype(np.float32),  # 128 B: inline
                    "indices": rng.integers(0, 32, 256).astype(np.int64),  # 2 KiB int64: by reference too
                    "unread": rng.standard_normal((64, 32)).astype(np.float32),  # nothing reads it: left out
                    "w_branch": rng.standard_normal((32, 32)).astype(np.float32),  # read in a subgraph only
                    "zero": np.zeros((), np.float32)}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("g", "z")],
        [numpy_helper.from_array(array, name) for name, array in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_weights_apart_answers_as_the_whole_model_and_leave_it_unchanged():
    model = _model()
    before = model.SerializeToString()
    skeleton, weights = weights_apart(model)
    assert model.SerializeToString() == before
    assert sorted(weights) == ["indices", "w", "w_branch"]
    stored = {t.name: t for t in skeleton.graph.initializer}
    initializers = {t.name: t for t in model.graph.initializer}
    assert [t.name for t in skeleton.graph.initializer] == [t.name for t in model.graph.initializer
                                                            if t.name != "unread"]
    assert all(stored[name].data_location == TensorProto.EXTERNAL and not stored[name].raw_data
               and stored[name].external_data[0].value == LOCATION for name in weights)
    for t in skeleton.graph.initializer:
        kept = weights[t.name] if t.name in weights else numpy_helper.to_array(stored[t.name])
        np.testing.assert_array_equal(kept, numpy_helper.to_array(initializers[t.name]))
    names = ["g", "z", "m"]  # an intermediate exposed too, as the layer check does
    for x in (np.full((3, 64), 0.5, np.float32), np.full((3, 64), -0.5, np.float32)):  # both If branches
        apart = open_apart(with_outputs(skeleton, names), weights).run(names, {"x": x})
        whole = open_session(with_outputs(model, names)).run(names, {"x": x})
        for a, b in zip(apart, whole):
            np.testing.assert_array_equal(a, b)


def test_shape_inference_reads_the_skeleton_as_the_whole_model():
    """verify's layer check declares exposed outputs with the types shape inference gives: the same
    with the weights apart."""
    model = _model()
    skeleton, _ = weights_apart(model)
    whole = onnx.shape_inference.infer_shapes(model).graph.value_info
    assert list(onnx.shape_inference.infer_shapes(skeleton).graph.value_info) == list(whole) and len(whole) >= 5


def _qdq_pair() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """A float MatMul -> Relu -> MatMul and its int8 QDQ twin (activations and weights quantized)."""
    rng = np.random.default_rng(7)
    w1, w2 = rng.standard_normal((64, 48)).astype(np.float32), rng.standard_normal((48, 16)).astype(np.float32)
    x_info = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])]
    y_info = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])]
    reference = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "ref", x_info, y_info,
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]),
        opset_imports=[helper.make_opsetid("", 18)])
    scales = {"x": 0.03, "r": 0.1, "w1": float(np.abs(w1).max() / 127), "w2": float(np.abs(w2).max() / 127)}
    nodes, initializers = [], []
    for name, weight in (("w1", w1), ("w2", w2)):
        q = np.clip(np.rint(weight / np.float32(scales[name])), -127, 127).astype(np.int8)
        initializers.append(numpy_helper.from_array(q, f"{name}_q"))
    for name, scale in scales.items():  # each DQ its own scale and zero point, as qx writes them
        initializers += [numpy_helper.from_array(np.float32(scale), f"{name}_scale"),
                         numpy_helper.from_array(np.int8(0), f"{name}_zero")]
        operands = [f"{name}_scale", f"{name}_zero"]
        if name.startswith("w"):
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", *operands], [f"{name}_dq"]))
        else:
            nodes += [helper.make_node("QuantizeLinear", [name, *operands], [f"{name}_q"]),
                      helper.make_node("DequantizeLinear", [f"{name}_q", *operands], [f"{name}_dq"])]
    nodes = [*nodes[:2], helper.make_node("MatMul", ["x_dq", "w1_dq"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             *nodes[2:], helper.make_node("MatMul", ["r_dq", "w2_dq"], ["y"])]
    candidate = helper.make_model(helper.make_graph(nodes, "int8", x_info, y_info, initializers),
                                  opset_imports=[helper.make_opsetid("", 18)])
    # value types declared, as in the canonicalized reference quantize and verify compare with
    return onnx.shape_inference.infer_shapes(reference), candidate


def test_quantize_layer_check_measures_what_verify_measures_without_the_end_to_end_run():
    """quantize reads only the local (teacher-forced) errors: without the end-to-end session they
    are the very figures verify computes with it."""
    from mlperf_qx.verify.graph_match import compute_view, match_graphs
    from mlperf_qx.verify.layer_numerics import _layer_errors

    reference, candidate = _qdq_pair()
    match = match_graphs(compute_view(reference), compute_view(candidate))
    assert match.equal, match.detail
    rng = np.random.default_rng(8)
    feeds = [{"x": rng.standard_normal((2, 64)).astype(np.float32)} for _ in range(3)]
    local, end_to_end = _layer_errors(reference, candidate, match, feeds)
    local_only, nothing = _layer_errors(reference, candidate, match, feeds, end_to_end=False)
    assert [vars(layer) for layer in local_only] == [vars(layer) for layer in local] and nothing == []
    assert [layer.tensor for layer in local] == ["h", "r", "y"] and len(end_to_end) == 3
    assert local[-1].sqnr_db > end_to_end[-1].sqnr_db  # forced: the last layer's own error, not the drift


def _sums_as_written_before(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The per-layer sums as layer_numerics computed them for every layer (the reference formula)."""
    from mlperf_qx.quant.annotate import MASK_MAGNITUDE

    keep = (np.abs(a) < MASK_MAGNITUDE) & np.isfinite(b)
    a, b = a[keep].astype(np.float64), b[keep].astype(np.float64)
    sums = np.zeros(6)
    sums += [np.sum(a * a), np.sum((a - b) ** 2), np.sum(a * b), np.sum(b * b), 0.0, a.size]
    sums[4] = max(sums[4], float(np.max(np.abs(a - b))) if a.size else 0.0)
    return sums


def test_a_layer_equal_to_the_reference_bit_for_bit_sums_as_any_other():
    """A layer the candidate computes exactly as the reference (an FP32 layer on the reference's
    inputs: 60 % of MiniLM's compared values) is summed once, not four times, to the same bits."""
    from mlperf_qx.verify.graph_match import compute_view, match_graphs
    from mlperf_qx.verify.layer_numerics import _LayerStats

    reference, candidate = _qdq_pair()
    match = match_graphs(compute_view(reference), compute_view(candidate))
    rng = np.random.default_rng(9)
    a = {name: rng.standard_normal((2, 5, 48)).astype(np.float32) for name in ("h", "r", "y")}
    a["y"][0, 1] = -3.4e38  # an attention mask's value: not compared
    a["r"][0, 0, :4] = 0.0
    b = {"h": a["h"] + np.float32(0.01) * rng.standard_normal((2, 5, 48)).astype(np.float32),
         "r": a["r"].copy(), "y": a["y"].copy()}
    b["r"][0, 0, :4] = -0.0  # equal values, other bits: summed the general way
    stats = _LayerStats(match.pairs)
    for _ in range(2):  # summed over samples
        stats.add(a, ["h", "r", "y"], b, ["h", "r", "y"], compute_view(candidate))
    for index, name in enumerate(["h", "r", "y"]):
        expected = _sums_as_written_before(a[name], b[name])
        expected[[0, 1, 2, 3, 5]] *= 2
        assert stats.sums[index].tobytes() == expected.tobytes(), name


def test_the_reference_opened_once_answers_as_opened_for_each_check(tmp_path):
    """quantize makes the FP32 model apart once for the writing phase (weights_apart.OpenedOnce):
    the layer check's figures and the plain session's answers are those of the model made apart
    for each check; and the candidate measured is written as serialized, the bytes ir.save writes."""
    import onnx_ir as ir

    from mlperf_qx.onnx_io import save_model
    from mlperf_qx.quant.weights_apart import OpenedOnce
    from mlperf_qx.verify.graph_match import compute_view, match_graphs
    from mlperf_qx.verify.layer_numerics import _layer_errors

    reference, candidate = _qdq_pair()
    opened = OpenedOnce(reference)
    match = match_graphs(compute_view(reference), compute_view(candidate))
    feeds = [{"x": np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)}]
    each, _ = _layer_errors(reference, candidate, match, feeds, end_to_end=False)
    once, _ = _layer_errors(reference, candidate, match, feeds, end_to_end=False, opened=opened)
    assert [vars(layer) for layer in once] == [vars(layer) for layer in each] and len(once) == 3
    plain = opened.plain_session().run(["y"], feeds[0])[0]
    assert plain.tobytes() == open_session(reference).run(["y"], feeds[0])[0].tobytes()
    model = ir.serde.deserialize_model(candidate)
    save_model(model, tmp_path / "as_serialized.onnx", proto=ir.serde.serialize_model(model))
    save_model(model, tmp_path / "by_ir.onnx")
    assert (tmp_path / "as_serialized.onnx").read_bytes() == (tmp_path / "by_ir.onnx").read_bytes()
