"""smoothquant's measured error of one trial (factors, split, clip) on a group's sampled rows.

A trial is measured lazily, a block of rows at a time (``Measurement``): most trials lose, and the
per-row error is a weighted sum of non-negative per-row terms, so the rows measured so far bound it
from below. Once that bound passes the error a rival measured in full, the trial cannot win, and
its other rows are never multiplied. Every trial that wins is measured in full, to the same bits as
one whole-matrix product gives (the row blocks are checked against it, see ``_blocks_are_exact``),
so the choices and every figure reported are those of measuring everything.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..kernels.quantize import fake_quantize_int8
from ..kernels.row_errors import accumulate_row_errors
from ..kernels.scaled_weights import fake_quantize_scaled
from ..layer_tolerance import within
from .scales import scale_from_amax

# Row blocks: the first FIRST_BLOCK rows, then each block as large as all before it (fewer, larger
# products once a trial is likely to be measured in full). Multiples of 96: of every row unroll an
# sgemm kernel uses (4 to 32), so a block's rows take the kernel they take in the whole product.
FIRST_BLOCK = 96
# The bound, a sum in another order than the full figure's, is trusted past this relative margin
# (orders of magnitude above float64 rounding over any number of rows).
BOUND_MARGIN = 1e-9
WEIGHTS_KEPT = 8  # quantized W*s of the most recent trials: a race revisits each a few times


@dataclass(frozen=True)
class Score:
    """One trial's measured error on a group's sampled rows."""

    per_row: float  # mean over rows of each row's relative squared output error
    sqnr_db: float  # pooled over every output element, as verify's layer_numerics measures
    cosine: float

    @property
    def within_tolerance(self) -> bool:
        return within(self.sqnr_db, self.cosine, margin=True)

    def complete(self) -> "Score":
        return self

    def better_than(self, other: "Score | Measurement", gain: float = 1.0) -> bool:
        """Within verify's layer tolerance beats outside it; then the per-row error, cut by ``gain``."""
        other = other.complete()
        if self.within_tolerance != other.within_tolerance:
            return self.within_tolerance
        return self.per_row < other.per_row * gain


EXACT = Score(0.0, float("inf"), 1.0)


class Measurement:
    """A trial measured as far as a comparison needs: ``complete()`` measures every row;
    ``better_than`` stops as soon as the rows measured prove the trial loses."""

    def __init__(self, scorer: "ErrorScorer", exponents: np.ndarray, split: np.ndarray, clip: float):
        self.scorer, self.exponents, self.split, self.clip = scorer, exponents, split, clip
        rows = scorer.rows.shape[0]
        self.noise, self.dot, self.power = np.zeros(rows), np.zeros(rows), np.zeros(rows)
        self.done = 0  # rows measured
        self.bound = 0.0  # per_row over the rows measured: a lower bound of the whole figure
        self.score: Score | None = EXACT if scorer.row_weights is None else None

    def complete(self) -> Score:
        while self.score is None:
            self._advance()
        return self.score

    def estimate(self) -> float:
        """The per-row error extrapolated from the rows measured (at least one block of them)."""
        if self.score is None and self.done == 0:
            self._advance()
        if self.score is not None:
            return self.score.per_row
        return self.bound / float(self.scorer.row_weights[:self.done].sum())

    def cannot_beat(self, limit: float) -> bool:
        """Whether the rows measured prove per_row > ``limit``; measures more rows until they do,
        or until every row is measured (then False: the caller compares the whole figures)."""
        while self.score is None:
            if self.bound > limit * (1.0 + BOUND_MARGIN):
                return True
            self._advance()
        return False

    def better_than(self, other: "Score | Measurement", gain: float = 1.0) -> bool:
        rival = other.complete()
        # Inside the tolerance, a rival can only be beaten inside it too and on per_row.
        if self.score is None and rival.within_tolerance and self.cannot_beat(rival.per_row * gain):
            return False
        return self.complete().better_than(rival, gain)

    def _advance(self) -> None:
        scorer = self.scorer
        end = scorer.block_end(self.done)
        scorer.measure_rows(self, self.done, end)
        self.done = end
        if end == scorer.rows.shape[0]:
            self.score = scorer.score_of(self.noise, self.dot, self.power)
        else:
            weights = scorer.row_weights[:end]
            self.bound = float(weights @ (self.noise[:end] / scorer.signal[:end]))


