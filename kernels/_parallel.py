"""Chunking shared by the parallel kernels: a fixed chunk count keeps results independent of
thread scheduling (each chunk is reduced alone, then chunks are combined in order)."""

import numba
import numpy as np


@numba.njit(cache=True)
def chunk_bounds(n: int, chunks: int) -> np.ndarray:
    bounds = np.empty(chunks + 1, dtype=np.int64)
    for c in range(chunks + 1):
        bounds[c] = (n * c) // chunks
    return bounds


def chunk_count(n: int) -> int:
    # Enough chunks to balance threads, few enough that per-chunk state stays small.
    return max(1, min(4 * numba.get_num_threads(), n // 65536 + 1))
