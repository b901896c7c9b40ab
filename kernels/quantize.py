"""QuantizeLinear / DequantizeLinear with ONNX semantics, symmetric int8 (zero point 0).

q = saturate(round_half_to_even(x / scale)), with x / scale computed in float32 as onnxruntime
does; saturation to [-128, 127], or [-127, 127] when ``narrow`` (weights, so that the grid is
symmetric). Bias: int32 with scale s_input * s_weight.
"""

from __future__ import annotations

import numba
import numpy as np

OFFSET = 128  # int8 q as the unsigned code q + 128 (zero point 128) of an unsigned int8 MatMul


@numba.njit(parallel=True, cache=True)
def _quantize(x: np.ndarray, scale: np.float32, low: np.float32, high: np.float32, out: np.ndarray) -> None:
    for i in numba.prange(x.size):
        v = np.rint(x[i] / scale)
        if v < low:
            v = low
        elif v > high:
            v = high
        out[i] = np.int8(v)


@numba.njit(parallel=True, cache=True)
def _dequantize(q: np.ndarray, scale: np.float32, out: np.ndarray) -> None:
    for i in numba.prange(q.size):
        out[i] = np.float32(q[i]) * scale


def _bounds(narrow: bool) -> tuple[np.float32, np.float32]:
    return np.float32(-127.0 if narrow else -128.0), np.float32(127.0)


def quantize_int8(x: np.ndarray, scale: float, narrow: bool = False) -> np.ndarray:
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.size, dtype=np.int8)
    low, high = _bounds(narrow)
    _quantize(flat, np.float32(scale), low, high, out)
    return out.reshape(np.shape(x))


def quantize_int8_reference(x: np.ndarray, scale: float, narrow: bool = False) -> np.ndarray:
    low, high = _bounds(narrow)
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    return np.clip(np.rint(scaled), low, high).astype(np.int8)


def fake_quantize_int8(x: np.ndarray, scale: float, narrow: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """``dequantize_int8(quantize_int8(x, scale, narrow), scale)`` value for value (an int8 is exact
    in float32), in numpy float32 without the int8 array between. For hot loops over small arrays
    (smoothquant's scorer calls it hundreds of times), where numpy's vector loop beats starting the
    parallel kernel's threads several times over, more so on a loaded machine. ``out``: a float32
    array of x's shape to write into (``x`` itself: in place), else a new one."""
    low, high = _bounds(narrow)
    scale = np.float32(scale)
    values = np.divide(x, scale, dtype=np.float32, out=out)
    np.rint(values, out=values)
    np.clip(values, low, high, out=values)
    values *= scale
    return values


@numba.njit(cache=True, nogil=True)
def _scaled_offset_codes(x, factors, scale, low, high, out):
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = np.rint((x[i, j] * factors[j]) / scale)
            if v < low:
                v = low
            elif v > high:
                v = high
            out[i, j] = np.uint8(v + OFFSET)


def scaled_offset_codes(x: np.ndarray, factors: np.ndarray, scale: float, narrow: bool = False) -> np.ndarray:
    """``quantize_int8(x * factors, scale, narrow) + OFFSET`` as uint8 (``x`` float32 R x C,
    ``factors`` float32 per column), value for value in one pass: smoothquant's scorer feeds them
    to an unsigned int8 MatMul (zero point 128), whose int32 sums are exact where float32's are
    not. Serial and without the GIL: the scorer runs groups on several threads."""
    rows = np.ascontiguousarray(x, np.float32)
    out = np.empty(rows.shape, np.uint8)
    low, high = _bounds(narrow)
    _scaled_offset_codes(rows, np.ascontiguousarray(factors, np.float32), np.float32(scale), low, high, out)
    return out


def scaled_offset_codes_reference(x: np.ndarray, factors: np.ndarray, scale: float, narrow: bool = False) -> np.ndarray:
    scaled = np.asarray(x, np.float32) * np.asarray(factors, np.float32)
    return (quantize_int8_reference(scaled, scale, narrow).astype(np.int16) + OFFSET).astype(np.uint8)


def dequantize_int8(q: np.ndarray, scale: float) -> np.ndarray:
    flat = np.ascontiguousarray(q, dtype=np.int8).reshape(-1)
    out = np.empty(flat.size, dtype=np.float32)
    _dequantize(flat, np.float32(scale), out)
    return out.reshape(np.shape(q))


def dequantize_int8_reference(q: np.ndarray, scale: float) -> np.ndarray:
    return np.asarray(q, dtype=np.int8).astype(np.float32) * np.float32(scale)


def quantize_bias_int32(bias: np.ndarray, input_scale: float, weight_scale: float) -> tuple[np.ndarray, np.float32]:
    """Bias as int32 at scale s_input * s_weight (computed in float32, as the runtime will)."""
    scale = np.float32(input_scale) * np.float32(weight_scale)
    if scale == 0:
        scale = np.float32(np.finfo(np.float32).tiny)
    info = np.iinfo(np.int32)
    q = np.clip(np.rint(np.asarray(bias, np.float64) / np.float64(scale)), info.min, info.max)
    return q.astype(np.int32), scale
