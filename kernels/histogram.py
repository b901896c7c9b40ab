"""Streaming histograms of |x| whose range grows as data arrives (no second pass over samples).

Bins are [k*w, (k+1)*w); values at or past the range go to the last bin. When a batch exceeds the
range, the bin width grows by a power of two and neighbouring bins are merged exactly, so no count
is ever interpolated and the result does not depend on how the data was batched beyond that growth.
"""

from __future__ import annotations

import numba
import numpy as np

from ._parallel import CHUNK, nan_aware_max, thread_shares, work_items

from .absmax import MAGNITUDE_MASK, absmax_reference


# Independent sub-histograms, one per position mod 4: runs of equal values (ReLU zeros, the
# crowded low bins of a tensor whose range a few outliers set) no longer wait on one counter.
# Their counts are uint16 (16 KiB for 2048 bins, half the L1 footprint of int32 lanes), added to
# the item's int32 counts before any lane can pass 65535 (``_FLUSH``). Measured on one sample of
# ResNet-50's calibration activations (16.8 M values in 71 tensors, one thread, AVX-512 VNNI CPU):
# 8.8 ms with int32 lanes and signed indices, 8.0 with unsigned ones (see ``_count``), 7.4 with
# uint16 lanes; eight uint16 lanes 10.3 ms (an item's lanes are emptied and added up once more).
_LANES = 4
_LANE_DTYPE = np.uint16
# Values whose bin indices one vectorized loop computes before they are counted: 4 KiB of indices
# stay in L1 beside the counts.
_BLOCK = 1024
# Values counted between two flushes: a lane gets at most a quarter of them, plus 3 (a block's tail).
_FLUSH = (int(np.iinfo(_LANE_DTYPE).max) - _LANES) * _LANES // _BLOCK * _BLOCK


@numba.njit(inline="always")
def _block_bins(data, bits, lo, hi, inverse, last, index):
    """Writes the bin of each |data[lo:hi]| to ``index`` (at or past the range, inf and NaN: bin
    ``last``) and returns the largest |x| as its bit pattern.

    Branch-free, so LLVM vectorizes it, which a loop that also counts cannot be. The maximum is
    taken over the bits, as ``absmax.peak_magnitude_bits`` does (it vectorizes, a float max that
    keeps NaN does not). ``bits`` is ``data`` viewed as int32.

    The loop indexes slices from 0: numba wraps a negative index around (Python's semantics), and
    with ``data[i]`` for i in range(lo, hi) it cannot prove i >= 0, so every element took a branch
    and the loop did not vectorize at all (17.6 ms against 3.1 ms for 16 M values on AVX-512)."""
    peak = np.int32(0)
    top = np.float64(last)
    values, patterns = data[lo:hi], bits[lo:hi]
    for i in range(hi - lo):
        magnitude = np.int32(patterns[i] & MAGNITUDE_MASK)  # int32: numba would widen it, and compare 4 a vector, not 8
        peak = magnitude if magnitude > peak else peak
        t = np.float64(abs(values[i])) * inverse
        index[i] = np.uint32(t if t < top else top)  # t in [last, last + 1) is bin last either way
    return peak


@numba.njit(inline="always")
def _count(index, n, lanes):
    """Adds the ``n`` bins in ``index`` to ``lanes`` (lanes x bins), one lane per position mod 4.

    ``index`` is unsigned: numba wraps a negative index around, and a signed one costs a compare
    and select per count (16 M counts: 8.4 ms with int32 indices, 5.7 ms with uint32 here)."""
    unrolled = n // _LANES * _LANES
    for i in range(0, unrolled, _LANES):
        for lane in range(_LANES):
            lanes[lane, index[i + lane]] += 1
    for i in range(unrolled, n):
        lanes[0, index[i]] += 1


@numba.njit(inline="always")
def _flush(lanes, counts, bins):
    """Adds every lane to ``counts`` (int32) and empties the lanes."""
    for lane in range(_LANES):
        for k in range(bins):
            counts[k] += np.int32(lanes[lane, k])
    lanes[:] = 0


