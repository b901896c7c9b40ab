"""max(|x|) over float32 data, parallel over fixed work items. NaN propagates (callers reject NaN)."""

from __future__ import annotations

import numba
import numpy as np

from ._parallel import PARALLEL_MIN_VALUES, nan_aware_max, thread_shares, work_items


MAGNITUDE_MASK = np.int32(0x7FFFFFFF)  # a float32's bits without the sign: the bits of |x|


@numba.njit(inline="always")
def peak_magnitude_bits(bits, lo, hi):
    """max|x| over ``bits[lo:hi]`` (float32 data viewed as int32), as a bit pattern. Non-negative
    floats order as their patterns do as integers and |NaN|'s patterns lie above inf's, so this
    integer max is max|x|, or a NaN if there is one; unlike a float max that must keep NaN, it
    vectorizes."""
    peak = np.int32(0)
    patterns = bits[lo:hi]  # indexed from 0: see _block_bins in histogram.py (why it vectorizes only so)
    for i in range(hi - lo):
        magnitude = patterns[i] & MAGNITUDE_MASK
        peak = magnitude if magnitude > peak else peak
    return peak


@numba.njit(parallel=True, cache=True)
def absmax_segments(data, starts, stops, owners, segments, order, bounds):
    """max|x| of each segment of ``data``, given its work items (``_parallel.work_items``)."""
    items = starts.size
    bits = data.view(np.int32)
    item_bits = np.zeros(items, dtype=np.int32)
    for t in numba.prange(bounds.size - 1):
        for j in order[bounds[t]:bounds[t + 1]]:
            item_bits[j] = peak_magnitude_bits(bits, starts[j], stops[j])
    item_max = item_bits.view(np.float32)
    maxima = np.zeros(segments, dtype=np.float32)
    for j in range(items):
        maxima[owners[j]] = nan_aware_max(maxima[owners[j]], item_max[j])
    return maxima


@numba.njit(cache=True, nogil=True)
def absmax_serial(data):
    """max|x| of contiguous 1-D float32 ``data`` on the calling thread (NaN if it holds one)."""
    peak = np.empty(1, dtype=np.int32)
    peak[0] = peak_magnitude_bits(data.view(np.int32), 0, data.size)
    return peak.view(np.float32)[0]


def absmax(x: np.ndarray) -> float:
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return 0.0
    if flat.size < PARALLEL_MIN_VALUES:  # waking the threads would cost more than they save
        return float(absmax_serial(flat))
    starts, stops, owners = work_items(np.zeros(1, np.int64), np.array([flat.size], np.int64))
    return float(absmax_segments(flat, starts, stops, owners, 1, *thread_shares(starts, stops))[0])


def absmax_reference(x: np.ndarray) -> float:
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    return float(np.max(np.abs(flat))) if flat.size else 0.0


@numba.njit(cache=True, nogil=True)
def _peaks_by_row_and_column(bits, rows, columns, column_peaks, row_peaks):
    for r in range(rows):
        peak = np.int32(0)
        base = r * columns
        for c in range(columns):
            magnitude = bits[base + c] & MAGNITUDE_MASK
            peak = magnitude if magnitude > peak else peak
            column_peaks[c] = magnitude if magnitude > column_peaks[c] else column_peaks[c]
        row_peaks[r] = peak


def absmax_columns_and_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max|x| of each column and of each row of a 2-D float32 array, in one pass on the calling
    thread (NaN where one is NaN): smoothquant's observing pass takes both of every group input,
    per sample, while onnxruntime waits."""
    matrix = np.ascontiguousarray(x, dtype=np.float32)
    rows, columns = matrix.shape
    column_peaks, row_peaks = np.zeros(columns, np.int32), np.zeros(rows, np.int32)
    _peaks_by_row_and_column(matrix.reshape(-1).view(np.int32), rows, columns, column_peaks, row_peaks)
    return column_peaks.view(np.float32), row_peaks.view(np.float32)


def absmax_columns_and_rows_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(np.asarray(x, dtype=np.float32))
    if magnitude.size == 0:
        return np.zeros(magnitude.shape[1], np.float32), np.zeros(magnitude.shape[0], np.float32)
    return magnitude.max(0), magnitude.max(1)