_EXACT_BLOCKS: dict[tuple, bool] = {}  # (rows, weight shapes) -> row blocks give the whole product's bits
_EXACT_BLOCKS_LOCK = threading.Lock()


class ErrorScorer:
    """Scores factors and splits of one group on its sampled rows, when x/s and W*s are quantized
    symmetric per tensor (activation scale from the set's per-channel maxima), two ways.
    Per row (the mean of each row's relative squared error) is what is minimised: trained
    transformers put most of a layer's output energy on a few tokens (massive activations), and a
    pooled error would see only those and ignore every other token. Pooled (SQNR and cosine over
    all elements, as verify measures a layer) is a constraint: a clip that helps the ordinary
    tokens may not wreck the massive ones beyond verify's layer tolerance (``layer_tolerance``).
    The FP32 outputs are computed once."""

    def __init__(self, stats, weights: tuple[np.ndarray, ...]):
        self.stats, self.weights = stats, weights
        exact = [stats.rows @ w for w in weights]
        signal = sum(np.sum(e.astype(np.float64) ** 2, axis=1) for e in exact)
        self.usable = signal > 0
        self.signal = signal[self.usable]
        # Every trial compares against these: the FP32 outputs of the usable rows, in float64, once.
        self.exact = [e[self.usable].astype(np.float64) for e in exact]
        self.rows = stats.rows[self.usable]  # rows of no output carry no error: left out of every trial
        row_weights = np.ones(stats.rows.shape[0]) if stats.weights is None else stats.weights
        self.row_weights = row_weights[self.usable] / row_weights[self.usable].sum() if self.usable.any() else None
        # One output buffer per weight, reused by every trial: a fresh R x N array per trial costs
        # the kernel's page faults on each call, as much as the row sums themselves.
        self._outputs = [np.empty(e.shape, np.float32) for e in self.exact]
        self._weights_q: OrderedDict[bytes, list[np.ndarray]] = OrderedDict()
        self._side: tuple[bytes, list[np.ndarray]] | None = None  # the split channels' FP32 outputs
        self._trials: dict[tuple[bytes, float], Measurement] = {}  # a trial asked twice (alphas that round alike)
        self._blocked = _next_end(0, self.rows.shape[0]) < self.rows.shape[0]  # else one block: nothing to cut

    def activation_max(self, exponents: np.ndarray, split: np.ndarray) -> float:
        keep = np.ones(self.stats.amax.shape[0], np.float32)
        keep[split] = 0.0
        return float((self.stats.amax * keep / np.ldexp(1.0, exponents)).max())

    def trial(self, exponents: np.ndarray, split: np.ndarray | None = None, clip: float = 1.0) -> Measurement:
        """The trial, measured only as far as it is asked to be."""
        split = np.zeros(0, np.int64) if split is None else split
        key = (_trial_key(exponents, split), clip)
        if key not in self._trials:
            self._trials[key] = Measurement(self, exponents, split, clip)
        return self._trials[key]

    def error(self, exponents: np.ndarray, split: np.ndarray | None = None, clip: float = 1.0) -> Score:
        return self.trial(exponents, split, clip).complete()

    def block_end(self, start: int) -> int:
        rows = self.rows.shape[0]
        if not self._blocked:
            return rows
        if start == 0:
            self._blocked = _blocks_are_exact(self)
        return _next_end(start, rows) if self._blocked else rows

    def measure_rows(self, trial: Measurement, start: int, end: int) -> None:
        """Adds rows start:end of ``trial``'s per-row sums (x/s and W*s fake-quantized, multiplied)."""
        exponents, split = trial.exponents, trial.split
        keep = np.ones(self.stats.amax.shape[0], np.float32)
        keep[split] = 0.0  # split-off channels: exact (FP32) on the side path, zero in the int8 MatMul
        scale = np.ldexp(1.0, exponents).astype(np.float32)
        s_x = scale_from_amax(trial.clip * self.activation_max(exponents, split))
        x_q = fake_quantize_int8(self.rows[start:end] * (keep / scale), s_x, narrow=False)
        weights_q = self._quantized_weights(exponents, split, scale * keep)
        side = self._side_outputs(split)
        for index, (w_q, exact, output) in enumerate(zip(weights_q, self.exact, self._outputs)):
            approximate = output[start:end]
            np.matmul(x_q, w_q, out=approximate)
            if side is not None:
                approximate += side[index][start:end]
            accumulate_row_errors(approximate, exact[start:end], trial.noise[start:end], trial.dot[start:end],
                                  trial.power[start:end])

    def score_of(self, noise: np.ndarray, dot: np.ndarray, power: np.ndarray) -> Score:
        weights = self.row_weights
        signal, noise_total = float(weights @ self.signal), float(weights @ noise)
        sqnr = float("inf") if noise_total == 0 else 10.0 * np.log10(signal / noise_total)
        norms = np.sqrt(signal * float(weights @ power))
        return Score(float(weights @ (noise / self.signal)), sqnr, float(weights @ dot) / norms if norms else 1.0)

    def _quantized_weights(self, exponents: np.ndarray, split: np.ndarray, factors: np.ndarray) -> list[np.ndarray]:
        """W*s fake-quantized per tensor, for each weight of the group; kept for the last few
        trials (every clip of one factor set, and a race's rivals, ask for them again)."""
        key = _trial_key(exponents, split)
        if key in self._weights_q:
            self._weights_q.move_to_end(key)
        else:
            self._weights_q[key] = [fake_quantize_scaled(w, factors, narrow=True) for w in self.weights]
            if len(self._weights_q) > WEIGHTS_KEPT:
                self._weights_q.popitem(last=False)
        return self._weights_q[key]

    def _side_outputs(self, split: np.ndarray) -> list[np.ndarray] | None:
        """The split-off channels' FP32 outputs over every row, one product per weight as a
        whole-matrix trial computes them (its bits do not depend on the row blocks)."""
        if not split.size:
            return None
        key = np.asarray(split, np.int64).tobytes()
        if self._side is None or self._side[0] != key:
            self._side = (key, [self.rows[:, split] @ w[split] for w in self.weights])
        return self._side[1]


