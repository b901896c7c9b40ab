"""Streaming histograms of |x| whose range grows as data arrives (no second pass over samples).

Bins are [k*w, (k+1)*w); values at or past the range go to the last bin. When a batch exceeds the
range, the bin width grows by a power of two and neighbouring bins are merged exactly, so no count
is ever interpolated and the result does not depend on how the data was batched beyond that growth.
"""

from __future__ import annotations

import numba
import numpy as np

from ._parallel import CHUNK, nan_aware_max, work_items

from .absmax import absmax_reference


_LANES = 4  # independent sub-histograms: runs of equal values (ReLU zeros) no longer serialize on one counter


@numba.njit(inline="always")
def _bin(v, inverse, bins):
    t = np.float64(v) * inverse
    return int(t) if t < bins else bins - 1  # past the range, inf and NaN: last bin


@numba.njit(inline="always")
def _bin_item(data, lo, hi, inverse, bins, counts):
    """Adds |data[lo:hi]| to ``counts`` (lanes x bins) at bin width 1 / ``inverse``; returns max|x|."""
    m0 = np.float32(0.0)
    m1 = np.float32(0.0)
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
    return nan_aware_max(m0, m1)


@numba.njit(parallel=True, cache=True)
def binned_with_max(data, starts, stops, owners, widths, bins, segments):
    """Histogram of |x| (segments x bins, int64) and max|x| of each segment of ``data``."""
    items = starts.size
    local = np.zeros((items, _LANES, bins), dtype=np.int32)  # a work item holds at most CHUNK counts
    item_max = np.zeros(items, dtype=np.float32)
    for j in numba.prange(items):
        item_max[j] = _bin_item(data, starts[j], stops[j], 1.0 / widths[owners[j]], bins, local[j])
    hist = np.zeros((segments, bins), dtype=np.int64)
    maxima = np.zeros(segments, dtype=np.float32)
    for j in range(items):
        s = owners[j]
        maxima[s] = nan_aware_max(maxima[s], item_max[j])
        for lane in range(_LANES):
            for k in range(bins):
                hist[s, k] += local[j, lane, k]
    return hist, maxima


@numba.njit(inline="always")
def _growth(width, bins, needed):
    """``growth_factor``, inside a kernel: the smallest power of two f with bins * width * f > needed.
    A float64 (powers of two are exact in it up to 2**1023): an int64 would overflow past 2**62 on
    a range that grows from 1e-12 to 3e38."""
    factor = 1.0
    while bins * width * factor <= needed:
        factor *= 2.0
    return factor


@numba.njit(parallel=True, cache=True)
def binned_growing(data, starts, stops, owners, widths, bins, segments):
    """Per segment: max|x|, the growth factor f (1 when max|x| < bins * width, else ``growth_factor``)
    and the histogram of |x| at width * f, exactly as binning the segment at that width gives.

    Growth is handled per work item while its data is still in cache: an item whose own maximum
    is past the range is binned again at its own factor. Items of a segment that grew less are
    then merged into its factor's bins (bin k at width w*f is bin k // (F/f) at w*F, exact for a
    power of two), except an item with counts in its last bin, which may hold a value rounded up
    to the range: it is binned again at the segment's factor, so that even that edge matches. A
    segment holding NaN or inf does not grow (its items are binned again at its width if needed)."""
    items = starts.size
    local = np.zeros((items, _LANES, bins), dtype=np.int32)
    item_max = np.zeros(items, dtype=np.float32)
    item_factor = np.ones(items, dtype=np.float64)
    for j in numba.prange(items):
        width = widths[owners[j]]
        m = _bin_item(data, starts[j], stops[j], 1.0 / width, bins, local[j])
        item_max[j] = m
        needed = np.float64(m)
        if needed == needed and needed < np.inf and not needed < width * bins:
            item_factor[j] = _growth(width, bins, needed)
            local[j][:] = 0
            _bin_item(data, starts[j], stops[j], 1.0 / (width * item_factor[j]), bins, local[j])
    factors = np.ones(segments, dtype=np.float64)
    maxima = np.zeros(segments, dtype=np.float32)
    for j in range(items):
        s = owners[j]
        factors[s] = max(factors[s], item_factor[j])
        maxima[s] = nan_aware_max(maxima[s], item_max[j])
    for s in range(segments):
        if not maxima[s] < np.inf:  # NaN or inf: no growth (the caller rejects the batch)
            factors[s] = 1.0
    for j in numba.prange(items):
        factor = factors[owners[j]]
        if item_factor[j] > factor or (item_factor[j] < factor and local[j][:, bins - 1].sum() > 0):
            local[j][:] = 0
            _bin_item(data, starts[j], stops[j], 1.0 / (widths[owners[j]] * factor), bins, local[j])
            item_factor[j] = factor
    hist = np.zeros((segments, bins), dtype=np.int64)
    for j in range(items):
        s = owners[j]
        ratio = factors[s] / item_factor[j]  # a power of two, exact
        step = bins if ratio >= bins else int(ratio)  # a step of bins or more merges everything into bin 0
        for lane in range(_LANES):
            for k in range(bins):
                hist[s, k // step] += local[j, lane, k]
    return hist, maxima, factors


@numba.njit(cache=True)
def binned_growing_one_item(data, width, bins):
    """``binned_growing`` of one segment that is one work item, on the calling thread: the same
    binning (the item's own growth is the segment's), without waking the parallel threads."""
    local = np.zeros((_LANES, bins), dtype=np.int32)
    top = _bin_item(data, 0, data.size, 1.0 / width, bins, local)
    factor = 1.0
    needed = np.float64(top)
    if needed == needed and needed < np.inf and not needed < width * bins:
        factor = _growth(width, bins, needed)
        local[:] = 0
        _bin_item(data, 0, data.size, 1.0 / (width * factor), bins, local)
    hist = np.zeros(bins, dtype=np.int64)
    for lane in range(_LANES):
        for k in range(bins):
            hist[k] += local[lane, k]
    return hist, top, factor


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


def histogram_growing(x: np.ndarray, bins: int, width: float, chunk: int = CHUNK) -> tuple[np.ndarray, float, int]:
    """One pass for a streaming observer: max|x|, the factor its range must grow by (1 when max|x|
    fits ``bins`` bins of ``width``, else ``growth_factor``) and the histogram of |x| at
    ``width * factor``; see ``binned_growing``."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size <= chunk:  # one work item: a parallel region would only wake threads (a transformer's small tensors)
        hist, top, factor = binned_growing_one_item(flat, np.float64(width), bins)
        return hist, float(top), int(factor)
    starts, stops, owners = work_items(np.zeros(1, np.int64), np.array([flat.size], np.int64), chunk)
    hist, maxima, factors = binned_growing(flat, starts, stops, owners, np.array([width], np.float64), bins, 1)
    return hist[0], float(maxima[0]), int(factors[0])  # int: exact for a power of two, and what merge_bins takes


def histogram_growing_reference(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float, int]:
    top = absmax_reference(x)
    factor = growth_factor(width, bins, top) if np.isfinite(top) and not top < width * bins else 1
    return histogram_with_max_reference(x, bins, width * factor)[0], top, factor


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
