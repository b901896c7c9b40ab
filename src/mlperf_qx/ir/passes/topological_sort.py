"""Order nodes so every value is produced before it is read (stable for an already sorted graph)."""

from __future__ import annotations

import onnx_ir as ir

from ..pass_base import QxPass


class TopologicalSort(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = [id(node) for node in model.graph]
        model.graph.sort()
        return ir.passes.PassResult(model, before != [id(node) for node in model.graph])
