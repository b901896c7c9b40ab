"""Observers stream: their state does not grow with the data, and batching does not change it."""

import numpy as np

from mlperf_qx.quant.observers import HistogramObserver, MinMaxObserver, threshold
from mlperf_qx.quant.spec import Method


def _state_bytes(observer):
    return sum(v.nbytes for v in vars(observer).values() if isinstance(v, np.ndarray))


def test_histogram_state_is_constant_in_the_number_of_samples():
    observer = HistogramObserver()
    rng = np.random.default_rng(0)
    observer.update(rng.standard_normal(1000).astype(np.float32))
    size = _state_bytes(observer)
    for scale in (1, 2, 10, 100):
        observer.update((rng.standard_normal(50_000) * scale).astype(np.float32))
    assert _state_bytes(observer) == size
    assert observer.count == 1000 + 4 * 50_000
    assert observer.hist.sum() == observer.count


def test_range_growth_keeps_every_count_and_covers_the_maximum():
    observer = HistogramObserver(bins=256)
    observer.update(np.linspace(-1, 1, 1001, dtype=np.float32))
    observer.update(np.array([37.5], np.float32))
    assert observer.hist.sum() == 1002
    assert observer.width * observer.hist.size > 37.5


def test_thresholds_never_exceed_the_observed_maximum():
    rng = np.random.default_rng(3)
    data = rng.standard_normal(100_000).astype(np.float32)
    for method in Method:
        observer = HistogramObserver() if method.needs_histogram else MinMaxObserver()
        observer.update(data)
        t = threshold(observer, method, 99.9)
        assert 0 < t <= np.abs(data).max()
    minmax = MinMaxObserver()
    minmax.update(data)
    assert threshold(minmax, Method.MINMAX, 99.9) == np.abs(data).max()
