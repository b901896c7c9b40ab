"""smoothquant's choice on sampled rows: the row sample always holds each sample's largest rows
and estimates whole-set sums without bias, and no clip is taken that would put the layer outside
verify's layer tolerance, however much it helps the ordinary tokens."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlperf_qx.kernels.quantize import fake_quantize_int8, quantize_int8
from mlperf_qx.layer_tolerance import within
from mlperf_qx.quant.smoothquant import Candidate, ErrorScorer, choose
from mlperf_qx.quant.smoothquant_observe import TOP_ROWS_PER_SAMPLE, ChannelStats, _stratified_rows


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 300), st.floats(1e-4, 10.0), st.booleans(), st.integers(0, 2**31 - 1))
def test_fake_quantize_is_the_int8_kernel_dequantized(size, scale, narrow, seed):
    # Halves of the step (ties, rounded to even) and values past saturation, both signs.
    rng = np.random.default_rng(seed)
    x = (np.concatenate([rng.standard_normal(size) * 60, np.arange(-140, 140) + 0.5]) * scale).astype(np.float32)
    s = np.float32(scale)
    expected = quantize_int8(x, s, narrow).astype(np.float32) * s
    assert np.array_equal(fake_quantize_int8(x, s, narrow), expected)
    in_place = x.copy()
    assert fake_quantize_int8(in_place, s, narrow, out=in_place) is in_place and np.array_equal(in_place, expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_stratified_rows_keep_the_largest_and_stand_for_every_row(rows, evenly, seed):
    peaks = np.random.default_rng(seed).random(rows)
    picks, weights = _stratified_rows(peaks, evenly)
    assert len(set(picks.tolist())) == picks.size  # no row twice
    largest = np.argsort(-peaks, kind="stable")[:TOP_ROWS_PER_SAMPLE]
    assert set(largest.tolist()) <= set(picks.tolist())
    assert np.all(weights[:largest.size] == 1.0)
    assert np.isclose(weights.sum(), rows)  # an unbiased estimator of a sum over all rows


def _massive_token_layer(seed: int = 0):
    """Ordinary token rows plus a few massive ones (every channel 40x): the shape of a trained
    transformer's FFN input. Neither smoothing nor a channel split helps; only the clip is left."""
    rng = np.random.default_rng(seed)
    ordinary = rng.standard_normal((2000, 64)).astype(np.float32)
    massive = (40.0 * rng.standard_normal((20, 64))).astype(np.float32)
    rows = np.concatenate([ordinary, massive])
    weight = rng.standard_normal((64, 64)).astype(np.float32)
    return rows, weight


def test_no_clip_puts_the_layer_outside_verify_tolerance():
    rows, weight = _massive_token_layer()
    stats = ChannelStats(np.abs(rows).max(0), rows)
    candidate = Candidate("x", ("mm",), "mul", (weight,))
    scorer = ErrorScorer(stats, (weight,))
    identity, none = np.zeros(64, np.int32), np.zeros(0, np.int64)
    # The trap: per token, the hardest clip is best (the ordinary tokens get 4x the resolution) ...
    per_row = {clip: scorer.error(identity, none, clip) for clip in (1.0, 0.6, 0.25)}
    assert per_row[0.25].per_row < per_row[1.0].per_row
    # ... while pooled, as verify measures the layer, it wrecks the massive tokens.
    assert not per_row[0.25].within_tolerance and per_row[1.0].within_tolerance
    choice = choose(candidate, stats)
    assert choice.error_after.within_tolerance, choice.error_after
    assert choice.clip > 0.25


def test_pooled_score_is_what_verify_would_measure():
    rows, weight = _massive_token_layer(1)
    stats = ChannelStats(np.abs(rows).max(0), rows)
    score = ErrorScorer(stats, (weight,)).error(np.zeros(64, np.int32), None, 0.6)
    from mlperf_qx.kernels.quantize import quantize_int8
    from mlperf_qx.quant.scales import scale_from_amax

    s_x, s_w = scale_from_amax(0.6 * float(np.abs(rows).max())), scale_from_amax(float(np.abs(weight).max()))
    approx = ((quantize_int8(rows, s_x, narrow=False) * s_x) @ (quantize_int8(weight, s_w, narrow=True) * s_w)).astype(np.float64)
    exact = (rows @ weight).astype(np.float64)
    sqnr = 10 * np.log10(np.sum(exact ** 2) / np.sum((approx - exact) ** 2))
    cosine = np.sum(approx * exact) / np.sqrt(np.sum(approx ** 2) * np.sum(exact ** 2))
    assert np.isclose(score.sqnr_db, sqnr, rtol=1e-6) and np.isclose(score.cosine, cosine, rtol=1e-9)
    assert score.within_tolerance == within(sqnr, cosine, margin=True)


def test_a_large_set_gives_bounded_rows_that_still_stand_for_every_row():
    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from mlperf_qx.calibration.model_inputs import model_inputs
    from mlperf_qx.calibration.readers import CalibrationSet
    from mlperf_qx.quant.smoothquant import find_candidates
    from mlperf_qx.quant.smoothquant_observe import MAX_ROWS_PER_GROUP, observe_channels

    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4])], [weight])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    samples = {str(i): rng.standard_normal((1, 8, 16)).astype(np.float32) for i in range(900)}
    calib = CalibrationSet(list(samples), lambda i: {"x": samples[i]}, model_inputs(model), "list")
    stats = observe_channels(model, find_candidates(model, set()), calib, show_progress=False)["x"]
    assert stats.rows.shape[0] <= MAX_ROWS_PER_GROUP
    assert np.isclose(stats.weights.sum(), 900 * 8)
    assert np.array_equal(stats.amax, np.max([np.abs(s).max(axis=(0, 1)) for s in samples.values()], axis=0))
