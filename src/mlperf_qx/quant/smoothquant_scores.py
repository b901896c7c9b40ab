"""SmoothQuant's measured error of one group under a trial (factors, outlier split, clip).

A group's trials are compared, never used for their own sake: most only have to lose. So a trial
may be given the score it must beat (``Beat``); its rows are then measured a block at a time,
heaviest first, and the trial stops as soon as the rows measured prove it cannot beat that score
(``WORSE``): the per-row error is a weighted sum of non-negative terms, so the rows measured bound
it from below, and their noise bounds the pooled SQNR from above. A trial that is not stopped is
measured on every row and scored exactly as without a bound (the same sums in the same order), so
every comparison the choice makes, and the choice itself, is the same; on all-mpnet-base-v2 about
half the integer MatMul work is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels.quantize import scaled_offset_codes
from ..kernels.row_errors import accumulate_row_errors
from ..kernels.scaled_weights import quantize_scaled, row_peaks
from ..layer_tolerance import CHOICE_SQNR_MARGIN_DB, MIN_LAYER_SQNR_DB, within
from .integer_matmul import integer_matmul
from .scales import scale_from_amax
from .smoothquant_observe import ChannelStats

ROW_BLOCK = 128  # rows measured between two checks of the bound (~10 % of a block's time packs the weights)
BOUND_SLACK = 1e-9  # relative: far above the rounding of the sums, so a stop is never a rounding artefact


@dataclass(frozen=True)
class Score:
    """One trial's measured error on a group's sampled rows."""

    per_row: float  # mean over rows of each row's relative squared output error
    sqnr_db: float  # pooled over every output element, as verify's layer_numerics measures
    cosine: float

    @property
    def within_tolerance(self) -> bool:
        return within(self.sqnr_db, self.cosine, margin=True)

    def better_than(self, other: "Score", gain: float = 1.0) -> bool:
        """Within verify's layer tolerance beats outside it; then the per-row error, cut by ``gain``."""
        if self.within_tolerance != other.within_tolerance:
            return self.within_tolerance
        return self.per_row < other.per_row * gain


EXACT = Score(0.0, float("inf"), 1.0)
# A trial stopped once it could not beat its ``Beat``: worse than every measured score, so no
# comparison picks it (it is only ever compared where it has lost already).
WORSE = Score(float("inf"), float("-inf"), -1.0)


@dataclass(frozen=True)
class Beat:
    """What a trial must beat to matter: ``score.better_than(other, gain)`` with this ``other``."""

    other: Score
    gain: float = 1.0

    def lost(self, per_row_at_least: float, sqnr_db_at_most: float) -> bool:
        """True when a trial whose per-row error is at least ``per_row_at_least`` and whose SQNR is
        at most ``sqnr_db_at_most`` cannot be ``better_than(other, gain)``: outside the tolerance
        for sure (when ``other`` is inside it, its tolerance does not matter) and no lower error."""
        threshold = self.other.per_row * self.gain
        if not per_row_at_least > threshold * (1.0 + BOUND_SLACK):
            return False
        return self.other.within_tolerance or sqnr_db_at_most < MIN_LAYER_SQNR_DB + CHOICE_SQNR_MARGIN_DB - BOUND_SLACK


