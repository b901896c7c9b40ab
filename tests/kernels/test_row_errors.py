"""smoothquant's scorer kernels equal their numpy references bit for bit. The row errors: the sums are taken in
numpy's pairwise order, so a choice made on them cannot depend on which of the two computed them. The int8
codes: exactly qx's quantization (round half to even, saturation), offset by 128 for the unsigned MatMul."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlperf_qx.kernels.quantize import OFFSET, quantize_int8, scaled_offset_codes, scaled_offset_codes_reference
from mlperf_qx.kernels.row_errors import PAIRWISE_BLOCK, accumulate_row_errors, accumulate_row_errors_reference
from mlperf_qx.kernels.scaled_weights import quantize_scaled, quantize_scaled_reference, row_peaks

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


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 5), lengths, st.integers(0, 3), st.booleans(), st.integers(0, 2**31 - 1))
def test_scaled_integer_row_errors_equal_numpy_bit_for_bit(rows, length, weights, with_side, seed):
    # int32 products of the int8 MatMul, a group's weights side by side: each weight's columns with its own scale.
    rng = np.random.default_rng(seed)
    ends = np.sort(rng.integers(0, length + 1, weights)).tolist() + [length]
    products = rng.integers(-(2**31), 2**31, (rows, length), dtype=np.int64).astype(np.int32)
    scale = float(np.float32(rng.uniform(1e-6, 1e-2))) * float(np.float32(rng.uniform(1e-3, 1.0)))
    exact = products * scale + rng.standard_normal((rows, length)) * 1e-3 * scale * 2**31
    side = rng.standard_normal((rows, length)) * scale * 2**20 if with_side else None
    fast, slow = [np.zeros(rows) for _ in range(3)], [np.zeros(rows) for _ in range(3)]
    for start, stop in zip([0] + ends[:-1], ends):
        accumulate_row_errors(products, exact, *fast, scale, side, slice(start, stop))
        accumulate_row_errors_reference(products, exact, *slow, scale, side, slice(start, stop))
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
    codes, scale = quantize_scaled(weight, factors, narrow)
    expected, expected_scale = quantize_scaled_reference(weight, factors, narrow)
    assert np.array_equal(codes, expected) and scale == expected_scale
    # The scale from the row peaks: the same, with factors that round to subnormals or overflow too.
    assert quantize_scaled(weight, factors, narrow, peaks=row_peaks(weight))[1] == expected_scale
    extreme = factors * np.float32(2.0 ** rng.choice([-126, -120, 0, 100, 120]))
    assert quantize_scaled(weight, extreme, narrow, peaks=row_peaks(weight))[1] == quantize_scaled(weight, extreme, narrow)[1]
    assert np.array_equal(quantize_scaled(weight.T.copy().T, factors, narrow)[0], expected)  # a transposed (Gemm) view
    beside = np.zeros((rows, columns + 3), np.uint8)
    quantize_scaled(weight, factors, narrow, out=beside[:, 2:-1])  # into a group's weights side by side
    assert np.array_equal(beside[:, 2:-1], expected) and not beside[:, :2].any() and not beside[:, -1].any()


def test_scaled_weight_quantization_rounds_ties_to_even():
    weight = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]], np.float32)  # step 1: every other entry a tie
    codes, scale = quantize_scaled(weight, np.ones(1, np.float32))
    assert scale == 1.0 and (codes.astype(int) - OFFSET).tolist() == [[127, 0, 2, 2, 0, -2]]
    assert np.array_equal(codes, quantize_scaled_reference(weight, np.ones(1, np.float32))[0])


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 30), st.integers(1, 40), st.floats(1e-4, 10.0), st.booleans(), st.integers(0, 2**31 - 1))
def test_activation_codes_are_the_int8_kernel_offset(rows, columns, scale, narrow, seed):
    # Halves of the step (ties, rounded to even) and values past saturation, both signs; split-off columns (0).
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, columns)) * 60 * scale).astype(np.float32)
    x.flat[::2] = ((np.arange(x.flat[::2].size) % 281 - 140 + 0.5) * scale).astype(np.float32)
    factors = np.ldexp(1.0, rng.integers(-3, 4, columns)).astype(np.float32)
    factors[rng.random(columns) < 0.2] = 0.0
    codes = scaled_offset_codes(x, factors, np.float32(scale), narrow)
    assert np.array_equal(codes, scaled_offset_codes_reference(x, factors, np.float32(scale), narrow))
    expected = quantize_int8(x * factors, np.float32(scale), narrow).astype(np.int16) + OFFSET
    assert np.array_equal(codes, expected)
