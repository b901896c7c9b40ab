"""Shared-scale ops whose inputs' ranges differ too much for one grid.

A Concat (any op whose inputs and output share one int8 scale) takes the scale of its widest
input. When another input's range is a small fraction of it, that input keeps only a few levels of
its own: a YOLOv8 head concatenates boxes (up to ~320) with sigmoid class scores (0..1), one step
is 2.5 and every score becomes 0 - no detection survives, while the pooled output error looks
fine. Such an op is kept FP32 (each input then keeps its own grid where its producer and readers
are int8), with the levels each input would have kept as the reason.
"""

from __future__ import annotations

import onnx_ir as ir

from .annotate import QuantPlan
from .op_specs import SharedScale, spec_for

# An input that would keep fewer int8 levels than this of its own range on the shared grid
# (2^4: 4 bits of the 7 a symmetric int8 gives) makes the op stay FP32.
MIN_LEVELS = 16


def shared_inputs(model: ir.Model) -> list[str]:
    """The float inputs of multi-input shared-scale ops: observed too, to judge the shared grid."""
    names = set()
    for node in model.graph:
        if _multi_input_shared(node):
            names.update(v.name for v in node.inputs if v is not None and v.const_value is None)
    return sorted(names)


def starved_shared_ops(model: ir.Model, plan: QuantPlan, amax: dict[str, float]) -> dict[str, str]:
    """Quantized multi-input shared-scale ops where some input keeps fewer than MIN_LEVELS levels
    of its own range on the shared grid: node name -> why it stays FP32."""
    quantized = {d.name for d in plan.decisions if d.quantized}
    kept = {}
    for node in model.graph:
        if node.name not in quantized or not _multi_input_shared(node):
            continue
        own = {v.name: amax[v.name] for v in node.inputs if v is not None and v.name in amax}
        if len(own) < 2:
            continue
        group = plan.group_of(node.outputs[0].name)
        shared = max([amax.get(t, 0.0) for t in plan.group_stats.get(group, {group})] + list(own.values()))
        narrow, narrow_amax = min(own.items(), key=lambda item: item[1])
        levels = 127.0 * narrow_amax / shared if shared > 0 else 127.0
        if levels < MIN_LEVELS and narrow_amax > 0:
            wide = max(own, key=own.get)
            kept[node.name] = (f"one int8 scale for inputs whose ranges differ {shared / narrow_amax:.0f}x: '{narrow}' "
                               f"(|x| <= {narrow_amax:.3g}) would keep {levels:.1f} of 127 levels on the grid of "
                               f"'{wide}' (|x| <= {own[wide]:.3g}), one step {shared / 127:.3g}; kept FP32 so each "
                               "input keeps its own scale")
    return kept


def _multi_input_shared(node: ir.Node) -> bool:
    spec = spec_for(node.op_type, node.domain)
    floats = [v for v in node.inputs if v is not None and v.const_value is None]
    return spec is not None and isinstance(spec.output, SharedScale) and len(floats) >= 2
