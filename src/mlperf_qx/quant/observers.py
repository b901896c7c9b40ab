"""Streaming range observers: memory does not grow with the number of samples.

MinMax keeps max|x|. The histogram observer keeps a fixed-size histogram of |x| whose range
grows (power-of-two bin merges) when data exceeds it, so every sample is seen exactly once.
"""

from __future__ import annotations

import numpy as np

from ..kernels.absmax import absmax
from ..kernels.histogram import histogram_growing, merge_bins
from ..kernels.segments import segment_absmax, segment_histograms_growing
from ..kernels.threshold_search import entropy_bins, mse_bins, percentile_bins
from .spec import Method

HISTOGRAM_BINS = 2048  # TensorRT's resolution for entropy calibration


class MinMaxObserver:
    def __init__(self) -> None:
        self.amax = 0.0
        self.count = 0

    def update(self, x: np.ndarray) -> float:
        """Returns this batch's max|x| (NaN if it holds NaN)."""
        batch_max = absmax(x)
        self.amax = max(self.amax, batch_max)
        self.count += x.size
        return batch_max


class HistogramObserver(MinMaxObserver):
    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        super().__init__()
        self.hist = np.zeros(bins, dtype=np.int64)
        self.width: float | None = None

    def update(self, x: np.ndarray) -> float:
        if self.width is None:
            self.start(absmax(x))
        batch_hist, batch_max, factor = histogram_growing(x, self.hist.size, self.width)
        if np.isfinite(batch_max):
            self.absorb(batch_hist, batch_max, factor, x.size)
        return batch_max

    def start(self, first_max: float) -> None:
        """Set the bin width from the first batch's range (a tiny range still gets a valid width)."""
        self.width = max(float(first_max), 1e-12) / self.hist.size * (1 + 1e-6)

    def absorb(self, batch_hist: np.ndarray, batch_max: float, factor: int, count: int) -> None:
        """Add one batch of ``count`` values, binned at ``factor`` times the current width: when the
        batch went past the range (factor > 1), the range grows first by exact bin merges."""
        self.count += count
        self.amax = max(self.amax, float(batch_max))
        if factor > 1:
            self.hist = merge_bins(self.hist, factor)
            self.width *= factor
        self.hist += batch_hist


def update_segments(observers: list[MinMaxObserver], data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
                    ) -> np.ndarray:
    """Feed one batch held as segments of ``data`` (one per observer, in order) to the observers
    with one parallel kernel call (a histogram whose range must grow is binned again inside it,
    while the data is in cache). Returns each segment's max|x| (NaN where it holds NaN)."""
    if not all(isinstance(o, HistogramObserver) for o in observers):
        maxima = segment_absmax(data, offsets, lengths)
        for observer, batch_max, length in zip(observers, maxima, lengths):
            observer.amax = max(observer.amax, float(batch_max))
            observer.count += int(length)
        return maxima
    if any(o.width is None for o in observers):  # the first batch sets every range
        for observer, first_max in zip(observers, segment_absmax(data, offsets, lengths)):
            if observer.width is None:
                observer.start(first_max)
    widths = np.array([o.width for o in observers], dtype=np.float64)
    hists, maxima, factors = segment_histograms_growing(data, offsets, lengths, widths, observers[0].hist.size)
    for index, observer in enumerate(observers):
        if np.isfinite(maxima[index]):
            observer.absorb(hists[index], maxima[index], int(factors[index]), int(lengths[index]))
    return maxima


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
