"""smoothquant's scorer measures the quantized layer through an exact int8 MatMul: its scores equal a float64
computation of the same fake-quantized product (x_q @ W_q + the FP32 side path) to float64 rounding, at the
extremes (saturating codes, ties, a massive channel split off, weights of different scales side by side)."""

import numpy as np
import pytest

from mlperf_qx.kernels.quantize import OFFSET, quantize_int8_reference
from mlperf_qx.quant.integer_matmul import MAX_DEPTH, integer_matmul, integer_matmul_reference
from mlperf_qx.quant.scales import scale_from_amax
from mlperf_qx.quant.smoothquant import ErrorScorer
from mlperf_qx.quant.smoothquant_observe import ChannelStats


@pytest.mark.parametrize("depth", [1, 7, 768, 3072])
def test_integer_matmul_is_exact_at_the_extremes(depth):
    rng = np.random.default_rng(depth)
    extremes = np.array([0, 1, 127, 128, 129, 254, 255], np.uint8)
    cases = [(np.zeros((5, depth), np.uint8), np.zeros((depth, 9), np.uint8)),  # -128 * -128 everywhere
             (np.full((5, depth), 255, np.uint8), np.full((depth, 9), 255, np.uint8)),
             (np.full((5, depth), 255, np.uint8), np.where(np.arange(depth)[:, None] % 2, 0, 255).astype(np.uint8)
              * np.ones((1, 9), np.uint8)),  # pairs of opposite extremes: what saturates 16-bit pair sums
             (rng.choice(extremes, (33, depth)), rng.choice(extremes, (depth, 17)))]
    for a, b in cases:
        assert np.array_equal(integer_matmul(a, b), integer_matmul_reference(a, b))
    assert integer_matmul(cases[0][0], cases[0][1])[0, 0] == depth * 128 * 128


def test_integer_matmul_past_int32_sums_over_slices():
    a, b = np.zeros((2, MAX_DEPTH + 5), np.uint8), np.zeros((MAX_DEPTH + 5, 3), np.uint8)  # each product 128 * 128
    assert integer_matmul(a, b).tolist() == [[(MAX_DEPTH + 5) * 128 * 128] * 3] * 2  # past 2**31


def _reference_score(scorer, rows, row_weights, weights, exponents, split, clip):
    """The same trial in float64 numpy: fake-quantized x/s and W*s multiplied, the side path added."""
    keep = np.ones(rows.shape[1], np.float32)
    keep[split] = 0.0
    scale = np.ldexp(1.0, exponents).astype(np.float32)
    s_x = scale_from_amax(clip * scorer.activation_max(exponents, split))
    x_q = quantize_int8_reference(rows * (keep / scale), s_x).astype(np.float64) * np.float64(s_x)
    noise, dot, power, signal = (np.zeros(rows.shape[0]) for _ in range(4))
    for w in weights:
        w_s = w * (scale * keep)[:, None]
        s_w = scale_from_amax(float(np.abs(w_s).max()))
        w_q = quantize_int8_reference(w_s, s_w, narrow=True).astype(np.float64) * np.float64(s_w)
        approx = x_q @ w_q + rows[:, split].astype(np.float64) @ w[split].astype(np.float64)
        exact = (rows @ w).astype(np.float64)
        noise += np.sum((approx - exact) ** 2, 1)
        dot += np.sum(approx * exact, 1)
        power += np.sum(approx ** 2, 1)
        signal += np.sum(exact ** 2, 1)
    p = row_weights / row_weights.sum()
    return (p @ (noise / signal), 10 * np.log10((p @ signal) / (p @ noise)), (p @ dot) / np.sqrt((p @ signal) * (p @ power)))


def test_scores_equal_a_float64_reference_of_the_same_quantized_product():
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((96, 80)).astype(np.float32)
    rows[:, 5] *= 300.0  # a massive channel (split off in some trials)
    rows[3] *= 50.0  # a massive token
    rows[10, :] = 0.37  # equal values: ties of the grid for some scales
    # Weights of very different scales side by side in one MatMul (a QKV group), each its own scale.
    weights = tuple((rng.standard_normal((80, n)) * m).astype(np.float32) for n, m in ((24, 1.0), (24, 1e-3), (40, 30.0)))
    row_weights = rng.uniform(0.5, 4.0, 96)
    stats = ChannelStats(np.abs(rows).max(0), rows, row_weights)
    scorer = ErrorScorer(stats, weights)
    for exponents, split, clip in [(np.zeros(80, np.int32), np.zeros(0, np.int64), 1.0),
                                   (rng.integers(-6, 7, 80).astype(np.int32), np.zeros(0, np.int64), 1.0),
                                   (rng.integers(-6, 7, 80).astype(np.int32), np.array([5]), 0.25),  # saturating
                                   (np.zeros(80, np.int32), np.array([5, 17, 40]), 0.6)]:
        score = scorer.error(exponents, split, clip)
        per_row, sqnr, cosine = _reference_score(scorer, rows, row_weights, weights, exponents, split, clip)
        assert abs(score.per_row - per_row) <= 1e-12 * per_row
        assert abs(score.sqnr_db - sqnr) <= 1e-10 * abs(sqnr)
        assert abs(score.cosine - cosine) <= 1e-13


def test_codes_saturate_where_the_clip_cuts():
    rows = np.array([[1000.0, -1000.0, 1.0, -0.5]], np.float32)
    stats = ChannelStats(np.array([1000.0, 1000.0, 1.0, 0.5], np.float32), rows)
    weight = np.eye(4, dtype=np.float32)
    clipped = ErrorScorer(stats, (weight,)).error(np.zeros(4, np.int32), None, 0.25)
    s_x, s_w = np.float64(scale_from_amax(250.0)), np.float64(scale_from_amax(1.0))
    # Saturated both ways; 1 / s_x = 0.508 rounds to 1, 0.5 / s_x = 0.254 to 0; the weight's 1 is 127 steps.
    expected = np.array([127, -128, 1, 0]) * s_x * (127 * s_w)
    noise = np.sum((expected - rows[0].astype(np.float64)) ** 2)
    assert np.isclose(clipped.per_row, noise / np.sum(rows[0].astype(np.float64) ** 2), rtol=1e-12)
    assert OFFSET == 128
