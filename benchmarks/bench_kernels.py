"""Each numba kernel against its plain-numpy reference and against a plain memory copy of the
same data (the bandwidth ceiling). Prints a table and writes JSON.

    python benchmarks/bench_kernels.py [--elements 16000000] [--repeat 5]
    python benchmarks/bench_kernels.py --parallel-threshold   # absmax on the calling thread vs parallel, by size
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from mlperf_qx.kernels import absmax as A  # noqa: E402
from mlperf_qx.kernels import histogram as H  # noqa: E402
from mlperf_qx.kernels import quantize as Q  # noqa: E402
from mlperf_qx.kernels import segments as G  # noqa: E402
from mlperf_qx.kernels import threshold_search as S  # noqa: E402


def best_time(function, repeat: int) -> float:
    function()  # compile / warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elements", type=int, default=16_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=common.CACHE / "bench_kernels.json")
    parser.add_argument("--parallel-threshold", action="store_true",
                        help="time absmax on the calling thread against its parallel kernel per size (kernels/_parallel.py)")
    args = parser.parse_args()
    if args.parallel_threshold:
        parallel_threshold(args.repeat)
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.elements).astype(np.float32)
    q = Q.quantize_int8(x, 0.03)
    scratch = np.empty_like(x)
    width = float(np.abs(x).max()) / 2048 * 1.001
    hist = np.zeros(2048, np.int64)
    H.accumulate(hist, x, width)
    small_hist = hist.copy()
    # 71 tensors of uneven sizes in one buffer, as calibration binds ResNet-50's activations
    lengths = np.diff(np.linspace(0, x.size, 72).astype(np.int64) ** 2 // x.size)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    widths = np.full(lengths.size, width)
    cases = [
        ("quantize_int8", lambda: Q.quantize_int8(x, 0.03), lambda: Q.quantize_int8_reference(x, 0.03), x.nbytes),
        ("dequantize_int8", lambda: Q.dequantize_int8(q, 0.03), lambda: Q.dequantize_int8_reference(q, 0.03), x.nbytes),
        ("absmax", lambda: A.absmax(x), lambda: A.absmax_reference(x), x.nbytes),
        ("histogram accumulate", lambda: H.accumulate(np.zeros(2048, np.int64), x, width),
         lambda: H.accumulate_reference(np.zeros(2048, np.int64), x, width), x.nbytes),
        ("histogram + max, one pass", lambda: H.histogram_with_max(x, 2048, width),
         lambda: H.histogram_with_max_reference(x, 2048, width), x.nbytes),
        ("segmented histogram + max, 71 tensors", lambda: G.segment_histograms_with_max(x, offsets, lengths, widths, 2048),
         lambda: G.segment_histograms_with_max_reference(x, offsets, lengths, widths, 2048), x.nbytes),
        ("segmented growing histogram + max, 71 tensors", lambda: G.segment_histograms_growing(x, offsets, lengths, widths, 2048),
         lambda: G.segment_histograms_growing_reference(x, offsets, lengths, widths, 2048), x.nbytes),
        ("the same on the calling thread (calibration's workers)",
         lambda: G.segment_histograms_growing_serial(x, offsets, lengths, widths, 2048),
         lambda: G.segment_histograms_growing_reference(x, offsets, lengths, widths, 2048), x.nbytes),
        ("segmented absmax, 71 tensors", lambda: G.segment_absmax(x, offsets, lengths),
         lambda: G.segment_absmax_reference(x, offsets, lengths), x.nbytes),
        ("percentile search", lambda: S.percentile_bins(small_hist, 99.99),
         lambda: S.percentile_bins_reference(small_hist, 99.99), small_hist.nbytes),
        ("entropy (KL) search", lambda: S.entropy_bins(small_hist), lambda: S.entropy_bins_reference(small_hist),
         small_hist.nbytes),
        ("MSE search", lambda: S.mse_bins(small_hist), lambda: S.mse_bins_reference(small_hist), small_hist.nbytes),
    ]
    copy_time = best_time(lambda: np.copyto(scratch, x), args.repeat)
    copy_bandwidth = x.nbytes / copy_time
    rows, results = [], []
    for name, kernel, reference, nbytes in cases:
        kernel_time = best_time(kernel, args.repeat)
        reference_time = best_time(reference, 1 if "search" in name else args.repeat)
        bandwidth = nbytes / kernel_time
        result = {"kernel": name, "kernel_s": kernel_time, "numpy_s": reference_time,
                  "speedup_vs_numpy": reference_time / kernel_time, "gb_per_s": bandwidth / 1e9,
                  "fraction_of_copy_bandwidth": bandwidth / copy_bandwidth}
        results.append(result)
        rows.append([name, f"{kernel_time * 1e3:.2f}", f"{reference_time * 1e3:.1f}", f"{result['speedup_vs_numpy']:.1f}",
                     f"{result['gb_per_s']:.2f}", f"{result['fraction_of_copy_bandwidth']:.0%}" if nbytes == x.nbytes or nbytes == q.nbytes else "n/a (16 KB input)"])
    common.print_table(f"kernels on {args.elements:,} float32 (memory copy: {copy_bandwidth / 1e9:.2f} GB/s)",
                       ["kernel", "numba ms", "numpy ms", "x numpy", "GB/s", "of copy bandwidth"], rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"copy_gb_per_s": copy_bandwidth / 1e9, "kernels": results}, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


def parallel_threshold(repeat: int) -> None:
    """Where a parallel region starts to pay for one pass over float32 data (absmax): the calling
    thread's kernel against the parallel one, interleaved, medians (a shared machine is noisy)."""
    from mlperf_qx.kernels._parallel import PARALLEL_MIN_VALUES, thread_shares, work_items

    rows = []
    for size in (1 << 14, 1 << 16, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22, 1 << 24):
        x = np.random.default_rng(size).standard_normal(size).astype(np.float32)
        starts, stops, owners = work_items(np.zeros(1, np.int64), np.array([size], np.int64))
        shares = thread_shares(starts, stops)
        serial, parallel = (lambda: A.absmax_serial(x)), (lambda: A.absmax_segments(x, starts, stops, owners, 1, *shares))
        serial(), parallel()
        times: dict[str, list[float]] = {"serial": [], "parallel": []}
        for _ in range(max(repeat, 5) * 20):
            for name, function in (("serial", serial), ("parallel", parallel)):
                started = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - started)
        s, p = (float(np.median(times[k])) for k in ("serial", "parallel"))
        rows.append([f"{size:,}", f"{s * 1e3:.3f}", f"{p * 1e3:.3f}", f"{s / p:.2f}"])
    common.print_table(f"absmax: calling thread vs parallel region (medians; threshold now {PARALLEL_MIN_VALUES:,})",
                       ["values", "serial ms", "parallel ms", "serial / parallel"], rows)


if __name__ == "__main__":
    main()
