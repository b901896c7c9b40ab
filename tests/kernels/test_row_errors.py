"""smoothquant's scorer kernels equal their numpy references bit for bit. The row errors: the sums are taken in
numpy's pairwise order, so a choice made on them cannot depend on which of the two computed them."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlperf_qx.kernels.row_errors import PAIRWISE_BLOCK, accumulate_row_errors, accumulate_row_errors_reference
from mlperf_qx.kernels.scaled_weights import fake_quantize_scaled, fake_quantize_scaled_reference

# Row lengths around every branch of the pairwise sum: under 8, one block, and the halvings past it.
lengths = st.one_of(st.integers(1, 2 * PAIRWISE_BLOCK + 20), st.sampled_from([384, 768, 1152, 1536, 3072, 4099]))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.integers(1, 6), lengths, st.floats(-3, 3), st.integers(0, 2**31 - 1))
def test_row_errors_equal_numpy_bit_for_bit(rows, length, decades, seed):
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(decades - 2, decades + 2, (rows, length))
    approximate = (rng.standard_normal((rows, length)) * magnitude).astype(np.float32)
    exact = approximate.astype(np.float64) + rng.standard_normal((rows, length)) * magnitude * 1e-2
    start = [rng.standard_normal(rows) for _ in range(3)]  # the sums are added to what is there
    fast, slow = [s.copy() for s in start], [s.copy() for s in start]
    accumulate_row_errors(approximate, exact, *fast)
    accumulate_row_errors_reference(approximate, exact, *slow)
    for got, expected in zip(fast, slow):
        assert np.array_equal(got, expected)


def test_row_errors_measure_the_difference():
    approximate = np.array([[1.0, 2.0, 3.0]], np.float32)
    exact = np.array([[1.0, 2.5, 1.0]])
    noise, dot, power = np.zeros(1), np.zeros(1), np.zeros(1)
    accumulate_row_errors(approximate, exact, noise, dot, power)
    assert (noise[0], dot[0], power[0]) == (0.25 + 4.0, 1.0 + 5.0 + 3.0, 14.0)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(-6, 6), st.booleans(), st.integers(0, 2**31 - 1))
def test_scaled_weight_quantization_equals_numpy_bit_for_bit(rows, columns, spread, narrow, seed):
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((rows, columns)) * 10.0 ** rng.uniform(-3, 1)).astype(np.float32)
    # Exact halves of the step (ties, rounded to even) in some entries: a level the weight's largest value sets.
    weight.flat[::3] = np.float32(np.abs(weight).max() / 127.0) * (np.arange(weight.flat[::3].size) % 9 - 4.5)
    factors = np.ldexp(1.0, rng.integers(-abs(spread), abs(spread) + 1, rows)).astype(np.float32)
    factors[rng.random(rows) < 0.2] = 0.0  # split-off channels
    assert np.array_equal(fake_quantize_scaled(weight, factors, narrow),
                          fake_quantize_scaled_reference(weight, factors, narrow))
    assert np.array_equal(fake_quantize_scaled(weight.T.copy().T, factors, narrow),
                          fake_quantize_scaled_reference(weight, factors, narrow))  # a transposed (Gemm) view


def test_scaled_weight_quantization_rounds_ties_to_even():
    weight = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]], np.float32)  # step 1: every other entry a tie
    quantized = fake_quantize_scaled(weight, np.ones(1, np.float32))
    assert quantized.tolist() == [[127.0, 0.0, 2.0, 2.0, -0.0, -2.0]]
    assert np.array_equal(quantized, fake_quantize_scaled_reference(weight, np.ones(1, np.float32)))
