"""smoothquant's lazily measured trials: measured a block of rows at a time, a trial's figures are
those of one whole-matrix product, bit for bit; a trial proved worse on part of its rows is worse
in full; and a choice made with trials cut short is the choice made measuring every row."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from mlperf_qx.kernels.quantize import fake_quantize_int8
from mlperf_qx.kernels.row_errors import accumulate_row_errors
from mlperf_qx.kernels.scaled_weights import fake_quantize_scaled
from mlperf_qx.quant import smoothquant_score
from mlperf_qx.quant.scales import scale_from_amax
from mlperf_qx.quant.smoothquant import Candidate, ChannelStats, choose, exponents_for, weight_ranges
from mlperf_qx.quant.smoothquant_score import ErrorScorer, Score


def _group(seed: int, rows: int = 500, channels: int = 48, outputs: tuple[int, ...] = (40, 24)):
    """Token rows with a few outlier channels and massive rows, as trained transformers have."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, channels)).astype(np.float32)
    x[:, rng.choice(channels, 3, replace=False)] *= rng.uniform(8, 60, 3).astype(np.float32)
    x[rng.choice(rows, 6, replace=False)] *= 30.0
    weights = tuple(rng.standard_normal((channels, n)).astype(np.float32) for n in outputs)
    row_weights = np.where(rng.random(rows) < 0.3, 1.0, 20.0)
    return ChannelStats(np.abs(x).max(0), x, row_weights), weights


def _whole_matrix_score(scorer: ErrorScorer, exponents, split, clip) -> Score:
    """The trial measured as before blocks: one product over every row (the reference)."""
    keep = np.ones(scorer.stats.amax.shape[0], np.float32)
    keep[split] = 0.0
    scale = np.ldexp(1.0, exponents).astype(np.float32)
    x_q = fake_quantize_int8(scorer.rows * (keep / scale), scale_from_amax(clip * scorer.activation_max(exponents, split)))
    noise, dot, power = (np.zeros(scorer.rows.shape[0]) for _ in range(3))
    for w, exact in zip(scorer.weights, scorer.exact):
        approximate = x_q @ fake_quantize_scaled(w, scale * keep, narrow=True)
        if split.size:
            approximate += scorer.rows[:, split] @ w[split]
        accumulate_row_errors(approximate, exact, noise, dot, power)
    return scorer.score_of(noise, dot, power)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.sampled_from([None, 0.3, 0.6, 0.9]), st.sampled_from([0, 1, 3]),
       st.sampled_from([1.0, 0.6]))
def test_a_trial_measured_in_blocks_equals_one_product_bit_for_bit(seed, alpha, splits, clip):
    stats, weights = _group(seed)
    scorer = ErrorScorer(stats, weights)
    split = np.sort(np.argsort(-stats.amax, kind="stable")[:splits]).astype(np.int64)
    kept = stats.amax.copy()
    kept[split] = 0.0
    exponents = np.zeros(kept.size, np.int32) if alpha is None else exponents_for(kept, weight_ranges(weights), alpha)
    with threadpool_limits(1, "blas"):
        trial = scorer.trial(exponents, split, clip)
        trial.estimate()  # one block first, then the rest
        assert trial.done < scorer.rows.shape[0] or not smoothquant_score._EXACT_BLOCKS.get(
            (scorer.rows.shape, tuple(w.shape for w in weights)), True)
        assert trial.complete() == _whole_matrix_score(scorer, exponents, split, clip)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.2, 0.5, 0.8]), st.sampled_from([0.4, 0.7, 1.0]))
def test_a_trial_proved_worse_on_part_of_its_rows_is_worse_in_full(seed, first, second):
    stats, weights = _group(seed)
    wmax = weight_ranges(weights)
    with threadpool_limits(1, "blas"):
        rival = ErrorScorer(stats, weights).error(exponents_for(stats.amax, wmax, first))
        trial = ErrorScorer(stats, weights).trial(exponents_for(stats.amax, wmax, second))
        proved = trial.cannot_beat(rival.per_row)
        assert proved == (trial.score is None)  # proved only while rows are left unmeasured
        assert trial.complete().per_row > rival.per_row or not proved


@pytest.mark.parametrize("seed", range(4))
def test_choices_with_trials_cut_short_equal_measuring_every_row(seed, monkeypatch):
    stats, weights = _group(100 + seed, rows=700)
    candidate = Candidate("x", ("a", "b"), "mul", weights)
    trials = []
    ask = ErrorScorer.trial

    def recorded(self, *args):
        trials.append(ask(self, *args))
        return trials[-1]

    with threadpool_limits(1, "blas"):
        monkeypatch.setattr(ErrorScorer, "trial", recorded)
        lazy = choose(candidate, stats)
        cut_short = sum(t.score is None for t in trials)
        monkeypatch.setattr(smoothquant_score, "FIRST_BLOCK", 10**9)  # every trial measured whole
        whole = choose(candidate, stats)
    assert (lazy.group, lazy.clip, lazy.clip_amax, lazy.error_before, lazy.error_after) == (
        whole.group, whole.clip, whole.clip_amax, whole.error_before, whole.error_after)
    assert cut_short > 0  # some trials were proved worse on part of their rows


def test_where_row_blocks_would_change_the_bits_every_trial_is_measured_whole(monkeypatch):
    stats, weights = _group(7, rows=400)
    candidate = Candidate("x", ("a",), "mul", weights[:1])
    with threadpool_limits(1, "blas"):
        expected = choose(candidate, stats)
        monkeypatch.setattr(smoothquant_score, "_blocks_are_exact", lambda scorer: False)
        scorer = ErrorScorer(stats, weights[:1])
        trial = scorer.trial(np.zeros(stats.amax.size, np.int32))
        trial.estimate()
        assert trial.score is not None  # no block of rows alone: the whole product at once
        got = choose(candidate, stats)
    assert (got.group, got.clip, got.error_after) == (expected.group, expected.clip, expected.error_after)
