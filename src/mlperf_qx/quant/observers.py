"""Streaming range observers: memory does not grow with the number of samples.

MinMax keeps max|x|. The histogram observer keeps a fixed-size histogram of |x| whose range
grows (power-of-two bin merges) when data exceeds it, so every sample is seen exactly once.
"""

from __future__ import annotations

import numpy as np

from ..kernels.absmax import absmax
from ..kernels.histogram import accumulate, growth_factor, histogram_with_max, merge_bins
from ..kernels.threshold_search import entropy_bins, mse_bins, percentile_bins
from .spec import Method

HISTOGRAM_BINS = 2048  # TensorRT's resolution for entropy calibration


class MinMaxObserver:
    def __init__(self) -> None:
        self.amax = 0.0
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        self.amax = max(self.amax, absmax(x))
        self.count += x.size


class HistogramObserver(MinMaxObserver):
    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        super().__init__()
        self.hist = np.zeros(bins, dtype=np.int64)
        self.width: float | None = None

    def update(self, x: np.ndarray) -> None:
        self.count += x.size
        if self.width is None:
            # Start with the first batch's range; tiny ranges still get a valid width.
            batch_max = absmax(x)
            self.width = max(batch_max, 1e-12) / self.hist.size * (1 + 1e-6)
            accumulate(self.hist, x, self.width)
            self.amax = max(self.amax, batch_max)
            return
        # Usually one pass: bin at the current width and see whether everything fitted.
        batch_hist, batch_max = histogram_with_max(x, self.hist.size, self.width)
        self.amax = max(self.amax, batch_max)
        if batch_max < self.width * self.hist.size:
            self.hist += batch_hist
            return
        factor = growth_factor(self.width, self.hist.size, batch_max)
        self.hist = merge_bins(self.hist, factor)
        self.width *= factor
        accumulate(self.hist, x, self.width)


def make_observer(method: Method) -> MinMaxObserver:
    return HistogramObserver() if method.needs_histogram else MinMaxObserver()


def threshold(observer: MinMaxObserver, method: Method, percentile: float) -> float:
    """The clipping threshold (amax) chosen by ``method``; never beyond what was observed."""
    if method is Method.MINMAX or not isinstance(observer, HistogramObserver) or observer.width is None:
        return observer.amax
    if observer.amax == 0.0:
        return 0.0
    if method is Method.PERCENTILE:
        kept = percentile_bins(observer.hist, percentile)
    elif method is Method.ENTROPY:
        # ReLU outputs put a spike of exact zeros in bin 0 that would dominate the divergence and
        # pull the threshold far down; like NVIDIA's pytorch-quantization, flatten that bin. Only
        # for continuous data: a discrete input (pixels k/16) has empty bins next to the spike.
        hist = observer.hist.copy()
        if hist.size > 1 and hist[1] > 0:
            hist[0] = hist[1]
        kept = entropy_bins(hist)
    else:
        kept = mse_bins(observer.hist)
    return min(kept * observer.width, observer.amax)
