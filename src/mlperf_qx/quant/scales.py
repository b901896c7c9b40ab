"""Ranges to scales: symmetric int8, scale = amax / 127, zero point 0."""

from __future__ import annotations

import numpy as np

from ..kernels.absmax import absmax

QMAX = 127.0


def scale_from_amax(amax: float) -> np.float32:
    # An all-zero tensor still needs a valid (positive) scale; every value quantizes to 0 anyway.
    return np.float32(amax / QMAX) if amax > 0 else np.float32(1.0)


def weight_scale(weight: np.ndarray) -> np.float32:
    return scale_from_amax(absmax(weight))
