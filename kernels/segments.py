"""Kernels over many tensors at once: one float32 buffer cut into segments (one per tensor).

Calibration binds every observed activation of a batch into one buffer, so a single parallel call
per batch bins all of them: no per-tensor call overhead, and the two cores share the work evenly
whether a tensor is large or small. Work is split into fixed (segment, chunk) items, so counts and
maxima never depend on thread scheduling. Semantics per segment are exactly those of
``histogram.histogram_with_max`` and ``absmax.absmax``.
"""

from __future__ import annotations

import numpy as np

from ._parallel import CHUNK, thread_shares, work_items
from .absmax import absmax_reference, absmax_segments
from .histogram import binned_growing, binned_growing_serial, binned_with_max, histogram_growing_reference, histogram_with_max_reference


def _checked(data: np.ndarray, offsets, lengths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if data.dtype != np.float32 or data.ndim != 1 or not data.flags.c_contiguous:
        raise ValueError("segment kernels take one contiguous 1-D float32 buffer")
    offsets, lengths = np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)
    if offsets.shape != lengths.shape or (lengths < 0).any() or (offsets + lengths > data.size).any() or (offsets < 0).any():
        raise ValueError("segments must lie inside the buffer")
    return data, offsets, lengths


def segment_histograms_with_max(data: np.ndarray, offsets, lengths, widths, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """For each segment s (``data[offsets[s]:offsets[s]+lengths[s]]``): the histogram of |x| at
    bin width ``widths[s]`` (int64, shape segments x bins) and max|x| (float32)."""
    data, offsets, lengths = _checked(data, offsets, lengths)
    starts, stops, owners = work_items(offsets, lengths)
    return binned_with_max(data, starts, stops, owners, np.asarray(widths, np.float64), bins, offsets.size,
                           *thread_shares(starts, stops))


def segment_histograms_with_max_reference(data, offsets, lengths, widths, bins: int):
    hist = np.zeros((len(offsets), bins), dtype=np.int64)
    maxima = np.zeros(len(offsets), dtype=np.float32)
    for s, (start, length, width) in enumerate(zip(offsets, lengths, widths)):
        hist[s], maxima[s] = histogram_with_max_reference(data[start:start + length], bins, width)
    return hist, maxima


def segment_histograms_growing(data: np.ndarray, offsets, lengths, widths, bins: int, chunk: int = CHUNK
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each segment: the histogram of |x| at ``widths[s] * factors[s]``, max|x| and the factor
    (a power of two as float64; ``histogram.histogram_growing`` per segment, in one call)."""
    data, offsets, lengths = _checked(data, offsets, lengths)
    starts, stops, owners = work_items(offsets, lengths, chunk)
    return binned_growing(data, starts, stops, owners, np.asarray(widths, np.float64), bins, offsets.size,
                           *thread_shares(starts, stops))


def segment_histograms_growing_serial(data: np.ndarray, offsets, lengths, widths, bins: int, chunk: int = CHUNK
                                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``segment_histograms_growing`` on the calling thread, the GIL released (the same results):
    for a caller that bins several batches at once, one per thread."""
    data, offsets, lengths = _checked(data, offsets, lengths)
    starts, stops, owners = work_items(offsets, lengths, chunk)
    return binned_growing_serial(data, starts, stops, owners, np.asarray(widths, np.float64), bins, offsets.size)


def segment_histograms_growing_reference(data, offsets, lengths, widths, bins: int):
    hist = np.zeros((len(offsets), bins), dtype=np.int64)
    maxima = np.zeros(len(offsets), dtype=np.float32)
    factors = np.ones(len(offsets), dtype=np.float64)
    for s, (start, length, width) in enumerate(zip(offsets, lengths, widths)):
        hist[s], maxima[s], factors[s] = histogram_growing_reference(data[start:start + length], bins, width)
    return hist, maxima, factors


def segment_absmax(data: np.ndarray, offsets, lengths) -> np.ndarray:
    data, offsets, lengths = _checked(data, offsets, lengths)
    starts, stops, owners = work_items(offsets, lengths)
    return absmax_segments(data, starts, stops, owners, offsets.size, *thread_shares(starts, stops))


def segment_absmax_reference(data, offsets, lengths) -> np.ndarray:
    return np.array([absmax_reference(data[o:o + n]) for o, n in zip(offsets, lengths)], dtype=np.float32)
