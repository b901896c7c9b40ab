"""Streaming range observers: memory does not grow with the number of samples.

MinMax keeps max|x|. The histogram observer keeps a fixed-size histogram of |x| whose range
grows (power-of-two bin merges) when data exceeds it, so every sample is seen exactly once.
"""

from __future__ import annotations

import numpy as np

from ..kernels.absmax import absmax, absmax_serial
from ..kernels.histogram import histogram_growing, merge_bins
from ..kernels.segments import segment_absmax, segment_histograms_growing, segment_histograms_growing_serial
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


class BinnedSegments:
    """One batch's segments binned on the calling thread (``bin_segments``), to be absorbed in batch
    order (``absorb_segments``): max|x| of each, and for histogram observers the histogram at
    ``widths * factors``, ``widths`` being the observers' widths when the batch was binned."""

    def __init__(self, maxima: np.ndarray, hists: np.ndarray | None = None, widths: np.ndarray | None = None,
                 factors: np.ndarray | None = None) -> None:
        self.maxima, self.hists, self.widths, self.factors = maxima, hists, widths, factors


def bin_segments(observers: list[MinMaxObserver], data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
                 ) -> BinnedSegments:
    """``update_segments``' work without changing the observers (every range already started),
    on the calling thread with the GIL released: several threads may bin batches at once while
    others absorb theirs."""
    if not all(isinstance(o, HistogramObserver) for o in observers):
        return BinnedSegments(np.array([absmax_serial(data[o:o + n]) if n else 0.0 for o, n in zip(offsets, lengths)],
                                       dtype=np.float32))
    widths = np.array([o.width for o in observers], dtype=np.float64)  # each as some batch before left it
    hists, maxima, factors = segment_histograms_growing_serial(data, offsets, lengths, widths, observers[0].hist.size)
    return BinnedSegments(maxima, hists, widths, factors)


def absorb_segments(observers: list[MinMaxObserver], binned: BinnedSegments, data: np.ndarray, offsets: np.ndarray,
                    lengths: np.ndarray) -> np.ndarray:
    """Adds a batch from ``bin_segments`` to the observers, exactly as ``update_segments`` adds it
    (call in batch order; ``data`` as binned). The range may have grown since the batch was
    binned, by batches absorbed before it: its histogram is then merged to the present width (bins
    k*f .. k*f+f-1 are bin k: exact for a power of two f), or binned again at it where its last bin
    has counts (a value rounded up to its range; see ``binned_growing``). Returns each max|x|."""
    for index, observer in enumerate(observers):
        batch_max, length = binned.maxima[index], int(lengths[index])
        if binned.hists is None:
            observer.amax = max(observer.amax, float(batch_max))
            observer.count += length
        elif np.isfinite(batch_max):
            grown = binned.widths[index] * binned.factors[index]  # a power-of-two multiple of the first width
            hist = binned.hists[index]
            if grown < observer.width:
                if hist[-1] == 0:
                    hist = merge_bins(hist, int(observer.width / grown))
                else:
                    hist = segment_histograms_growing_serial(data, offsets[index:index + 1], lengths[index:index + 1],
                                                             [observer.width], hist.size)[0][0]
            observer.absorb(hist, batch_max, int(max(grown / observer.width, 1.0)), length)
    return binned.maxima


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
