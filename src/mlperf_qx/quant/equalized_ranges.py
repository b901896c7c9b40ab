"""The equalized model's minmax ranges, taken in the FP32 pass that observes smoothquant's channels:
``--equalize smoothquant`` with ``--method minmax`` runs the model over the calibration set once,
not twice (issue 21: the second pass was 14 s of all-mpnet-base-v2's run).

Why the FP32 model's pass gives the equalized model's ranges: smoothquant's factors are powers of
two (``equalization.py``), so the equalized model computes x/s and W*s exactly, and x/s * W*s has
exactly the products of x * W. Tensor by tensor (``apply_equalization`` adds or changes these):

- a smoothed input (the explicit inverse Mul's output ``<x>_smoothed``, or ``<x>`` itself where
  the inverse is folded into its LayerNormalization) is x_j * (1/s_j) per channel, 0 on the
  split-off channels. Scaling by a power of two is exact (and rounding is monotone where it would
  underflow), so its max |.| over the set is exactly max_j amax_j / s_j over the kept channels:
  from the per-channel maxima the pass takes anyway, bit for bit what a pass over it would reduce;
- a split layer's output with its FP32 side path added back (``<out>_with_outliers``) is the FP32
  layer's ``<out>`` up to the order of the sum (the outlier channels' products are added last), so
  is every tensor after it: their ranges are the FP32 ones, within float rounding (~1e-7 relative);
- the int8 part of a split layer (``<out>``, without its outlier channels) and the side path's own
  tensors exist only in the equalized model: when the plan observes one of them (it does not: the
  side path and its Add stay FP32), or a tensor the pass did not reduce, calibration runs its own
  pass as before;
- every other tensor is computed from the same values by the same operators: the same bits.

Only the maximum follows this way: a histogram of x/s (percentile, entropy, mse) is not the
histogram of x, so those methods keep calibration's own pass over the equalized model; so does
``--equalize cle`` (its factors are per output channel of a Conv, which the pass does not keep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from .annotate import plan_quantization
from .calibrate import float32_tensors, observe_reduced, reject_non_finite, relu_outputs
from .equalization import EqualizationRecord, SmoothGroup, inverse_factors, outlier_add_name, smoothed_name
from .infinite_masks import nodes_reading_infinite_masks
from .islands import island_fp32_reasons
from .observers import MinMaxObserver
from .options import QuantizeOptions
from .reduce_in_graph import add_reductions, plan_reductions
from .runtime_check import expose_tensors
from .shared_scale import shared_inputs
from .spec import Method


def tensors_to_range(model: ir.Model, options: QuantizeOptions) -> list[str]:
    """The tensors whose ranges the observing pass takes for calibration (none: calibration runs its
    own pass): what the plan of the model as it is, before equalization, observes. Equalization
    does not change which ops are quantized, only what some of them read (``EqualizedRanges``).
    Taken even when a ``--cache`` exists: the reductions keep onnxruntime from fusing across the
    tensors they read, which can move the observed channels by a rounding, and the record (so the
    cache's key) must not depend on whether the cache was there."""
    if options.method is not Method.MINMAX or "smoothquant" not in options.equalize or "cle" in options.equalize:
        return []
    kept = {**nodes_reading_infinite_masks(model), **island_fp32_reasons(model.graph)}
    plan = plan_quantization(model, options.exclude, kept)
    return sorted({*plan.observed_tensors(), *shared_inputs(model)})


class PassRanges:
    """Calibration's minmax statistics of some tensors taken in another pass over the same samples
    (one sample a run): the same in-graph reductions, the same observers, and the same refusal of
    a NaN or infinite value as ``calibrate.observe``'s reduced pass."""

    def __init__(self, model: ir.Model, tensors: list[str]):
        float32 = float32_tensors(model, tensors)
        self.tensors = list(tensors)
        self.reductions = plan_reductions([t for t in tensors if t in float32], relu_outputs(model),
                                          [t for t in tensors if t not in float32])
        self.fetched = self.reductions.names + self.reductions.read_out
        self.read_at = {t: len(self.reductions.names) + k for k, t in enumerate(self.reductions.read_out)}
        self.observers = {t: MinMaxObserver() for t in tensors}

    def add_to(self, graph: onnx.GraphProto) -> None:
        add_reductions(graph, self.reductions)
        expose_tensors(graph, self.reductions.read_out)

    def add(self, arrays: list[np.ndarray], sample_id: str) -> None:
        """One sample's fetched statistics (``fetched``, in order)."""
        maxima = observe_reduced(self.tensors, self.observers, self.reductions, self.read_at, arrays)
        reject_non_finite(self.tensors, maxima, [sample_id])


@dataclass
class EqualizedRanges:
    """Observers of the equalized model's tensors, from the FP32 model's pass (see the module)."""

    observers: dict[str, MinMaxObserver]  # by the FP32 model's tensor names
    smoothed: dict[str, MinMaxObserver]  # the smoothed inputs, by the equalized model's names
    renamed: dict[str, str]  # equalized name -> the FP32 tensor it equals up to rounding
    changed: set[str]  # tensors whose values no FP32 tensor has
    references: dict[str, np.ndarray] = field(default_factory=dict)  # the equalized model's outputs
    batch: int = 1  # the observing pass runs one sample at a time

    def observers_for(self, tensors: list[str]) -> dict[str, MinMaxObserver] | None:
        """An observer per tensor of the equalized model, or None when one of them is not known
        from the pass (calibration then runs its own)."""
        found = {}
        for tensor in tensors:
            observer = None if tensor in self.changed else self.smoothed.get(tensor)
            if observer is None and tensor not in self.changed:
                observer = self.observers.get(self.renamed.get(tensor, tensor))
            if observer is None:
                return None
            found[tensor] = observer
        return found


def equalized_ranges(model: ir.Model, record: EqualizationRecord, observers: dict[str, MinMaxObserver],
                     channel_maxima: dict[str, np.ndarray]) -> EqualizedRanges:
    """The ranges of ``model`` (equalized by ``record``) from the FP32 model's ``observers`` and each
    group input's per-channel max |x| (``channel_maxima``)."""
    smoothed, renamed, changed = {}, {}, set()
    nodes = {node.name: node for node in model.graph}
    for group in record.smoothquant:
        name = smoothed_name(group) if group.inverse == "mul" else group.input
        smoothed[name] = _smoothed_observer(group, channel_maxima[group.input], observers.get(group.input))
        for consumer in group.consumers if group.split else ():
            add = nodes[outlier_add_name(consumer)]  # (the int8 part's output, the side product)
            renamed[add.outputs[0].name] = add.inputs[0].name
            changed.update(v.name for v in (add.inputs[0], add.inputs[1], add.inputs[1].producer().inputs[0]))
    changed.update(t for t in smoothed if smoothed[t] is None)
    if record.cle:  # not derived from this pass: every tensor left to calibration's own
        changed.update(v.name for node in model.graph for v in node.outputs)
    return EqualizedRanges(observers, {t: o for t, o in smoothed.items() if o is not None}, renamed, changed)


def _smoothed_observer(group: SmoothGroup, amax: np.ndarray, original: MinMaxObserver | None) -> MinMaxObserver | None:
    """max |x_j * (1/s_j)| over the set: the float32 product of each channel's maximum, as a pass over
    the smoothed tensor reduces it; the count is the input's (None: the input's was not taken)."""
    if original is None:
        return None
    observer = MinMaxObserver()
    observer.amax = float(np.max(amax.astype(np.float32) * inverse_factors(group))) if amax.size else 0.0
    observer.count = original.count
    return observer
