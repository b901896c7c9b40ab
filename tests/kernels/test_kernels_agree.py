"""Every numba kernel agrees with its plain-numpy reference (and quantize with onnxruntime)."""

import numpy as np
import onnxruntime as ort
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper

from mlperf_qx.kernels._parallel import PARALLEL_MIN_VALUES
from mlperf_qx.kernels.absmax import absmax, absmax_reference
from mlperf_qx.kernels.histogram import (
    accumulate, accumulate_reference, growth_factor, histogram_growing, histogram_growing_reference, histogram_with_max,
    histogram_with_max_reference, merge_bins,
)
from mlperf_qx.kernels.segments import (
    segment_absmax, segment_absmax_reference, segment_histograms_growing, segment_histograms_growing_reference,
    segment_histograms_growing_serial, segment_histograms_with_max, segment_histograms_with_max_reference,
)
from mlperf_qx.kernels.quantize import (
    dequantize_int8, dequantize_int8_reference, quantize_int8, quantize_int8_reference,
)
from mlperf_qx.kernels.threshold_search import (
    entropy_bins, entropy_bins_reference, entropy_divergences, entropy_divergences_reference,
    mse_bins, mse_bins_reference, mse_errors, mse_errors_reference, percentile_bins, percentile_bins_reference,
)

finite32 = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=40), elements=finite32)
scales = st.floats(9.999999974752427e-07, 1e3, allow_nan=False, width=32)
histograms = hnp.arrays(np.int64, st.integers(128, 600), elements=st.integers(0, 1000))


def _ort_quantize(x: np.ndarray, scale: float) -> np.ndarray:
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT8, list(x.shape))],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [scale]), helper.make_tensor("z", TensorProto.INT8, [], [0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@settings(max_examples=200, deadline=None)
@given(arrays, scales)
def test_quantize_matches_reference_and_onnxruntime(x, scale):
    ours = quantize_int8(x, scale)
    np.testing.assert_array_equal(ours, quantize_int8_reference(x, scale))
    np.testing.assert_array_equal(ours, _ort_quantize(x, float(np.float32(scale))))


def test_quantize_rounds_half_to_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1000.0, -1000.0], np.float32)
    assert quantize_int8(x, 1.0).tolist() == [0, 2, 2, 0, -2, -2, 127, -128]
    assert quantize_int8(x, 1.0, narrow=True).tolist()[-1] == -127
    np.testing.assert_array_equal(quantize_int8(x, 1.0), _ort_quantize(x, 1.0))


@settings(max_examples=100, deadline=None)
@given(arrays, scales, st.booleans())
def test_narrow_quantize_matches_reference(x, scale, narrow):
    np.testing.assert_array_equal(quantize_int8(x, scale, narrow), quantize_int8_reference(x, scale, narrow))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int8, hnp.array_shapes(max_dims=3, max_side=30)), scales)
def test_dequantize_matches_reference(q, scale):
    np.testing.assert_array_equal(dequantize_int8(q, scale), dequantize_int8_reference(q, scale))


@settings(max_examples=200, deadline=None)
@given(arrays)
def test_absmax_matches_reference(x):
    assert absmax(x) == absmax_reference(x)


def test_absmax_on_a_large_array_uses_every_chunk():
    x = np.random.default_rng(0).standard_normal(PARALLEL_MIN_VALUES + 3).astype(np.float32)  # the parallel path
    x[PARALLEL_MIN_VALUES - 777] = -50.0
    assert absmax(x) == absmax_reference(x) == 50.0


@settings(max_examples=200, deadline=None)
@given(arrays, st.integers(8, 512), st.floats(1e-3, 1e5))
def test_histogram_accumulate_matches_reference(x, bins, width):
    ours = np.zeros(bins, np.int64)
    ref = np.zeros(bins, np.int64)
    accumulate(ours, x, width)
    accumulate_reference(ref, x, width)
    np.testing.assert_array_equal(ours, ref)
    assert ours.sum() == x.size


