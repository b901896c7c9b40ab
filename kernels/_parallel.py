"""Work split shared by the parallel kernels: fixed work items keep every result independent of
thread scheduling (each item is reduced alone, then items are combined in order)."""

import numba
import numpy as np

CHUNK = 1 << 18  # elements per work item (1 MiB of float32)


def work_items(offsets: np.ndarray, lengths: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, owner segment) of each fixed-size work item, in segment order. Fixed items
    keep every result independent of how threads are scheduled. (``chunk``: smaller in tests, so
    that small segments span several items.)"""
    offsets, lengths = np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)
    pieces = np.maximum(1, -(-lengths // chunk))
    owners = np.repeat(np.arange(lengths.size), pieces)
    within = np.arange(owners.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    starts = offsets[owners] + within * chunk
    stops = np.minimum(starts + chunk, offsets[owners] + lengths[owners])
    return starts.astype(np.int64), stops.astype(np.int64), owners.astype(np.int64)


@numba.njit(inline="always")
def nan_aware_max(m, v):
    return v if (v > m or v != v) else m  # v != v keeps a NaN visible (callers reject it by name)
