"""max(|x|) over a float32 array, parallel over fixed chunks. NaN propagates (callers reject NaN)."""

from __future__ import annotations

import numba
import numpy as np

from ._parallel import chunk_bounds, chunk_count


@numba.njit(parallel=True, cache=True)
def _absmax(x: np.ndarray, chunks: int) -> np.float32:
    bounds = chunk_bounds(x.size, chunks)
    partial = np.zeros(chunks, dtype=np.float32)
    for c in numba.prange(chunks):
        m = np.float32(0.0)
        for i in range(bounds[c], bounds[c + 1]):
            v = abs(x[i])
            if v > m or v != v:  # v != v keeps NaN visible
                m = v
        partial[c] = m
    result = np.float32(0.0)
    for c in range(chunks):
        if partial[c] > result or partial[c] != partial[c]:
            result = partial[c]
    return result


def absmax(x: np.ndarray) -> float:
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return 0.0
    return float(_absmax(flat, chunk_count(flat.size)))


def absmax_reference(x: np.ndarray) -> float:
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    return float(np.max(np.abs(flat))) if flat.size else 0.0