class ErrorScorer:
    """Scores factors and splits of one group on its sampled rows, when x/s and W*s are quantized
    symmetric per tensor (activation scale from the set's per-channel maxima), two ways.
    Per row (the mean of each row's relative squared error) is what is minimised: trained
    transformers put most of a layer's output energy on a few tokens (massive activations), and a
    pooled error would see only those and ignore every other token. Pooled (SQNR and cosine over
    all elements, as verify measures a layer) is a constraint: a clip that helps the ordinary
    tokens may not wreck the massive ones beyond verify's layer tolerance (``layer_tolerance``).
    The FP32 outputs are computed once. The quantized outputs are exact: the int8 codes of x/s
    and of the group's weights side by side go through one integer MatMul (``integer_matmul``),
    scaled in float64 (s_x * s_w is exact there) within the row-error kernel."""

    def __init__(self, stats: ChannelStats, weights: tuple[np.ndarray, ...]):
        self.stats, self.weights = stats, weights
        exact = [(stats.rows @ w).astype(np.float64) for w in weights]  # FP32 outputs, widened once
        signal = sum(np.sum(e ** 2, axis=1) for e in exact)
        self.usable = signal > 0
        self.signal = signal[self.usable]
        self.rows = stats.rows[self.usable]  # rows of no output carry no error: left out of every trial
        row_weights = np.ones(stats.rows.shape[0]) if stats.weights is None else stats.weights
        self.row_weights = row_weights[self.usable] / row_weights[self.usable].sum() if self.usable.any() else None
        # Rows are measured heaviest first (the evenly sampled rows stand for many, the top rows for
        # one), so a losing trial is proven lost after as few rows as possible. Everything a row
        # needs is held in that order; the sums are put back in row order before they are reduced.
        self._order = np.argsort(-row_weights[self.usable], kind="stable")
        # The FP32 outputs of the usable rows, in float64, the group's weights side by side as in its one MatMul.
        self.exact = np.concatenate(exact, axis=1)[self.usable][self._order]
        self._rows_in_order = self.rows[self._order]
        if self.row_weights is not None:  # what every trial's bound and score reduce with
            self._total_signal = float(self.row_weights @ self.signal)
            self._weights_in_order, self._signal_in_order = self.row_weights[self._order], self.signal[self._order]
        self._peaks = [row_peaks(w) for w in weights]  # each trial's weight scale from these, not a pass over W
        # Where each weight's outputs lie in the group's one MatMul (its weights side by side).
        ends = np.cumsum([w.shape[1] for w in weights])
        self._columns = [slice(int(end) - w.shape[1], int(end)) for w, end in zip(weights, ends)]
        # (exponents, split) -> the codes of W*s side by side and each weight's scale, the last one
        # only: every clip of one factor set asks for it in a row, and groups scored side by side
        # must not each hold every trial's.
        self._weights_q: tuple[bytes, np.ndarray, list[np.float32]] | None = None
        # split -> the split-off channels' FP32 side path (in float64, in measuring order), the same for every alpha.
        self._side: tuple[bytes, np.ndarray] | None = None
        # trial -> its score, or (for a trial stopped) the bounds it was stopped at: asked again
        # with a Beat those bounds still lose to, it is WORSE again; else it is measured whole.
        self._scores: dict[tuple[bytes, float], Score | tuple[float, float]] = {}
        self.rows_measured = 0  # rows x trials actually multiplied (the bound's saving, for tests and benchmarks)

    def activation_max(self, exponents: np.ndarray, split: np.ndarray) -> float:
        keep = np.ones(self.stats.amax.shape[0], np.float32)
        keep[split] = 0.0
        return float((self.stats.amax * keep / np.ldexp(1.0, exponents)).max())

    def _quantized_weights(self, exponents: np.ndarray, split: np.ndarray,
                           factors: np.ndarray) -> tuple[np.ndarray, list[np.float32]]:
        """W*s quantized per tensor, for each weight of the group, as codes side by side: the same
        for every clip of one (exponents, split), so computed once for them (clips are tried in a row)."""
        key = _trial_key(exponents, split)
        if self._weights_q is None or self._weights_q[0] != key:
            codes = np.empty((factors.shape[0], self._columns[-1].stop), np.uint8)
            scales = [quantize_scaled(w, factors, narrow=True, out=codes[:, columns], peaks=peaks)[1]
                      for w, columns, peaks in zip(self.weights, self._columns, self._peaks)]
            self._weights_q = (key, codes, scales)
        return self._weights_q[1], self._weights_q[2]

    def _side_path(self, split: np.ndarray) -> np.ndarray | None:
        """rows[:, split] @ W[split] for the group's weights side by side, in float64, in measuring order."""
        if not split.size:
            return None
        key = np.asarray(split, np.int64).tobytes()
        if self._side is None or self._side[0] != key:
            weights = np.concatenate([w[split] for w in self.weights], axis=1).astype(np.float64)
            side = self.rows[:, split].astype(np.float64) @ weights  # in row order: the same GEMM as ever
            self._side = (key, side[self._order])
        return self._side[1]

    def error(self, exponents: np.ndarray, split: np.ndarray | None = None, clip: float = 1.0,
              beat: Beat | None = None) -> Score:
        """The trial's score; WORSE if it cannot beat ``beat`` (then possibly measured on part of the rows)."""
        split = np.zeros(0, np.int64) if split is None else split
        key = (_trial_key(exponents, split), clip)
        known = self._scores.get(key)
        if isinstance(known, Score):
            return known
        if known is not None and beat is not None and beat.lost(*known):
            return WORSE
        measured = self._measure(exponents, split, clip, beat)
        self._scores[key] = measured
        return WORSE if isinstance(measured, tuple) else measured

    def _measure(self, exponents: np.ndarray, split: np.ndarray, clip: float,
                 beat: Beat | None) -> Score | tuple[float, float]:
        """The score, or (per-row error at least, SQNR at most) once the rows measured lose to ``beat``."""
        if self.row_weights is None:
            return EXACT
        keep = np.ones(self.stats.amax.shape[0], np.float32)
        keep[split] = 0.0  # split-off channels: exact (FP32) on the side path, zero in the int8 MatMul
        scale = np.ldexp(1.0, exponents).astype(np.float32)
        s_x = scale_from_amax(clip * self.activation_max(exponents, split))
        w_codes, w_scales = self._quantized_weights(exponents, split, scale * keep)
        side = self._side_path(split)
        rows = self.rows.shape[0]
        noise, dot, power = (np.zeros(rows) for _ in range(3))  # in measuring order
        weights, signal = self._weights_in_order, self._signal_in_order
        per_row_so_far = noise_so_far = 0.0
        for start in range(0, rows, ROW_BLOCK):
            block = slice(start, min(start + ROW_BLOCK, rows))
            x_codes = scaled_offset_codes(self._rows_in_order[block], keep / scale, s_x, narrow=False)
            products = integer_matmul(x_codes, w_codes)
            self.rows_measured += block.stop - block.start
            for columns, s_w in zip(self._columns, w_scales):
                accumulate_row_errors(products, self.exact[block], noise[block], dot[block], power[block],
                                      np.float64(s_x) * np.float64(s_w), None if side is None else side[block],
                                      columns)
            if beat is None or block.stop == rows:
                continue
            per_row_so_far += float(weights[block] @ (noise[block] / signal[block]))
            noise_so_far += float(weights[block] @ noise[block])
            sqnr_at_most = math.inf if noise_so_far == 0 else 10.0 * math.log10(self._total_signal / noise_so_far)
            if beat.lost(per_row_so_far, sqnr_at_most):
                return per_row_so_far, sqnr_at_most
        # Back in row order, then reduced exactly as without a bound.
        for sums in (noise, dot, power):
            sums[self._order] = sums.copy()
        weights = self.row_weights
        signal, noise_total = self._total_signal, float(weights @ noise)
        sqnr = float("inf") if noise_total == 0 else 10.0 * np.log10(signal / noise_total)
        norms = np.sqrt(signal * float(weights @ power))
        return Score(float(weights @ (noise / self.signal)), sqnr, float(weights @ dot) / norms if norms else 1.0)


def _trial_key(exponents: np.ndarray, split: np.ndarray) -> bytes:
    return np.asarray(exponents, np.int64).tobytes() + b"/" + np.asarray(split, np.int64).tobytes()
