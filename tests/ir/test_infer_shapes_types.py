"""InferShapes keeps non-tensor types: a Loop that carries a Sequence (torch's dynamo exporter
writes one for EmbeddingBag) must still load in onnxruntime after inference."""

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper

from mlperf_qx.ir.passes.infer_shapes import InferShapes


def _loop_carrying_a_sequence() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("SequenceInsert", ["seq_in", "x"], ["seq_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_value_info("seq_in", onnx.TypeProto())],  # untyped, as the exporter leaves it
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_value_info("seq_out", onnx.TypeProto())],
    )
    graph = helper.make_graph(
        [helper.make_node("SequenceEmpty", [], ["empty"], dtype=TensorProto.FLOAT),
         helper.make_node("Loop", ["trips", "cond", "empty"], ["rows"], body=body),
         helper.make_node("ConcatFromSequence", ["rows"], ["y"], axis=0, new_axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("trips", TensorProto.INT64, [], [3]), helper.make_tensor("cond", TensorProto.BOOL, [], [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_loop_carried_sequence_keeps_its_sequence_type():
    model = ir.serde.deserialize_model(_loop_carrying_a_sequence())
    result = InferShapes()(model)
    loop = next(n for n in result.model.graph if n.op_type == "Loop")
    assert isinstance(loop.outputs[0].type, ir.SequenceType), loop.outputs[0].type
    proto = ir.serde.serialize_model(result.model).SerializeToString()
    session = ort.InferenceSession(proto, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.array([1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(y, np.tile([1.0, 2.0], (3, 1)))