@numba.njit(inline="always")
def _bin_item(data, bits, lo, hi, inverse, bins, counts):
    """Sets ``counts`` (int32, bins) to the histogram of |data[lo:hi]| at bin width 1 / ``inverse``;
    returns max|x| as its bit pattern (see ``_block_bins``)."""
    counts[:] = 0
    lanes = np.zeros((_LANES, bins), dtype=_LANE_DTYPE)
    index = np.empty(_BLOCK, dtype=np.uint32)  # unsigned: see _count
    peak = np.int32(0)
    pending = 0
    for start in range(lo, hi, _BLOCK):
        stop = min(start + _BLOCK, hi)
        block_peak = _block_bins(data, bits, start, stop, inverse, bins - 1, index)
        peak = block_peak if block_peak > peak else peak
        _count(index, stop - start, lanes)
        pending += stop - start
        if pending >= _FLUSH:
            _flush(lanes, counts, bins)
            pending = 0
    _flush(lanes, counts, bins)
    return peak


@numba.njit(inline="always")
def _add_item(hist, counts, bins, step):
    """Adds one item's histogram (``counts``) to ``hist``, whose bins are each ``step`` of the item's
    bins wide (a power of two, or ``bins``: all in bin 0)."""
    if step == 1:
        for k in range(bins):
            hist[k] += counts[k]
    else:
        for k in range(bins):
            hist[k // step] += counts[k]


@numba.njit(parallel=True, cache=True)
def binned_with_max(data, starts, stops, owners, widths, bins, segments, order, bounds):
    """Histogram of |x| (segments x bins, int64) and max|x| of each segment of ``data``."""
    items = starts.size
    bits = data.view(np.int32)
    local = np.empty((items, bins), dtype=np.int32)  # a work item holds at most CHUNK counts
    item_bits = np.zeros(items, dtype=np.int32)
    for t in numba.prange(bounds.size - 1):
        for j in order[bounds[t]:bounds[t + 1]]:
            item_bits[j] = _bin_item(data, bits, starts[j], stops[j], 1.0 / widths[owners[j]], bins, local[j])
    item_max = item_bits.view(np.float32)
    hist = np.zeros((segments, bins), dtype=np.int64)
    maxima = np.zeros(segments, dtype=np.float32)
    for j in range(items):
        s = owners[j]
        maxima[s] = nan_aware_max(maxima[s], item_max[j])
        _add_item(hist[s], local[j], bins, 1)
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


@numba.njit(inline="always")
def _bin_item_growing(data, bits, lo, hi, width, bins, counts):
    """``_bin_item`` at ``width``, then, if max|x| is past the range, again at the width grown by
    ``_growth``; returns (max|x|, that growth factor)."""
    top = np.empty(1, dtype=np.int32)
    top[0] = _bin_item(data, bits, lo, hi, 1.0 / width, bins, counts)
    m = top.view(np.float32)[0]
    needed = np.float64(m)
    factor = 1.0
    if needed == needed and needed < np.inf and not needed < width * bins:
        factor = _growth(width, bins, needed)
        _bin_item(data, bits, lo, hi, 1.0 / (width * factor), bins, counts)
    return m, factor


@numba.njit(parallel=True, cache=True)
def binned_growing(data, starts, stops, owners, widths, bins, segments, order, bounds):
    """Per segment: max|x|, the growth factor f (1 when max|x| < bins * width, else ``growth_factor``)
    and the histogram of |x| at width * f, exactly as binning the segment at that width gives.

    Growth is handled per work item while its data is still in cache: an item whose own maximum
    is past the range is binned again at its own factor. Items of a segment that grew less are
    then merged into its factor's bins (bin k at width w*f is bin k // (F/f) at w*F, exact for a
    power of two), except an item with counts in its last bin, which may hold a value rounded up
    to the range: it is binned again at the segment's factor, so that even that edge matches. A
    segment holding NaN or inf does not grow (its items are binned again at its width if needed).
    Only items that must be binned again take a second parallel region (most calls need none)."""
    items = starts.size
    bits = data.view(np.int32)
    local = np.empty((items, bins), dtype=np.int32)
    item_max = np.zeros(items, dtype=np.float32)
    item_factor = np.ones(items, dtype=np.float64)
    for t in numba.prange(bounds.size - 1):
        for j in order[bounds[t]:bounds[t + 1]]:
            item_max[j], item_factor[j] = _bin_item_growing(data, bits, starts[j], stops[j], widths[owners[j]], bins,
                                                            local[j])
    maxima, factors = _segment_growth(item_max, item_factor, owners, segments)
    redo = _to_bin_again(item_factor, factors, owners, local, bins)
    if redo.size:
        for r in numba.prange(redo.size):
            j = redo[r]
            _bin_item(data, bits, starts[j], stops[j], 1.0 / (widths[owners[j]] * factors[owners[j]]), bins, local[j])
            item_factor[j] = factors[owners[j]]
    return _merged(local, item_factor, factors, owners, segments, bins), maxima, factors


@numba.njit(nogil=True, cache=True)
def binned_growing_serial(data, starts, stops, owners, widths, bins, segments):
    """``binned_growing`` on the calling thread, without holding the GIL: the same histograms,
    maxima and factors. For callers that run several batches at once, one per thread (a parallel
    region per caller would put two threads on each core)."""
    items = starts.size
    bits = data.view(np.int32)
    local = np.empty((items, bins), dtype=np.int32)  # each item's counts, kept until the factors are known
    item_max = np.zeros(items, dtype=np.float32)
    item_factor = np.ones(items, dtype=np.float64)
    for j in range(items):
        item_max[j], item_factor[j] = _bin_item_growing(data, bits, starts[j], stops[j], widths[owners[j]], bins,
                                                        local[j])
    maxima, factors = _segment_growth(item_max, item_factor, owners, segments)
    for j in _to_bin_again(item_factor, factors, owners, local, bins):
        _bin_item(data, bits, starts[j], stops[j], 1.0 / (widths[owners[j]] * factors[owners[j]]), bins, local[j])
        item_factor[j] = factors[owners[j]]
    return _merged(local, item_factor, factors, owners, segments, bins), maxima, factors


@numba.njit(inline="always")
def _segment_growth(item_max, item_factor, owners, segments):
    """Each segment's max|x| and growth factor, the largest of its items' (none where the segment
    holds NaN or inf: the caller rejects that batch)."""
    factors = np.ones(segments, dtype=np.float64)
    maxima = np.zeros(segments, dtype=np.float32)
    for j in range(owners.size):
        s = owners[j]
        factors[s] = max(factors[s], item_factor[j])
        maxima[s] = nan_aware_max(maxima[s], item_max[j])
    for s in range(segments):
        if not maxima[s] < np.inf:
            factors[s] = 1.0
    return maxima, factors


@numba.njit(inline="always")
def _to_bin_again(item_factor, factors, owners, counts, bins):
    """The items that merging cannot bring to their segment's factor: grown past it (NaN or inf
    in the segment), or grown less with counts in their last bin (``binned_growing``)."""
    again = np.zeros(owners.size, dtype=np.bool_)
    for j in range(owners.size):
        factor = factors[owners[j]]
        again[j] = item_factor[j] > factor or (item_factor[j] < factor and counts[j, bins - 1] > 0)
    return np.flatnonzero(again)


@numba.njit(inline="always")
def _merged(counts, item_factor, factors, owners, segments, bins):
    """The segments' histograms (int64): each item's ``counts`` merged into its segment's factor."""
    hist = np.zeros((segments, bins), dtype=np.int64)
    for j in range(owners.size):
        s = owners[j]
        ratio = factors[s] / item_factor[j]  # a power of two, exact
        step = bins if ratio >= bins else int(ratio)  # a step of bins or more merges everything into bin 0
        _add_item(hist[s], counts[j], bins, step)
    return hist


@numba.njit(cache=True)
def binned_growing_one_item(data, width, bins):
    """``binned_growing`` of one segment that is one work item, on the calling thread: the same
    binning (the item's own growth is the segment's), without waking the parallel threads."""
    counts = np.empty(bins, dtype=np.int32)
    top, factor = _bin_item_growing(data, data.view(np.int32), 0, data.size, width, bins, counts)
    hist = np.zeros(bins, dtype=np.int64)
    _add_item(hist, counts, bins, 1)
    return hist, top, factor


def _one_segment(x: np.ndarray, bins: int, width: float) -> tuple[np.ndarray, float]:
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return np.zeros(bins, dtype=np.int64), 0.0
    starts, stops, owners = work_items(np.zeros(1, np.int64), np.array([flat.size], np.int64))
    hist, maxima = binned_with_max(flat, starts, stops, owners, np.array([width], np.float64), bins, 1,
                                   *thread_shares(starts, stops))
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
    hist, maxima, factors = binned_growing(flat, starts, stops, owners, np.array([width], np.float64), bins, 1,
                                            *thread_shares(starts, stops))
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
