"""A weight with its rows rescaled (W * s, s per row), quantized symmetric int8 per tensor, as the
offset codes an unsigned int8 MatMul reads (q + 128, zero point 128).

smoothquant's scorer quantizes each weight of a group once per trial factor: in numpy that is
seven passes over the weight through as many temporaries (scale, |.|, max, divide, round, clip,
offset); here it is two passes (the maximum, then the codes) and no temporary. Value for value
``quantize_int8(W * s[:, None], scale_from_amax(max|W * s[:, None]|), narrow) + 128`` (the numpy
reference below): the same float32 operations in the same order, element by element.
"""

from __future__ import annotations

import numba
import numpy as np

from .quantize import OFFSET, quantize_int8_reference

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
def _scaled_codes(w, factors, scale, low, high, out):
    for i in range(w.shape[0]):
        f = factors[i]
        for j in range(w.shape[1]):
            v = np.rint((w[i, j] * f) / scale)
            if v < low:
                v = low
            elif v > high:
                v = high
            out[i, j] = np.uint8(v + OFFSET)


def _scale(amax: np.float32) -> np.float32:
    return np.float32(float(amax) / QMAX) if amax > 0 else np.float32(1.0)


def row_peaks(weight: np.ndarray) -> np.ndarray:
    """max_j |W_ij| per row (NaN ignored, as ``_scaled_absmax`` ignores it), for ``quantize_scaled``."""
    return np.fmax.reduce(np.abs(np.asarray(weight, np.float32)), axis=1)


def quantize_scaled(weight: np.ndarray, factors: np.ndarray, narrow: bool = True, out: np.ndarray | None = None,
                    peaks: np.ndarray | None = None) -> tuple[np.ndarray, np.float32]:
    """``weight`` (float32, C x N), ``factors`` (float32, C): (the codes of W * s quantized per
    tensor, uint8 C x N, and its scale). ``out``: where to write the codes (a column slice of a
    wider matrix is fine: a group's weights side by side for one MatMul). ``peaks``: the weight's
    ``row_peaks``, to take max|W * s| from them in O(C) instead of a pass over W: the same value,
    as rounding is monotone and sign-symmetric, round(|s_i| * max_j |W_ij|) = max_j |round(W_ij * s_i)|."""
    w = np.ascontiguousarray(weight, np.float32)
    f = np.ascontiguousarray(factors, np.float32)
    if peaks is None:
        scale = _scale(_scaled_absmax(w, f))
    else:
        largest = np.fmax.reduce(np.abs(peaks * f)) if f.size else np.float32(0.0)
        scale = _scale(largest if largest > 0 else np.float32(0.0))  # NaN (every entry NaN) as the kernel: 0
    out = np.empty(w.shape, np.uint8) if out is None else out
    _scaled_codes(w, f, scale, np.float32(-127.0 if narrow else -128.0), np.float32(127.0), out)
    return out, scale


def quantize_scaled_reference(weight: np.ndarray, factors: np.ndarray, narrow: bool = True
                              ) -> tuple[np.ndarray, np.float32]:
    scaled = np.asarray(weight, np.float32) * np.asarray(factors, np.float32)[:, None]
    scale = _scale(np.abs(scaled).max())
    return (quantize_int8_reference(scaled, scale, narrow).astype(np.int16) + OFFSET).astype(np.uint8), scale
