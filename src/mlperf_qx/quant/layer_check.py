"""quantize holds itself to verify's layer tolerance before it writes.

The rule (README, "What quantize promises"): every candidate ``qx quantize`` writes passes ``qx
verify-equivalence --mode intensional`` against the FP32 file it was given, or quantize names,
before writing, the layer, the tolerance it breaks and the remedy. Per-layer numerics are measured
exactly as verify measures them - verify's own teacher-forced ``layer_numerics`` code, imported,
not copied - on the candidate quantize is about to write. A layer outside the tolerance is then
remedied, cheapest first:

1. a clipped threshold (entropy, percentile, mse) on the layer's quantized operands or output is
   widened to the observed range (the clip that minimised the histogram's error broke the layer);
2. else the layer is kept FP32, with the measured figures as the reason; an FP32 layer that fails
   only reads the error of int8 producers, which are kept FP32 instead.

and the candidate is rewritten and measured again, until every layer holds or nothing is left to
change (then the failing layers are named in a warning with the tolerance and the remedy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
import onnx_ir as ir

from ..calibration.cache import TensorRange
from ..layer_tolerance import (CHOICE_COSINE_MARGIN, CHOICE_SQNR_MARGIN_DB, MIN_LAYER_COSINE, MIN_LAYER_SQNR_DB,
                               within)
from .annotate import QuantPlan
from .scales import scale_from_amax
from .weights_apart import OpenedOnce

MAX_ROUNDS = 6


@dataclass
class LayerFailure:
    tensor: str  # the layer's output, as verify names it
    op_type: str
    sqnr_db: float
    cosine: float

    def describe(self) -> str:
        return f"'{self.tensor}' ({self.op_type}) {self.sqnr_db:.1f} dB, cosine {self.cosine:.4f}"


@dataclass
class ToleranceState:
    """What the rounds changed: thresholds widened, nodes kept FP32 (node -> reason), and the log."""

    kept: dict[str, str]
    widened: set[str] = field(default_factory=set)
    remedies: list[str] = field(default_factory=list)
    failing: list[LayerFailure] = field(default_factory=list)
    layers_measured: int = 0
    rounds: int = 0


TOLERANCE = f"verify's layer tolerance (SQNR >= {MIN_LAYER_SQNR_DB:g} dB and cosine >= {MIN_LAYER_COSINE:g})"


def failing_layers(reference: onnx.ModelProto, candidate: onnx.ModelProto, feeds: list[dict],
                   record=None, opened: OpenedOnce | None = None) -> tuple[list[LayerFailure], int]:
    """The layers of ``candidate`` outside verify's tolerance (with quantize's choice margin), each on
    the reference's inputs, as verify's ``layer_numerics`` measures them; and how many were compared.
    ``reference``: the model that was quantized (equalized, when ``record`` is its equalization);
    ``opened``: the same, made apart once for every round (``weights_apart.OpenedOnce``)."""
    from ..verify.layer_numerics import _layer_errors
    from ..verify.equalization_check import split_layer_partials
    from ..verify.graph_match import compute_view, match_graphs

    match = match_graphs(compute_view(reference), compute_view(candidate))
    if not match.pairs or not feeds:
        return [], 0
    layers, _ = _layer_errors(reference, candidate, match, feeds, split_layer_partials(reference, record),
                              end_to_end=False, opened=opened)
    failing = [LayerFailure(layer.tensor, layer.op_type, layer.sqnr_db, layer.cosine) for layer in layers
               if not within(layer.sqnr_db, layer.cosine, margin=True)]
    return failing, len(layers)


def remedy(failures: list[LayerFailure], model: ir.Model, plan: QuantPlan, ranges: dict[str, TensorRange],
           observed_max: dict[str, float], state: ToleranceState) -> bool:
    """Change thresholds or precision for each failing layer (see the module's docstring); returns
    whether anything changed."""
    producers = {v.name: node for node in model.graph for v in node.outputs}
    quantized = {d.name for d in plan.decisions if d.quantized}
    changed = False
    for failure in failures:
        node = producers.get(failure.tensor)
        if node is None:
            continue
        if node.name in quantized:
            changed |= _widen(node, failure, plan, ranges, observed_max, state) or _keep(node.name, failure, state)
            continue
        for value in node.inputs:  # an FP32 layer fails by reading an int8 producer's output
            producer = producers.get(value.name) if value is not None else None
            if producer is not None and producer.name in quantized:
                changed |= _keep(producer.name, failure, state, reader=node.name)
    return changed


def _widen(node: ir.Node, failure: LayerFailure, plan: QuantPlan, ranges: dict[str, TensorRange],
           observed_max: dict[str, float], state: ToleranceState) -> bool:
    """Clipped thresholds of the node's operand and output groups back to the observed range."""
    tensors = [v.name for v in (*node.inputs, *node.outputs) if v is not None and v.name in plan.groups]
    members = {m for t in tensors for m in plan.group_stats.get(plan.group_of(t), {plan.group_of(t)})}
    changed = False
    for member in sorted(members - state.widened):
        old, seen = ranges.get(member), observed_max.get(member)
        if old is None or seen is None or seen <= old.amax:
            continue
        why = (f"observed range: the clipped threshold {old.amax:.4g} put '{failure.tensor}' at {failure.sqnr_db:.1f} dB, "
               f"outside {TOLERANCE}")
        ranges[member] = TensorRange(float(seen), float(scale_from_amax(seen)), old.count, why)
        state.widened.add(member)
        state.remedies.append(f"threshold of '{member}' widened {old.amax:.4g} -> {seen:.4g} ({failure.describe()})")
        changed = True
    return changed


def _keep(node: str, failure: LayerFailure, state: ToleranceState, reader: str | None = None) -> bool:
    if node in state.kept:
        return False
    where = f"its int8 output puts '{failure.tensor}'" if reader else f"int8, '{failure.tensor}' is"
    state.kept[node] = (f"kept FP32 to meet {TOLERANCE}: {where} at {failure.sqnr_db:.1f} dB, cosine "
                        f"{failure.cosine:.4f} on the reference's inputs")
    state.remedies.append(f"'{node}' kept FP32 ({failure.describe()})")
    return True


def unmet_warning(state: ToleranceState) -> str | None:
    """The warning for layers still outside the tolerance: the layer, the tolerance, the remedy."""
    if not state.failing:
        return None
    worst = ", ".join(f.describe() for f in sorted(state.failing, key=lambda f: f.sqnr_db)[:3])
    outside = [f for f in state.failing if not within(f.sqnr_db, f.cosine)]
    verdict = ("verify-equivalence --mode intensional will fail layer_numerics" if outside else
               f"within {CHOICE_SQNR_MARGIN_DB:g} dB / {CHOICE_COSINE_MARGIN:g} of it, so verify may fail "
               "layer_numerics on other samples")
    return (f"{len(state.failing)} layer(s) outside {TOLERANCE} on the reference's inputs after {state.rounds} "
            f"round(s) of remedies; {verdict}: {worst}. Remedy: --exclude the producer(s) of the layer(s) named, "
            "or --method minmax")
