"""Write the candidate and hold each of its layers to verify's layer tolerance (the rounds of
``quant.layer_check``): measured, remedied, written again until it holds or nothing is left to
change."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

import onnx
import onnx_ir as ir

from ..ir.passes.eliminate_dead_code import EliminateDeadCode
from ..onnx_io import private_model
from .annotate import QuantPlan
from .calibrated_ranges import Calibration
from .insert_qdq import QdqCounts, insert_qdq
from .layer_check import MAX_ROUNDS, ToleranceState, failing_layers, remedy
from .options import QuantizeOptions
from .replan import replan
from .scales import group_scales
from .spec import Format
from .weights_apart import OpenedOnce


def write_within_tolerance(fp32: onnx.ModelProto, model: ir.Model, plan: QuantPlan, calibration: Calibration,
                           options: QuantizeOptions, kept: dict[str, str], record, feeds: list,
                           label: Callable[[ir.Model, QuantPlan], None] = lambda candidate, plan: None,
                           reference: OpenedOnce | None = None, first_copy: Future | None = None):
    """The candidate, written from the FP32 model, with each layer held to verify's layer tolerance
    (see ``quant.layer_check``): measured, remedied, written again until it holds. ``label``
    records what the file says of itself (provenance) on each candidate before it is serialized,
    so that the proto measured is the one written: returned beside the candidate (None without
    feeds: nothing was measured, nothing serialized). ``reference``: ``fp32`` opened once for
    every round (``weights_apart.OpenedOnce``); ``first_copy``: ``private_model(fp32)`` made ahead,
    for the first round."""
    state = ToleranceState(dict(kept))
    observed = {name: o.amax for name, o in calibration.observers.items()}
    while True:
        # insert_qdq edits it: the FP32 proto stays as it is
        candidate = first_copy.result() if first_copy is not None and not state.rounds else private_model(fp32)
        counts, tensor_scales = _rewrite(candidate, plan, group_scales(plan, calibration.ranges), options.fmt)
        label(candidate, plan)
        if not feeds:
            return candidate, None, plan, counts, tensor_scales, state
        proto = ir.serde.serialize_model(candidate)
        state.failing, state.layers_measured = failing_layers(fp32, proto, feeds, record, reference)
        if (not state.failing or state.rounds >= MAX_ROUNDS
                or not remedy(state.failing, model, plan, calibration.ranges, observed, state)):
            return candidate, proto, plan, counts, tensor_scales, state
        state.rounds += 1
        plan = replan(model, options.exclude, state.kept, calibration.ranges, plan)


def _rewrite(model: ir.Model, plan: QuantPlan, scales: dict, fmt: Format) -> tuple[QdqCounts, dict[str, float]]:
    counts, tensor_scales = insert_qdq(model, plan, scales)
    EliminateDeadCode()(model)
    if fmt is Format.QOPERATOR:
        from .lower_qoperator import LowerToQOperator

        lowering = LowerToQOperator()
        lowering(model)
        for decision in plan.decisions:  # ops the model's opset keeps in float: say so, do not count them int8
            if decision.name in lowering.kept_float:
                decision.quantized, decision.reason = False, lowering.kept_float[decision.name]
    return counts, tensor_scales
