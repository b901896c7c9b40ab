"""Remove exporter debug metadata (stack traces, FX node text, doc strings) from the model.

Why: exporters record source file paths and line numbers, so the same model built from another
folder would give different bytes. Only ``qx.`` keys, which mlperf-qx writes itself, are kept.
"""

from __future__ import annotations

import onnx_ir as ir

from ..pass_base import QxPass

_KEEP_PREFIX = "qx."


class StripDebugMetadata(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            modified |= _strip(node)
            for value in node.outputs:
                modified |= _strip(value)
        for value in (*model.graph.inputs, *model.graph.initializers.values()):
            modified |= _strip(value)
        # Converters describe themselves in doc strings, with object ids that change every run.
        for item in (model, model.graph):
            if item.doc_string:
                item.doc_string = None
                modified = True
        return ir.passes.PassResult(model, modified)


def _strip(item: ir.Node | ir.Value) -> bool:
    doomed = [key for key in item.metadata_props if not key.startswith(_KEEP_PREFIX)]
    for key in doomed:
        del item.metadata_props[key]
    had_doc = bool(item.doc_string)
    if had_doc:
        item.doc_string = None
    return bool(doomed) or had_doc