@settings(max_examples=200, deadline=None)
@given(arrays, st.integers(8, 512), st.floats(1e-3, 1e5))
def test_histogram_with_max_matches_reference(x, bins, width):
    ours, ours_max = histogram_with_max(x, bins, width)
    ref, ref_max = histogram_with_max_reference(x, bins, width)
    np.testing.assert_array_equal(ours, ref)
    assert ours_max == ref_max


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int64, st.sampled_from([64, 256, 2048]), elements=st.integers(0, 100)),
       st.sampled_from([1, 2, 4, 8, 4096]))
def test_merge_bins_keeps_counts_and_matches_wider_histogram(hist, factor):
    merged = merge_bins(hist, factor)
    assert merged.sum() == hist.sum()
    for j in range(min(hist.size // factor, 8)):
        assert merged[j] == hist[j * factor:(j + 1) * factor].sum()


def test_growth_then_merge_equals_direct_histogram():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(-1, 1, 5000).astype(np.float32), rng.uniform(-7, 7, 5000).astype(np.float32)
    bins, width = 256, 1.0 / 256
    hist = np.zeros(bins, np.int64)
    accumulate(hist, small, width)
    factor = growth_factor(width, bins, float(np.abs(large).max()))
    hist = merge_bins(hist, factor)
    accumulate(hist, large, width * factor)
    direct = np.zeros(bins, np.int64)
    accumulate_reference(direct, np.concatenate([small, large]), width * factor)
    np.testing.assert_array_equal(hist, direct)


@settings(max_examples=200, deadline=None)
@given(histograms.filter(lambda h: h.sum() > 0), st.floats(50.0, 100.0))
def test_percentile_matches_reference(hist, percentile):
    assert percentile_bins(hist, percentile) == percentile_bins_reference(hist, percentile)


def _same_choice(ours, ref, values_ours, values_ref, offset):
    # Same bin; a different one only at an exact tie of the objective (float rounding).
    if ours != ref:
        assert np.isclose(values_ref[ours - offset], values_ref[ref - offset], rtol=1e-12, atol=0)
    np.testing.assert_allclose(values_ours, values_ref, rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(histograms.filter(lambda h: h.sum() > 0))
def test_entropy_search_matches_reference(hist):
    first, ours_values = entropy_divergences(hist)
    _, ref_values = entropy_divergences_reference(hist)
    _same_choice(entropy_bins(hist), entropy_bins_reference(hist), ours_values, ref_values, first)


@settings(max_examples=60, deadline=None)
@given(histograms.filter(lambda h: h.sum() > 0))
def test_mse_search_matches_reference(hist):
    _same_choice(mse_bins(hist), mse_bins_reference(hist), mse_errors(hist), mse_errors_reference(hist), 1)


def _mse_errors_summed_in_bin_order(hist):
    """Each candidate's error as one sequential sum over the non-empty bins, in bin order (np.cumsum
    adds in order, unlike np.sum's pairwise sum): the values the kernel must give bit for bit."""
    nonempty = np.flatnonzero(hist)
    centres, counts = nonempty + 0.5, hist[nonempty].astype(np.float64)
    errors = []
    for kept in range(1, hist.size + 1):
        step = kept / 127.0
        diff = centres - np.minimum(np.rint(centres / step), 127.0) * step
        errors.append(np.cumsum(counts * diff * diff)[-1] if nonempty.size else 0.0)
    return np.array(errors)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 700), elements=st.integers(0, 10**9) | st.just(0)))
def test_mse_errors_are_bin_order_sums_bit_for_bit(hist):
    """The loop order of the MSE kernel (candidates inner) leaves each candidate's sum in bin
    order: the same values, bit for bit, as summing per candidate, so the same bin is chosen."""
    np.testing.assert_array_equal(mse_errors(hist), _mse_errors_summed_in_bin_order(hist))


def test_entropy_clips_a_long_tail():
    rng = np.random.default_rng(2)
    data = np.concatenate([rng.normal(0, 1, 200_000), [40.0]]).astype(np.float32)
    bins = 2048
    width = float(np.abs(data).max()) / bins
    hist = np.zeros(bins, np.int64)
    accumulate(hist, data, width)
    threshold = entropy_bins(hist) * width
    assert 2.0 < threshold < 20.0  # far below the single outlier at 40
    assert mse_bins(hist) * width < 20.0


any32 = st.floats(width=32)  # NaN and inf included: activations can overflow
segment_lists = st.lists(hnp.arrays(np.float32, st.integers(0, 3000), elements=any32), min_size=1, max_size=6)


