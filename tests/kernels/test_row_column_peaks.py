"""The observing pass's one-pass row and column maxima equal numpy's value for value (NaN included)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlperf_qx.kernels.row_column_peaks import row_column_peaks, row_column_peaks_reference


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.integers(1, 70), st.integers(1, 70), st.floats(-6, 6), st.booleans(), st.integers(0, 2**31 - 1))
def test_row_column_peaks_equal_numpy(rows, columns, decades, with_nan, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, columns)) * 10.0 ** decades).astype(np.float32)
    x[rng.random((rows, columns)) < 0.1] = -0.0
    if with_nan:
        x[rng.integers(rows), rng.integers(columns)] = np.nan
    start = (np.abs(rng.standard_normal(columns)) * 10.0 ** decades).astype(np.float32)  # maxima so far
    fast, slow = start.copy(), start.copy()
    got, expected = row_column_peaks(x, fast), row_column_peaks_reference(x, slow)
    assert np.array_equal(got, expected, equal_nan=True) and got.dtype == expected.dtype
    assert np.array_equal(fast, slow, equal_nan=True)


def test_row_column_peaks_of_a_known_matrix():
    x = np.array([[1.0, -5.0, 2.0], [-3.0, 0.5, 4.0]], np.float32)
    column_max = np.array([2.0, 0.0, 0.0], np.float32)
    assert row_column_peaks(x, column_max).tolist() == [5.0, 4.0]
    assert column_max.tolist() == [3.0, 5.0, 4.0]
