"""Tests of the small canonicalization passes; each asserts numerics with onnxruntime."""

import numpy as np
from onnx import helper, numpy_helper

from helpers import apply_pass, assert_same_numerics, make_model, op_types, rng_array, tensor
from mlperf_qx.ir.passes.eliminate_dead_code import EliminateDeadCode
from mlperf_qx.ir.passes.infer_shapes import InferShapes
from mlperf_qx.ir.passes.lift_constants import LiftConstantsToInitializers
from mlperf_qx.ir.passes.remove_identity_dropout import RemoveIdentityAndDropout
from mlperf_qx.ir.passes.stable_names import StableNames
from mlperf_qx.ir.passes.strip_debug_metadata import StripDebugMetadata
from mlperf_qx.ir.passes.topological_sort import TopologicalSort


def test_lift_constants_makes_initializers():
    bias = rng_array((3,), 1)
    model = make_model(
        [helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(bias)),
         helper.make_node("Constant", [], ["k"], value_float=2.0),
         helper.make_node("Add", ["x", "b"], ["t"]), helper.make_node("Mul", ["t", "k"], ["y"])],
        [tensor("x", [2, 3])], [tensor("y", [2, 3])])
    result, after = apply_pass(LiftConstantsToInitializers(), model)
    assert result.modified
    assert op_types(after) == ["Add", "Mul"]
    assert {t.name for t in after.graph.initializer} == {"b", "k"}
    assert_same_numerics(model, after, {"x": rng_array((2, 3), 2)})


def test_identity_and_inference_dropout_are_removed_and_output_name_kept():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Dropout", ["r"], ["d"]),
         helper.make_node("Identity", ["d"], ["y"])],
        [tensor("x", [4])], [tensor("y", [4])])
    result, after = apply_pass(RemoveIdentityAndDropout(), model)
    assert result.modified
    assert op_types(after) == ["Relu"]
    assert after.graph.output[0].name == "y"
    assert_same_numerics(model, after, {"x": rng_array((4,), 2)})


def test_identity_from_input_to_output_stays():
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], [tensor("x", [4])], [tensor("y", [4])])
    result, after = apply_pass(RemoveIdentityAndDropout(), model)
    assert not result.modified
    assert op_types(after) == ["Identity"]


def test_training_dropout_with_used_mask_stays():
    from onnx import TensorProto

    model = make_model(
        [helper.make_node("Dropout", ["x"], ["y", "mask"])],
        [tensor("x", [4])], [tensor("y", [4]), tensor("mask", [4], TensorProto.BOOL)])
    result, _ = apply_pass(RemoveIdentityAndDropout(), model)
    assert not result.modified


def test_dead_code_and_unused_initializers_are_removed():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["unused"]),
         helper.make_node("Abs", ["unused"], ["unused2"])],
        [tensor("x", [4])], [tensor("y", [4])], [("stale", np.ones(3, np.float32))])
    result, after = apply_pass(EliminateDeadCode(), model)
    assert result.modified
    assert op_types(after) == ["Relu"]
    assert not after.graph.initializer
    assert_same_numerics(model, after, {"x": rng_array((4,), 2)})


def test_topological_sort_orders_producers_first():
    from onnx import ModelProto

    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"])],
        [tensor("x", [4])], [tensor("y", [4])])
    shuffled = ModelProto()
    shuffled.CopyFrom(model)
    nodes = list(shuffled.graph.node)[::-1]
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(nodes)
    import onnx_ir as ir

    ir_model = ir.serde.deserialize_model(shuffled)
    result = TopologicalSort()(ir_model)
    assert result.modified
    assert [n.op_type for n in result.model.graph] == ["Relu", "Neg"]
    assert not TopologicalSort()(result.model).modified


def test_infer_shapes_annotates_intermediates():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"])],
        [tensor("x", [2, 5])], [tensor("y", [2, 5])])
    result, after = apply_pass(InferShapes(), model)
    assert result.modified
    info = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in after.graph.value_info}
    assert info["a"] == [2, 5]
    assert_same_numerics(model, after, {"x": rng_array((2, 5), 2)})


def test_stable_names_fill_empty_and_duplicate_names_deterministically():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name=""), helper.make_node("Neg", ["a"], ["y"], name="")]
    model = make_model(nodes, [tensor("x", [4])], [tensor("y", [4])])
    _, first = apply_pass(StableNames(), model)
    _, second = apply_pass(StableNames(), model)
    names = [n.name for n in first.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert first.SerializeToString() == second.SerializeToString()
    assert_same_numerics(model, first, {"x": rng_array((4,), 2)})


def test_strip_debug_metadata_removes_stack_traces_keeps_qx_keys():
    node = helper.make_node("Relu", ["x"], ["y"], doc_string="File /home/me/model.py, line 3")
    model = make_model([node], [tensor("x", [4])], [tensor("y", [4])])
    entry = model.graph.node[0].metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.stack_trace", "File /home/me/model.py"
    keep = model.graph.node[0].metadata_props.add()
    keep.key, keep.value = "qx.reason", "kept"
    result, after = apply_pass(StripDebugMetadata(), model)
    assert result.modified
    props = {p.key for p in after.graph.node[0].metadata_props}
    assert props == {"qx.reason"}
    assert not after.graph.node[0].doc_string
