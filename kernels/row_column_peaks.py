"""max |x| per column and per row of a float32 matrix, in one pass (smoothquant's observing pass).

numpy takes three passes over each observed activation and a temporary as large as it (|x|, then
the maximum down the columns, then along the rows); here one pass, no temporary. The maxima are
exact (a maximum does not round), so the figures equal numpy's value for value; NaN propagates as
in ``np.max``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _peaks(x, column_max, row_max):
    for i in range(x.shape[0]):
        peak = np.float32(0.0)
        for j in range(x.shape[1]):
            v = abs(x[i, j])
            if v > peak or v != v:
                peak = v
            if v > column_max[j] or v != v:
                column_max[j] = v
        row_max[i] = peak


def row_column_peaks(x: np.ndarray, column_max: np.ndarray) -> np.ndarray:
    """``x``: float32 (R x C); raises ``column_max`` (float32, C) to each column's max |x| in
    place; returns each row's max |x| (float32, R)."""
    matrix = np.ascontiguousarray(x, np.float32)
    row_max = np.empty(matrix.shape[0], np.float32)
    _peaks(matrix, column_max, row_max)
    return row_max


def row_column_peaks_reference(x: np.ndarray, column_max: np.ndarray) -> np.ndarray:
    magnitude = np.abs(np.asarray(x, np.float32))
    np.maximum(column_max, magnitude.max(0), out=column_max)
    return magnitude.max(1)
