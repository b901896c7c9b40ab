"""``--equalize``: choose the factors, rewrite the FP32 model, and prove the rewrite harmless.

The rewritten FP32 model is run against the original on the first calibration samples before
anything is quantized; beyond ``EXACTNESS_RTOL`` (relative to the output's largest value) qx stops,
because a rewrite that changes the FP32 model is not an equalization.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ..calibration.readers import CalibrationSet
from ..errors import QxError
from ..quant.runtime_check import run_with_tensors
from .cle import cle_pairs
from .equalization import EqualizationRecord, apply_equalization
from .smoothquant import GroupChoice, choose, find_candidates, observe_channels

MODES = ("smoothquant", "cle")
CHECK_SAMPLES = 4
EXACTNESS_RTOL = 1e-5


class EqualizationNotExact(QxError):
    exit_code = 1


@dataclass
class EqualizationResult:
    record: EqualizationRecord
    choices: list[GroupChoice] = field(default_factory=list)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0

    def thresholds(self) -> dict[str, tuple[float, str]]:
        """MatMul input tensor -> (threshold, why) where a clip below the maximum measured better."""
        chosen = {}
        for choice in self.choices:
            if choice.clip_amax is None:
                continue
            group = choice.group
            tensor = choice.input if group is None or group.inverse != "mul" else f"{group.input}_smoothed"
            after, before = choice.error_after, choice.error_before
            chosen[tensor] = (choice.clip_amax, f"clipped at {choice.clip:g}x its maximum: measured layer error per "
                                                f"token {after.per_row:.2e} vs {before.per_row:.2e} unscaled, pooled "
                                                f"{after.sqnr_db:.1f} dB / cosine {after.cosine:.4f}")
        return chosen

    def summary(self) -> str:
        parts = []
        if self.record.smoothquant:
            alphas = sorted({g.alpha for g in self.record.smoothquant if g.alpha is not None})
            gain = [c.error_before.per_row / c.error_after.per_row for c in self.choices
                    if c.group is not None and c.error_after.per_row > 0]
            parts.append(f"smoothquant on {len(self.record.smoothquant)} of {len(self.choices)} linear-layer inputs "
                         f"(alpha {', '.join(f'{a:g}' for a in alphas)}; layer error ÷{np.median(gain):.1f} median)"
                         if gain else f"smoothquant on {len(self.record.smoothquant)} inputs")
        clipped = sum(c.clip_amax is not None for c in self.choices)
        if clipped:
            parts.append(f"{clipped} MatMul inputs clipped below their maximum (measured better)")
        outside = [c.input for c in self.choices if not c.error_after.within_tolerance]
        if outside:
            parts.append(f"{len(outside)} outside verify's layer tolerance even so (estimated; e.g. {outside[0]})")
        if self.record.cle:
            parts.append(f"cross-layer equalization on {len(self.record.cle)} Conv pairs")
        parts.append(f"FP32 model unchanged: max abs error {self.max_abs_error:.2e}, max rel {self.max_rel_error:.2e}")
        return "; ".join(parts)


def equalize(model: ir.Model, modes: list[str], calib: CalibrationSet | None, skip: set[str],
             alpha: float | None = None, show_progress: bool = True) -> EqualizationResult:
    """Rewrite ``model`` in place; returns the record (empty when nothing was worth rescaling)."""
    original = ir.serde.serialize_model(model)
    record, choices = EqualizationRecord(), []
    if "cle" in modes:
        record.cle = cle_pairs(model, skip)
    if "smoothquant" in modes and calib is not None:
        candidates = find_candidates(model, skip)
        if candidates:
            stats = observe_channels(model, candidates, calib, show_progress)
            choices = [choose(c, stats[c.input], alpha) for c in candidates]
            record.smoothquant = [c.group for c in choices if c.group is not None]
    result = EqualizationResult(record, choices)
    if not record:
        return result
    apply_equalization(model, record)
    if calib is not None:
        feeds = [calib.sample(i) for i in calib.ids[:CHECK_SAMPLES]]
        result.max_abs_error, result.max_rel_error = fp32_difference(original, ir.serde.serialize_model(model), feeds)
        if result.max_rel_error > EXACTNESS_RTOL:
            raise EqualizationNotExact(
                f"the equalized FP32 model differs from the original by {result.max_rel_error:.2e} (relative, max abs "
                f"{result.max_abs_error:.2e}) on the first calibration samples, above {EXACTNESS_RTOL:g}; not written")
    return result


def fp32_difference(original, rewritten, feeds: list[dict]) -> tuple[float, float]:
    """Largest absolute difference of the two models' outputs over ``feeds``, and that over the
    output's largest magnitude."""
    names = [o.name for o in original.graph.output]
    a, b = run_with_tensors(original, feeds, names), run_with_tensors(rewritten, feeds, names)
    abs_error = rel_error = 0.0
    for name in names:
        if a[name].dtype.kind != "f":
            continue
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        error = float(np.max(np.abs(x - y))) if x.size else 0.0
        abs_error = max(abs_error, error)
        rel_error = max(rel_error, error / max(float(np.max(np.abs(x))), 1e-30) if x.size else 0.0)
    return abs_error, rel_error