def _blocks_are_exact(scorer: ErrorScorer) -> bool:
    """Whether this machine's BLAS gives rows multiplied a block at a time the bits of the whole
    product (true where its kernels' row unroll divides FIRST_BLOCK); checked once per shape, on
    the group's own rows and weights. Where not, trials are measured whole and nothing is pruned."""
    key = (scorer.rows.shape, tuple(w.shape for w in scorer.weights))
    with _EXACT_BLOCKS_LOCK:
        known = _EXACT_BLOCKS.get(key)
    if known is not None:
        return known
    rows, exact = scorer.rows, True
    for weight in scorer.weights:
        weight = np.ascontiguousarray(weight, np.float32)  # as a trial's quantized W*s is
        whole, blocked = rows @ weight, np.empty((rows.shape[0], weight.shape[1]), np.float32)
        start = 0
        while start < rows.shape[0]:
            end = _next_end(start, rows.shape[0])
            np.matmul(rows[start:end], weight, out=blocked[start:end])
            start = end
        exact = exact and bool(np.array_equal(whole.view(np.uint32), blocked.view(np.uint32)))
    with _EXACT_BLOCKS_LOCK:
        _EXACT_BLOCKS[key] = exact
    return exact


def _next_end(start: int, rows: int) -> int:
    """The end of the row block that starts at ``start`` (see FIRST_BLOCK)."""
    end = start + FIRST_BLOCK
    return rows if end + FIRST_BLOCK > rows else end


def _trial_key(exponents: np.ndarray, split: np.ndarray) -> bytes:
    return np.asarray(exponents, np.int64).tobytes() + b"/" + np.asarray(split, np.int64).tobytes()