def _packed(arrays_):
    lengths = np.array([a.size for a in arrays_], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) + 3  # not at the buffer start
    data = np.zeros(int(lengths.sum()) + 5, np.float32)
    for a, o in zip(arrays_, offsets):
        data[o:o + a.size] = a
    return data, offsets, lengths


@settings(max_examples=150, deadline=None)
@given(segment_lists, st.integers(8, 2048), st.floats(1e-3, 1e5))
def test_segment_histograms_match_reference(parts, bins, width):
    data, offsets, lengths = _packed(parts)
    widths = width * (1 + np.arange(len(parts)))
    hist, maxima = segment_histograms_with_max(data, offsets, lengths, widths, bins)
    ref_hist, ref_max = segment_histograms_with_max_reference(data, offsets, lengths, widths, bins)
    np.testing.assert_array_equal(hist, ref_hist)
    np.testing.assert_array_equal(maxima, ref_max)  # NaN where a segment holds NaN
    assert (hist.sum(axis=1) == lengths).all()


@settings(max_examples=150, deadline=None)
@given(segment_lists)
def test_segment_absmax_matches_reference(parts):
    data, offsets, lengths = _packed(parts)
    np.testing.assert_array_equal(segment_absmax(data, offsets, lengths), segment_absmax_reference(data, offsets, lengths))


def test_segments_spanning_many_work_items():
    rng = np.random.default_rng(5)
    parts = [rng.standard_normal(n).astype(np.float32) for n in (1_000_001, 17, 600_000)]
    parts[0][999_999] = -70.0
    data, offsets, lengths = _packed(parts)
    widths = np.array([0.01, 0.02, 0.03])
    hist, maxima = segment_histograms_with_max(data, offsets, lengths, widths, 2048)
    ref_hist, ref_max = segment_histograms_with_max_reference(data, offsets, lengths, widths, 2048)
    np.testing.assert_array_equal(hist, ref_hist)
    assert maxima[0] == 70.0 and (maxima == ref_max).all()


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 500), elements=any32), st.integers(8, 512), st.floats(1e-3, 1e5))
def test_histograms_put_nan_and_inf_in_the_last_bin(x, bins, width):
    ours, ours_max = histogram_with_max(x, bins, width)
    ref, ref_max = histogram_with_max_reference(x, bins, width)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(ours_max, ref_max)
    assert ours[-1] >= np.count_nonzero(~np.isfinite(x))


growing_segments = st.lists(hnp.arrays(np.float32, st.integers(0, 400), elements=any32), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(growing_segments, st.integers(8, 2048), st.floats(1e-4, 1e3), st.sampled_from([7, 64, 1 << 18]))
def test_growing_histograms_match_binning_at_the_grown_width(parts, bins, width, chunk):
    """Growth handled per work item (small chunks: a segment spans many items that grow by
    different factors) equals binning the whole segment at its grown width, as the reference does."""
    data, offsets, lengths = _packed(parts)
    widths = width * (1 + np.arange(len(parts)))
    ref_hist, ref_max, ref_factors = segment_histograms_growing_reference(data, offsets, lengths, widths, bins)
    for kernel in (segment_histograms_growing, segment_histograms_growing_serial):  # threads, and the calling thread
        hist, maxima, factors = kernel(data, offsets, lengths, widths, bins, chunk)
        np.testing.assert_array_equal(factors, ref_factors)
        np.testing.assert_array_equal(hist, ref_hist)
        np.testing.assert_array_equal(maxima, ref_max)
        assert (hist.sum(axis=1) == lengths).all()


def test_growing_histogram_of_one_tensor_matches_reference_at_a_value_on_the_range():
    """An item whose values reach its own grown range's last bin, in a segment that grew further
    in another item, is binned again at the segment's factor instead of merged (the path that
    keeps a value rounded up to a range edge exact)."""
    bins, width = 16, 0.5
    x = np.zeros(40, np.float32)
    x[3] = bins * width * 2 - 1e-6  # item 0 grows by 2 and has counts in its last bin
    x[30] = 100.0  # item 3 grows by 16
    for chunk in (10, 1 << 18):
        ours = histogram_growing(x, bins, width, chunk)
        ref = histogram_growing_reference(x, bins, width)
        np.testing.assert_array_equal(ours[0], ref[0])
        assert ours[1:] == ref[1:] and ours[2] == 16


@settings(max_examples=150, deadline=None, derandomize=True)
@given(hnp.arrays(np.float32, st.integers(0, 3000), elements=any32), st.integers(8, 2048), st.floats(1e-4, 1e3))
def test_one_item_histogram_on_the_calling_thread_matches_the_parallel_kernel_and_reference(x, bins, width):
    """A tensor of one work item is binned by ``binned_growing_one_item`` (no parallel region):
    the same histogram, max|x| and growth as the parallel kernel and the numpy reference, NaN and
    inf included."""
    ours = histogram_growing(x, bins, width)
    parallel = segment_histograms_growing(x, [0], [x.size], [width], bins)
    ref = histogram_growing_reference(x, bins, width)
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[0], parallel[0][0])
    np.testing.assert_array_equal(np.float32(ours[1]), parallel[1][0])
    assert (ours[1] == ref[1] or (np.isnan(ours[1]) and np.isnan(ref[1]))) and ours[2] == ref[2] == parallel[2][0]


