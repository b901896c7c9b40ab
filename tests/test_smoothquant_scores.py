"""smoothquant's bounded trials: a trial told what it must beat stops once its measured rows prove
it cannot, and the group's choice is the same as when every trial is measured whole."""

import numpy as np
import pytest

from mlperf_qx.quant.smoothquant import Candidate, choose
from mlperf_qx.quant.smoothquant_observe import ChannelStats
from mlperf_qx.quant.smoothquant_scores import ROW_BLOCK, WORSE, Beat, ErrorScorer


def _group(seed: int, channels: int = 96, outputs: int = 80):
    """Rows of a trained-transformer-like layer input: a few outlier channels, a few massive
    tokens, weighted rows as the observing pass samples them (most stand for many)."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((4 * ROW_BLOCK + 37, channels)).astype(np.float32)
    rows[:, rng.choice(channels, 3, replace=False)] *= rng.uniform(8, 60, 3).astype(np.float32)
    rows[rng.choice(rows.shape[0], 6, replace=False)] *= 25.0
    weights = np.where(rng.random(rows.shape[0]) < 0.3, 1.0, rng.uniform(5, 30, rows.shape[0]))
    stats = ChannelStats(np.abs(rows).max(0), rows, weights)
    linear = tuple(rng.standard_normal((channels, outputs)).astype(np.float32) * rng.uniform(0.2, 2.0)
                   for _ in range(1 + seed % 2))
    return Candidate("x", tuple(f"mm{k}" for k in range(len(linear))), "mul", linear), stats


@pytest.mark.parametrize("seed", range(6))
def test_bounded_trials_choose_exactly_what_whole_trials_choose(seed):
    candidate, stats = _group(seed)
    assert choose(candidate, stats, bound=True) == choose(candidate, stats, bound=False)


def test_bounded_trials_measure_fewer_rows():
    measured = {}
    for bound in (False, True):
        total = 0
        for seed in range(4):
            candidate, stats = _group(seed)
            scorers = []
            original = ErrorScorer.__init__

            def record(self, *args, original=original, scorers=scorers):
                original(self, *args)
                scorers.append(self)

            ErrorScorer.__init__ = record
            try:
                choose(candidate, stats, bound=bound)
            finally:
                ErrorScorer.__init__ = original
            total += sum(s.rows_measured for s in scorers)
        measured[bound] = total
    assert measured[True] < 0.9 * measured[False]


def test_a_trial_that_cannot_beat_stops_and_is_measured_again_for_a_looser_beat():
    candidate, stats = _group(1)
    scorer = ErrorScorer(stats, candidate.weights)
    channels = stats.amax.size
    identity = np.zeros(channels, np.int32)
    rough = identity.copy()
    rough[np.argsort(-stats.amax)[:3]] = -4  # the outlier channels 16x larger: every other loses resolution
    best = scorer.error(identity)
    whole = ErrorScorer(stats, candidate.weights).error(rough)
    assert not whole.better_than(best)
    before = scorer.rows_measured
    assert scorer.error(rough, beat=Beat(best)) is WORSE
    assert scorer.rows_measured - before < scorer.rows.shape[0]  # stopped before its last rows
    # Asked again where it must only beat a far worse score, it is measured whole, and exactly.
    assert scorer.error(rough, beat=Beat(whole, gain=10.0)) == whole
