"""Cross-layer equalization factors (Nagel et al., Data-Free Quantization, 2019) for
Conv -> Relu -> Conv chains: s_j = sqrt(r1_j / r2_j), with r1_j the range of the first Conv's
output channel j (weights and bias) and r2_j the range of the second Conv's input channel j, so
that both weight tensors end up with equal per-channel ranges and per-tensor scales lose less.
Needs no data; factors are powers of two (see ``equalization.py``)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..ir.graph_edit import constant_array
from .equalization import ClePair, balancing_exponents


def cle_pairs(model: ir.Model, skip: set[str]) -> list[ClePair]:
    pairs = []
    for relu in model.graph:
        if relu.op_type != "Relu" or relu.name in skip:
            continue
        first = relu.inputs[0].producer()
        uses = list(relu.outputs[0].uses())
        if first is None or first.op_type != "Conv" or len(uses) != 1 or len(list(first.outputs[0].uses())) != 1:
            continue
        second = uses[0].node
        if second.op_type != "Conv" or uses[0].idx != 0 or first.name in skip or second.name in skip:
            continue
        if relu.outputs[0].is_graph_output() or first.outputs[0].is_graph_output():
            continue
        group = second.attributes.get("group")
        w1, w2 = constant_array(first.inputs[1]), constant_array(second.inputs[1])
        bias = constant_array(first.inputs[2]) if len(first.inputs) > 2 and first.inputs[2] is not None else None
        if w1 is None or w2 is None or (group is not None and group.value != 1) or w2.shape[1] != w1.shape[0]:
            continue
        if len(first.inputs) > 2 and first.inputs[2] is not None and bias is None:
            continue
        r1 = np.abs(w1.reshape(w1.shape[0], -1)).max(axis=1).astype(np.float64)
        if bias is not None:
            r1 = np.maximum(r1, np.abs(bias).astype(np.float64))
        r2 = np.abs(np.moveaxis(w2, 1, 0).reshape(w2.shape[1], -1)).max(axis=1)
        exponents = balancing_exponents(r1, r2, 0.5)
        if exponents.any():
            pairs.append(ClePair(first.name, second.name, tuple(int(e) for e in exponents)))
    return pairs
