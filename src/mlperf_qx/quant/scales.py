"""Ranges to scales: symmetric int8, scale = amax / 127, zero point 0."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..kernels.absmax import absmax

if TYPE_CHECKING:
    from ..calibration.cache import TensorRange
    from .annotate import QuantPlan

QMAX = 127.0


def scale_from_amax(amax: float) -> np.float32:
    # An all-zero tensor still needs a valid (positive) scale; every value quantizes to 0 anyway.
    return np.float32(amax / QMAX) if amax > 0 else np.float32(1.0)


def weight_scale(weight: np.ndarray) -> np.float32:
    return scale_from_amax(absmax(weight))


def group_scales(plan: QuantPlan, ranges: dict[str, TensorRange]) -> dict[str, np.float32]:
    """One scale per group of tensors that share a grid: the widest range among the group's observed tensors."""
    group_amax: dict[str, float] = {}
    for tensor in plan.activation_uses:
        group = plan.group_of(tensor)
        group_amax[group] = max(ranges[t].amax for t in plan.group_stats[group])
    return {group: scale_from_amax(amax) for group, amax in group_amax.items()}
