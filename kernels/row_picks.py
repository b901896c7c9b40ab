"""Which token rows of one sample smoothquant's observing pass keeps (``smoothquant_observe``):
the ``top`` rows of largest peak, largest first (ties: the lower index, a stable sort's order),
then the rows at ``positions`` among the others in index order. One call instead of a sort and
several small arrays: it runs for every group input of every calibration sample."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _picks(peaks, top, positions):
    n = peaks.size
    picks = np.empty(top + positions.size, np.int64)
    taken = np.zeros(n, np.bool_)
    for k in range(top):
        best = -1
        for i in range(n):
            if not taken[i] and (best < 0 or peaks[i] > peaks[best]):
                best = i
        picks[k] = best
        taken[best] = True
    p = 0
    rank = 0  # index among the rows not taken
    for i in range(n):
        if taken[i]:
            continue
        while p < positions.size and positions[p] == rank:
            picks[top + p] = i
            p += 1
        rank += 1
    return picks


def stratified_picks(peaks: np.ndarray, top: int, positions: np.ndarray) -> np.ndarray:
    """Row indices: the ``top`` largest ``peaks`` (no NaN; ``top`` < rows), then the rest's rows
    at ``positions`` (ascending, each below rows - ``top``)."""
    return _picks(np.ascontiguousarray(peaks, np.float32), top, np.ascontiguousarray(positions, np.int64))


def stratified_picks_reference(peaks: np.ndarray, top: int, positions: np.ndarray) -> np.ndarray:
    order = np.argsort(-np.asarray(peaks, np.float32), kind="stable")
    rest = np.sort(order[top:])
    return np.concatenate([order[:top], rest[np.asarray(positions, np.int64)]]).astype(np.int64)
