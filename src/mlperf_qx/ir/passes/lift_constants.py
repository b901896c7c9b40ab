"""Turn ``Constant`` nodes of the main graph into initializers.

Why: later passes (BatchNorm folding, constant folding, quantization of biases) look for
constant tensors as initializers only.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..graph_edit import new_initializer
from ..pass_base import QxPass

_VALUE_ATTRIBUTES = ("value", "value_float", "value_floats", "value_int", "value_ints")


class LiftConstantsToInitializers(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            array = _constant_array(node)
            if array is None:
                continue
            output = node.outputs[0]
            if output.is_graph_output():
                continue  # a constant graph output stays a node: outputs must be computed values
            name = output.name
            output.name = None  # free the name so the initializer can take it
            lifted = new_initializer(graph, name or "const", array)
            output.replace_all_uses_with(lifted)
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified)


def _constant_array(node: ir.Node) -> np.ndarray | None:
    for key in _VALUE_ATTRIBUTES:
        attr = node.attributes.get(key)
        if attr is None:
            continue
        if key == "value":
            return attr.as_tensor().numpy()
        dtype = np.float32 if key.startswith("value_float") else np.int64
        return np.asarray(attr.value, dtype=dtype)
    return None  # sparse or string constants are left alone
