"""Load numba and the compiled kernels ahead of use.

Importing numba and loading each kernel from its on-disk cache costs about 0.6 s, mostly in
native code (LLVM) that does not hold the GIL; started on a side thread at the beginning of
``qx quantize``, it overlaps with reading and canonicalizing the model instead of delaying the
first calibration batch.
"""

from __future__ import annotations

import threading


def _touch_kernels() -> None:
    import numpy as np

    from .absmax import absmax_columns_and_rows, absmax_serial
    from .histogram import histogram_growing
    from .quantize import quantize_int8, scaled_offset_codes
    from .row_errors import accumulate_row_errors
    from .row_picks import stratified_picks
    from .scaled_weights import quantize_scaled
    from .segments import segment_absmax, segment_histograms_growing, segment_histograms_growing_serial
    from .threshold_search import entropy_bins, mse_bins, percentile_bins

    data = np.zeros(8, np.float32)
    segment_absmax(data, [0], [8])
    absmax_serial(data)
    segment_histograms_growing(data, [0], [8], [1.0], 2048)
    segment_histograms_growing_serial(data, [0], [8], [1.0], 2048)
    histogram_growing(data, 2048, 1.0)
    hist = np.ones(2048, np.int64)
    entropy_bins(hist), mse_bins(hist), percentile_bins(hist, 99.9)
    quantize_int8(data, 1.0, narrow=True)
    # smoothquant's scorer (--equalize smoothquant)
    rows = data.reshape(2, 4)
    sums = np.zeros(2)
    products, exact = np.zeros((2, 4), np.int32), rows.astype(np.float64)
    accumulate_row_errors(products, exact, sums, sums.copy(), sums.copy())
    accumulate_row_errors(products, exact, sums, sums.copy(), sums.copy(), 1.0, exact)  # with a side path
    quantize_scaled(rows, np.ones(2, np.float32))
    scaled_offset_codes(rows, np.ones(4, np.float32), 1.0)
    absmax_columns_and_rows(rows)  # its observing pass
    stratified_picks(data, 2, np.arange(3))


def warm_up_in_background() -> threading.Thread:
    thread = threading.Thread(target=_touch_kernels, name="qx-kernel-warm-up", daemon=True)
    thread.start()
    return thread