edge_values = st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38])
# NaN with the sign bit set and with another payload: max|x| is taken over the magnitude bits.
odd_nans = np.array([0xFFC00000, 0x7F800001, 0xFFFFFFFF], dtype=np.uint32).view(np.float32)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(hnp.arrays(np.float32, st.integers(0, 5000), elements=any32 | edge_values), st.integers(8, 2048),
       st.floats(1e-4, 1e3), st.sampled_from([1000, 1024, 2500, 1 << 18]), st.booleans())
def test_histograms_across_blocks_and_items_match_reference(x, bins, width, chunk, odd_nan):
    """Blocks of bin indices (1024 values) that end inside a work item and items that end inside a
    block, values on bin edges, -0.0, inf and NaN with any sign or payload: the same histogram,
    max|x| and growth as the reference, and max|x| as ``absmax``'s."""
    if odd_nan and x.size:
        x[x.size // 2] = odd_nans[x.size % odd_nans.size]
    edges = (np.arange(x.size) % (bins + 2)).astype(np.float64) * np.float64(width)
    on_edges = np.where(np.arange(x.size) % 3 == 0, edges.astype(np.float32), x)  # k * width, rounded to float32
    for data in (x, on_edges):
        ours = segment_histograms_growing(data, [0], [data.size], [width], bins, chunk)
        serial = segment_histograms_growing_serial(data, [0], [data.size], [width], bins, chunk)
        with np.errstate(invalid="ignore"):  # numpy flags a signalling NaN as it converts it
            ref = segment_histograms_growing_reference(data, [0], [data.size], [width], bins)
        for got, on_the_calling_thread, want in zip(ours, serial, ref):
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(on_the_calling_thread, want)
        np.testing.assert_array_equal(segment_absmax(data, [0], [data.size]), segment_absmax_reference(data, [0], [data.size]))
        if data.size:
            np.testing.assert_array_equal(np.float32(absmax(data)), np.float32(absmax_reference(data)))


def test_parallel_absmax_of_a_nan_with_the_sign_bit_is_nan():
    x = np.ones(PARALLEL_MIN_VALUES + 3, np.float32)
    x[500_000] = odd_nans[0]
    assert np.isnan(absmax(x)) and np.isnan(segment_absmax(x, [0], [x.size])[0])
    x[500_000] = -np.inf
    assert absmax(x) == np.inf


def test_thread_shares_deal_every_item_once_and_balance_the_values():
    from mlperf_qx.kernels._parallel import thread_shares, work_items

    lengths = np.array([3_000_000, 17, 802_816, 802_816, 200_704, 100_352, 50_176, 1], np.int64)
    starts, stops, _ = work_items(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    for threads in (1, 2, 3):
        order, bounds = thread_shares(starts, stops, threads)
        assert sorted(order.tolist()) == list(range(starts.size)) and bounds[-1] == starts.size
        loads = [int((stops - starts)[order[bounds[t]:bounds[t + 1]]].sum()) for t in range(threads)]
        assert max(loads) - min(loads) <= (1 << 18)  # within one work item


@settings(max_examples=150, deadline=None, derandomize=True)
@given(hnp.arrays(np.float32, st.integers(1, 3000), elements=any32 | edge_values))
def test_absmax_on_the_calling_thread_matches_reference_and_the_parallel_kernel(x):
    from mlperf_qx.kernels.absmax import absmax_serial

    want = np.float32(absmax_reference(x))
    np.testing.assert_array_equal(absmax_serial(x), want)  # NaN where x holds one
    np.testing.assert_array_equal(segment_absmax(x, [0], [x.size])[0], want)


def test_all_zero_and_negative_zero_tensors_bin_into_bin_zero_on_either_kernel():
    """All-zero tensors (ReLU outputs of a dead channel) of sizes around a block, +0 and -0: every
    count in bin 0, max 0, no growth, from the parallel kernel and the one on the calling thread."""
    for size in (1, 7, 1023, 1024, 1025, 3000):
        for zero in (0.0, -0.0):
            x = np.full(size, zero, np.float32)
            want = segment_histograms_growing_reference(x, [0], [size], [0.5], 64)
            for kernel in (segment_histograms_growing, segment_histograms_growing_serial):
                hist, maxima, factors = kernel(x, [0], [size], [0.5], 64, 1000)
                np.testing.assert_array_equal(hist, want[0])
                assert hist[0, 0] == size and maxima[0] == 0.0 and factors[0] == 1.0


def test_counts_past_the_narrow_lanes_limit_stay_exact():
    """The counting lanes are uint16, added to the item's int32 counts before any can pass 65535:
    an item of over a million values, all in one bin but a few (the worst case for one lane), and
    a segment of four such items, count exactly as numpy does."""
    x = np.zeros(1_100_003, np.float32)
    x[::100_000] = 3.0  # a few values elsewhere, one of them in a block's tail
    want = histogram_growing_reference(x, 64, 0.5)
    np.testing.assert_array_equal(histogram_growing(x, 64, 0.5, chunk=1 << 21)[0], want[0])  # one item
    np.testing.assert_array_equal(histogram_growing(x, 64, 0.5)[0], want[0])  # items of CHUNK values
    big = np.tile(x, 4)
    for kernel in (segment_histograms_growing, segment_histograms_growing_serial):
        hist = kernel(big, [0], [big.size], [0.5], 64, 1 << 21)[0]
        np.testing.assert_array_equal(hist[0], 4 * want[0])
    assert want[0][0] > 4 * 65535


special32 = st.sampled_from([0.0, -0.0, 1.5, -1.5, float("inf"), float("-inf"), float("nan")])
matrices = hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=70),
                      elements=st.one_of(finite32, special32))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(matrices)
