"""Streaming histograms of |x| whose range grows as data arrives (no second pass over samples).

Bins are [k*w, (k+1)*w); values at or past the range go to the last bin. When a batch exceeds the
range, the bin width grows by a power of two and neighbouring bins are merged exactly, so no count
is ever interpolated and the result does not depend on how the data was batched beyond that growth.
"""

from __future__ import annotations

import numba
import numpy as np

from ._parallel import nan_aware_max, work_items

from .absmax import absmax_reference


_LANES = 4  # independent sub-histograms: runs of equal values (ReLU zeros) no longer serialize on one counter


@numba.njit(inline="always")
def _bin(v, inverse, bins):
    t = np.float64(v) * inverse
    return int(t) if t < bins else bins - 1  # past the range, inf and NaN: last bin


@numba.njit(parallel=True, cache=True)
def binned_with_max(data, starts, stops, owners, widths, bins, segments):
    """Histogram of |x| (segments x bins, int64) and max|x| of each segment of ``data``."""
    items = starts.size
    local = np.zeros((items, _LANES, bins), dtype=np.int32)  # a work item holds at most CHUNK counts
    item_max = np.zeros(items, dtype=np.float32)
    for j in numba.prange(items):
        inverse = 1.0 / widths[owners[j]]
        counts = local[j]
        m0 = np.float32(0.0)
        m1 = np.float32(0.0)
        lo, hi = starts[j], stops[j]
        unrolled = lo + (hi - lo) // _LANES * _LANES
        for i in range(lo, unrolled, _LANES):
            a0, a1, a2, a3 = abs(data[i]), abs(data[i + 1]), abs(data[i + 2]), abs(data[i + 3])
            m0 = nan_aware_max(nan_aware_max(m0, a0), a2)
            m1 = nan_aware_max(nan_aware_max(m1, a1), a3)
            counts[0, _bin(a0, inverse, bins)] += 1
            counts[1, _bin(a1, inverse, bins)] += 1
            counts[2, _bin(a2, inverse, bins)] += 1
            counts[3, _bin(a3, inverse, bins)] += 1
        for i in range(unrolled, hi):
            a0 = abs(data[i])
            m0 = nan_aware_max(m0, a0)
            counts[0, _bin(a0, inverse, bins)] += 1
        item_max[j] = nan_aware_max(m0, m1)
    hist = np.zeros((segments, bins), dtype=np.int64)
    maxima = np.zeros(segments, dtype=np.float32)
    for j in range(items):
        s = owners[j]
        maxima[s] = nan_aware_max(maxima[s], item_max[j])
        for lane in range(_LANES):
            for k in range(bins):
                hist[s, k] += local[j, lane, k]
    return hist, maxima


def _one_segment(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float]:
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return np.zeros(bins, dtype=np.int64), 0.0
    starts, stops, owners = work_items(np.zeros(1, np.int64), np.array([flat.size], np.int64))
    hist, maxima = binned_with_max(flat, starts, stops, owners, np.array([width], np.float64), bins, 1)
    return hist[0], float(maxima[0])


def histogram_with_max(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float]:
    """One pass: the histogram of |x| at ``width`` (past-range values in the last bin) and max|x|.

    Lets a streaming observer read each tensor once: when the maximum fits the current range the
    histogram is kept; otherwise the range grows and only then is the data binned again."""
    return _one_segment(x, bins, width)


def histogram_with_max_reference(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float]:
    hist = np.zeros(bins, dtype=np.int64)
    accumulate_reference(hist, x, width)
    return hist, absmax_reference(x)


def accumulate(hist: np.ndarray, x: np.ndarray, width: float) -> None:
    """Add |x| to ``hist`` (int64, in place) with bin width ``width``."""
    hist += _one_segment(x, hist.size, width)[0]


def accumulate_reference(hist: np.ndarray, x: np.ndarray, width: float) -> None:
    magnitude = np.abs(np.asarray(x, dtype=np.float32).reshape(-1).astype(np.float64))
    scaled = magnitude * (1.0 / np.float64(width))
    inside = scaled < hist.size  # False for inf and NaN too: they count in the last bin
    index = np.where(inside, np.where(inside, scaled, 0).astype(np.int64), hist.size - 1)
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
