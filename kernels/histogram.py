"""Streaming histograms of |x| whose range grows as data arrives (no second pass over samples).

Bins are [k*w, (k+1)*w); values at or past the range go to the last bin. When a batch exceeds the
range, the bin width grows by a power of two and neighbouring bins are merged exactly, so no count
is ever interpolated and the result does not depend on how the data was batched beyond that growth.
"""

from __future__ import annotations

import numba
import numpy as np

from ._parallel import chunk_bounds, chunk_count


@numba.njit(parallel=True, cache=True)
def _accumulate(hist: np.ndarray, x: np.ndarray, width: np.float64, chunks: int) -> None:
    bins = hist.size
    bounds = chunk_bounds(x.size, chunks)
    local = np.zeros((chunks, bins), dtype=np.int64)
    inverse = 1.0 / width
    for c in numba.prange(chunks):
        for i in range(bounds[c], bounds[c + 1]):
            k = int(abs(np.float64(x[i])) * inverse)
            if k >= bins:
                k = bins - 1
            local[c, k] += 1
    for c in range(chunks):
        for k in range(bins):
            hist[k] += local[c, k]


@numba.njit(parallel=True, cache=True)
def _histogram_with_max(x: np.ndarray, bins: int, width: np.float64, chunks: int):
    bounds = chunk_bounds(x.size, chunks)
    local = np.zeros((chunks, bins), dtype=np.int64)
    maxima = np.zeros(chunks, dtype=np.float32)
    inverse = 1.0 / width
    for c in numba.prange(chunks):
        m = np.float32(0.0)
        for i in range(bounds[c], bounds[c + 1]):
            v = abs(x[i])
            if v > m:
                m = v
            k = int(np.float64(v) * inverse)
            if k >= bins:
                k = bins - 1
            local[c, k] += 1
        maxima[c] = m
    hist = np.zeros(bins, dtype=np.int64)
    result = np.float32(0.0)
    for c in range(chunks):
        if maxima[c] > result:
            result = maxima[c]
        for k in range(bins):
            hist[k] += local[c, k]
    return hist, result


def histogram_with_max(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float]:
    """One pass: the histogram of |x| at ``width`` (past-range values in the last bin) and max|x|.

    Lets a streaming observer read each tensor once: when the maximum fits the current range the
    histogram is kept; otherwise the range grows and only then is the data binned again."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return np.zeros(bins, dtype=np.int64), 0.0
    hist, amax = _histogram_with_max(flat, bins, np.float64(width), chunk_count(flat.size))
    return hist, float(amax)


def histogram_with_max_reference(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float]:
    hist = np.zeros(bins, dtype=np.int64)
    accumulate_reference(hist, x, width)
    flat = np.abs(np.asarray(x, dtype=np.float32).reshape(-1))
    return hist, float(flat.max()) if flat.size else 0.0


def accumulate(hist: np.ndarray, x: np.ndarray, width: float) -> None:
    """Add |x| to ``hist`` (int64, in place) with bin width ``width``."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size:
        _accumulate(hist, flat, np.float64(width), chunk_count(flat.size))


def accumulate_reference(hist: np.ndarray, x: np.ndarray, width: float) -> None:
    magnitude = np.abs(np.asarray(x, dtype=np.float32).reshape(-1).astype(np.float64))
    index = np.minimum((magnitude * (1.0 / np.float64(width))).astype(np.int64), hist.size - 1)
    hist += np.bincount(index, minlength=hist.size).astype(np.int64)


def merge_bins(hist: np.ndarray, factor: int) -> np.ndarray:
    """The histogram at ``factor`` times the bin width: bins j*factor .. (j+1)*factor-1 summed."""
    bins = hist.size
    merged = np.zeros_like(hist)
    kept = np.add.reduceat(hist, np.arange(0, bins, factor)) if factor < bins else np.array([hist.sum()])
    merged[: kept.size] = kept
    return merged


def growth_factor(width: float, bins: int, needed: float) -> int:
    """Smallest power of two f with bins * width * f > needed."""
    factor = 1
    while bins * width * factor <= needed:
        factor *= 2
    return factor