def test_absmax_of_columns_and_rows_matches_reference(x):
    from mlperf_qx.kernels.absmax import absmax_columns_and_rows, absmax_columns_and_rows_reference

    for ours, theirs in zip(absmax_columns_and_rows(x), absmax_columns_and_rows_reference(x)):
        np.testing.assert_array_equal(ours, theirs)  # NaN where the reference has NaN


@settings(max_examples=150, deadline=None, derandomize=True)
@given(hnp.arrays(np.float32, st.integers(3, 80), elements=st.sampled_from([0.0, 1.0, 2.0, 2.5, 7.0, 1e30])),
       st.integers(1, 4), st.integers(1, 10))
def test_stratified_picks_match_the_stable_sort(peaks, top, evenly):
    # Few distinct values: ties everywhere, which the stable sort breaks by index.
    from mlperf_qx.kernels.row_picks import stratified_picks, stratified_picks_reference
    from mlperf_qx.quant.smoothquant_observe import _stratified_rows, _stratified_rows_reference

    top = min(top, peaks.size - 1)
    rest = peaks.size - top
    positions = np.linspace(0, rest - 1, min(evenly, rest)).astype(np.int64)
    np.testing.assert_array_equal(stratified_picks(peaks, top, positions), stratified_picks_reference(peaks, top, positions))
    for ours, theirs in zip(_stratified_rows(peaks, evenly), _stratified_rows_reference(peaks, evenly)):
        np.testing.assert_array_equal(ours, theirs)
