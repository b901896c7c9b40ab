"""A weight with its rows rescaled (W * s, s per row), fake-quantized symmetric int8 per tensor.

smoothquant's scorer quantizes each weight of a group once per trial factor: in numpy that is
seven passes over the weight through as many temporaries (scale, |.|, max, divide, round, clip,
multiply); here it is two passes (the maximum, then the quantized values) and no temporary.
Value for value ``fake_quantize_int8(W * s[:, None], scale_from_amax(max|W * s[:, None]|), narrow)``
(the numpy reference below): the same float32 operations in the same order, element by element.
"""

from __future__ import annotations

import numba
import numpy as np

from .quantize import fake_quantize_int8

QMAX = 127.0  # the grid's largest level (quant/scales.QMAX; kernels may not import the quantizer)


@numba.njit(cache=True, nogil=True)
def _scaled_absmax(w, factors):
    largest = np.float32(0.0)
    for i in range(w.shape[0]):
        f = factors[i]
        for j in range(w.shape[1]):
            v = abs(w[i, j] * f)
            if v > largest:
                largest = v
    return largest


@numba.njit(cache=True, nogil=True)
def _scaled_fake_quantize(w, factors, scale, low, high, out):
    for i in range(w.shape[0]):
        f = factors[i]
        for j in range(w.shape[1]):
            v = np.rint((w[i, j] * f) / scale)
            if v < low:
                v = low
            elif v > high:
                v = high
            out[i, j] = v * scale


def _scale(amax: np.float32) -> np.float32:
    return np.float32(float(amax) / QMAX) if amax > 0 else np.float32(1.0)


def fake_quantize_scaled(weight: np.ndarray, factors: np.ndarray, narrow: bool = True) -> np.ndarray:
    """``weight`` (float32, C x N), ``factors`` (float32, C): W * s fake-quantized per tensor."""
    w = np.ascontiguousarray(weight, np.float32)
    f = np.ascontiguousarray(factors, np.float32)
    scale = _scale(_scaled_absmax(w, f))
    out = np.empty_like(w)
    _scaled_fake_quantize(w, f, scale, np.float32(-127.0 if narrow else -128.0), np.float32(127.0), out)
    return out


def fake_quantize_scaled_reference(weight: np.ndarray, factors: np.ndarray, narrow: bool = True) -> np.ndarray:
    scaled = np.asarray(weight, np.float32) * np.asarray(factors, np.float32)[:, None]
    return fake_quantize_int8(scaled, _scale(np.abs(scaled).max()), narrow=narrow)
