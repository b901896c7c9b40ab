"""Evaluate nodes whose inputs are all constant and replace them by initializers.

Also folds ``Shape`` of a value whose shape is fully static, and ``CastLike`` of a constant to a
value whose dtype is known (exporters use it to give biases the input's dtype). Evaluation uses ONNX's reference
implementation of each op, so the folded value is what the op defines. Nodes that would create
a tensor much larger than their inputs (Expand, Tile, ConstantOfShape...) are left to the runtime:
folding them would only inflate the file.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.reference
import onnx_ir as ir

from ..graph_edit import constant_array, new_initializer
from ..pass_base import QxPass

_NEVER_FOLD = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
               "Bernoulli", "Dropout", "QuantizeLinear", "DequantizeLinear"}
_MAX_GROWTH_BYTES = 1 << 20  # folded outputs may exceed their inputs by at most this much


class FoldConstants(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        opset = model.opset_imports.get("", 17)
        modified = False
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_FOLD:
                continue
            if any(v.is_graph_output() for v in node.outputs):
                continue
            if node.op_type == "Shape":
                outputs = _static_shape(node)
            elif node.op_type == "CastLike":
                outputs = _cast_like(node)
            else:
                outputs = _evaluate(node, opset)
            if outputs is None:
                continue
            for value, array in zip(node.outputs, outputs):
                name = value.name
                value.name = None  # the folded initializer takes over the name
                folded = new_initializer(graph, name or f"{node.name}_folded", array)
                value.replace_all_uses_with(folded)
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified)


def _static_shape(node: ir.Node) -> list[np.ndarray] | None:
    source = node.inputs[0]
    if source is None or source.shape is None or not all(isinstance(d, int) for d in source.shape):
        return None
    dims = np.asarray(list(source.shape), dtype=np.int64)
    start = node.attributes.get("start")
    end = node.attributes.get("end")
    start = start.value if start is not None else 0
    end = end.value if end is not None else None
    return [dims[start:end]]


def _cast_like(node: ir.Node) -> list[np.ndarray] | None:
    source = constant_array(node.inputs[0])
    target = node.inputs[1].dtype if node.inputs[1] is not None else None
    if source is None or target is None:
        return None
    return [source.astype(target.numpy())]


def _evaluate(node: ir.Node, opset: int) -> list[np.ndarray] | None:
    if any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values()):
        return None
    inputs = [None if v is None else constant_array(v) for v in node.inputs]
    if not node.inputs or any(a is None for v, a in zip(node.inputs, inputs) if v is not None):
        return None
    arrays = [a for a in inputs if a is not None]
    try:
        outputs = _run_reference(node, arrays, opset)
    except Exception:  # an op the reference cannot run is simply left in the graph
        return None
    input_bytes = max((a.nbytes for a in arrays), default=0)
    if sum(o.nbytes for o in outputs) > input_bytes + _MAX_GROWTH_BYTES:
        return None
    return outputs


def _run_reference(node: ir.Node, arrays: list[np.ndarray], opset: int) -> list[np.ndarray]:
    proto = ir.serde.serialize_node(node)
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
    out_names = [f"out{i}" for i in range(len(node.outputs))]
    del proto.input[:]
    proto.input.extend(names)
    del proto.output[:]
    proto.output.extend(out_names)
    graph = onnx.helper.make_graph(
        [proto],
        "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip([n for n in names if n], arrays)],
        [onnx.helper.make_empty_tensor_value_info(n) for n in out_names],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    evaluator = onnx.reference.ReferenceEvaluator(model)
    feeds = dict(zip([n for n in names if n], arrays))
    return [np.asarray(o) for o in evaluator.run(None, feeds)]
