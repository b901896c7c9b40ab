"""SmoothQuant factors, chosen from the calibration set.

For the linear layers that read one activation x (a group), the per-input-channel factor is
s_j = max|x_j|**alpha / max|W_j,:|**(1 - alpha)   (Xiao et al., SmoothQuant, 2023),
rounded to a power of two (see ``equalization.py`` for why). alpha is chosen per group by measured
error, not fixed: on rows of x sampled from the calibration set, alphas (and no rescaling at all)
are tried, x/s and W*s are quantized symmetric per tensor as qx will quantize them, and the alpha
whose layer outputs are closest to FP32 wins.

A single channel far above the rest (trained transformers have a few: 71 against a median of 1.8
in all-mpnet-base-v2's FFN inputs) sets the per-tensor scale for every other channel, whatever s
does (moved into the weights, it sets their scale instead). Such channels are split off: zero in
the int8 MatMul, computed by a small FP32 MatMul on the side (LLM.int8()'s decomposition), when
the measured error says it pays: 1, 2, 4 or 8 channels, each step taken only if it cuts the error
by a fifth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ..ir.graph_edit import constant_array
from ..kernels.quantize import scaled_offset_codes
from ..kernels.row_errors import accumulate_row_errors
from ..kernels.scaled_weights import quantize_scaled, row_peaks
from ..layer_tolerance import within
from .equalization import SmoothGroup, balancing_exponents, linear_weight, outlier_join
from .integer_matmul import integer_matmul
from .scales import scale_from_amax
from .smoothquant_observe import ChannelStats

COARSE_ALPHAS = (0.3, 0.5, 0.7, 0.9)
SPLITS = (0, 1, 2, 4, 8)  # outlier channels split off to an FP32 side path (most extreme |x| first)
SPLIT_GAIN = 0.8  # a larger split must cut the measured error by 20 % to be taken
# Thresholds below the maximum tried for the MatMuls' input, as shares of it; one is taken only if
# it cuts the measured layer error by 5 % (a per-tensor method choice: minmax where the outliers
# carry the signal, a clip where rounding of the bulk costs more).
CLIPS = (0.8, 0.6, 0.45, 0.35, 0.25)
CLIP_GAIN = 0.95


@dataclass(frozen=True)
class Candidate:
    """A group that may be smoothed: its input, its MatMuls and how 1/s would be applied."""

    input: str
    consumers: tuple[str, ...]
    inverse: str
    weights: tuple[np.ndarray, ...]
    splittable: bool = True  # False: a layer's output ends the graph, so no side path can be added back


@dataclass
class GroupChoice:
    group: SmoothGroup | None  # None: no rescaling measured best
    error_before: Score  # of the group as it is (no rescaling, no clip)
    error_after: Score
    clip: float = 1.0  # activation threshold as a share of the (smoothed) maximum, measured best
    clip_amax: float | None = None  # that threshold, in the units of the MatMuls' input
    input: str = ""  # the group's input tensor (before any rescaling)


def find_candidates(model: ir.Model, skip: set[str]) -> list[Candidate]:
    """Every activation read by linear layers with a constant 2-D weight (MatMul, or Gemm without
    transA); node names in ``skip`` are left alone: excluded or kept FP32."""
    found: dict[str, list[tuple[ir.Node, np.ndarray]]] = {}
    for node in model.graph:
        if node.name in skip:
            continue
        weight = linear_weight(node)
        x = node.inputs[0] if weight is not None else None
        if x is None or constant_array(x) is not None:
            continue
        if x.dtype not in (ir.DataType.FLOAT, None) or weight.dtype != np.float32:
            continue
        found.setdefault(x.name, []).append((node, weight))
    candidates = []
    for name, linears in found.items():
        nodes = [node for node, _ in linears]
        x = nodes[0].inputs[0]
        readers = {use.node.name for use in x.uses()}
        producer = x.producer()
        foldable = (producer is not None and producer.op_type == "LayerNormalization" and not x.is_graph_output()
                    and readers == {n.name for n in nodes} and _constant_params(producer))
        candidates.append(Candidate(name, tuple(n.name for n in nodes), "layernorm" if foldable else "mul",
                                    tuple(weight for _, weight in linears),
                                    not any(outlier_join(n).is_graph_output() for n in nodes)))
    return candidates


def _constant_params(norm: ir.Node) -> bool:
    return all(constant_array(norm.inputs[i]) is not None for i in (1, 2) if i < len(norm.inputs) and norm.inputs[i] is not None)


def weight_ranges(weights: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per input channel, max |W_j,:| over the group's weights (wmax_j)."""
    return np.max([np.abs(w).max(axis=1) for w in weights], axis=0)


def exponents_for(amax: np.ndarray, wmax: np.ndarray, alpha: float) -> np.ndarray:
    """Power-of-two exponents of s_j = amax_j**alpha / wmax_j**(1 - alpha); 0 where a side is 0."""
    return balancing_exponents(amax, wmax, alpha)


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
        # Every trial compares against these: the FP32 outputs of the usable rows, in float64, the
        # group's weights side by side as in its one MatMul.
        self.exact = np.concatenate(exact, axis=1)
        if not self.usable.all():
            self.exact = self.exact[self.usable]
        self.rows = stats.rows[self.usable]  # rows of no output carry no error: left out of every trial
        row_weights = np.ones(stats.rows.shape[0]) if stats.weights is None else stats.weights
        self.row_weights = row_weights[self.usable] / row_weights[self.usable].sum() if self.usable.any() else None
        self._peaks = [row_peaks(w) for w in weights]  # each trial's weight scale from these, not a pass over W
        # Where each weight's outputs lie in the group's one MatMul (its weights side by side).
        ends = np.cumsum([w.shape[1] for w in weights])
        self._columns = [slice(int(end) - w.shape[1], int(end)) for w, end in zip(weights, ends)]
        # (exponents, split) -> the codes of W*s side by side and each weight's scale, the last one
        # only: every clip of one factor set asks for it in a row, and groups scored side by side
        # must not each hold every trial's.
        self._weights_q: tuple[bytes, np.ndarray, list[np.float32]] | None = None
        # split -> the split-off channels' FP32 side path (in float64), the same for every alpha.
        self._side: tuple[bytes, np.ndarray] | None = None
        self._scores: dict[tuple[bytes, float], Score] = {}  # a trial asked twice (alphas that round alike)

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
        """rows[:, split] @ W[split] for the group's weights side by side, in float64."""
        if not split.size:
            return None
        key = np.asarray(split, np.int64).tobytes()
        if self._side is None or self._side[0] != key:
            weights = np.concatenate([w[split] for w in self.weights], axis=1).astype(np.float64)
            self._side = (key, self.rows[:, split].astype(np.float64) @ weights)
        return self._side[1]

    def error(self, exponents: np.ndarray, split: np.ndarray | None = None, clip: float = 1.0) -> Score:
        split = np.zeros(0, np.int64) if split is None else split
        key = (_trial_key(exponents, split), clip)
        if key not in self._scores:
            self._scores[key] = self._measure(exponents, split, clip)
        return self._scores[key]

    def _measure(self, exponents: np.ndarray, split: np.ndarray, clip: float) -> Score:
        if self.row_weights is None:
            return EXACT
        keep = np.ones(self.stats.amax.shape[0], np.float32)
        keep[split] = 0.0  # split-off channels: exact (FP32) on the side path, zero in the int8 MatMul
        scale = np.ldexp(1.0, exponents).astype(np.float32)
        s_x = scale_from_amax(clip * self.activation_max(exponents, split))
        x_codes = scaled_offset_codes(self.rows, keep / scale, s_x, narrow=False)
        w_codes, w_scales = self._quantized_weights(exponents, split, scale * keep)
        products = integer_matmul(x_codes, w_codes)
        side = self._side_path(split)
        noise, dot, power = (np.zeros(self.rows.shape[0]) for _ in range(3))
        for columns, s_w in zip(self._columns, w_scales):
            accumulate_row_errors(products, self.exact, noise, dot, power, np.float64(s_x) * np.float64(s_w), side,
                                  columns)
        weights = self.row_weights
        signal, noise_total = float(weights @ self.signal), float(weights @ noise)
        sqnr = float("inf") if noise_total == 0 else 10.0 * np.log10(signal / noise_total)
        norms = np.sqrt(signal * float(weights @ power))
        return Score(float(weights @ (noise / self.signal)), sqnr, float(weights @ dot) / norms if norms else 1.0)


def _trial_key(exponents: np.ndarray, split: np.ndarray) -> bytes:
    return np.asarray(exponents, np.int64).tobytes() + b"/" + np.asarray(split, np.int64).tobytes()


def choose(candidate: Candidate, stats: ChannelStats, alpha: float | None = None) -> GroupChoice:
    """The group's factors, outlier split and activation clip: for the given alpha, or the measured
    best alpha (or no rescaling) for each split size in SPLITS; a larger split must cut the error by
    SPLIT_GAIN, a clip by CLIP_GAIN. alpha is searched coarse to fine on the unsplit group
    (COARSE_ALPHAS, then +-0.1 around the best); each larger split starts from the alpha the split
    before it measured best and walks +-0.1 while that helps (``_local_alphas``). "Best" is
    ``Score.better_than``: inside verify's layer tolerance first."""
    channels = stats.amax.shape[0]
    scorer = ErrorScorer(stats, candidate.weights)
    identity = np.zeros(channels, np.int32)
    wmax = weight_ranges(candidate.weights)  # the same for every alpha and split
    before = scorer.error(identity)
    by_amax = np.argsort(-stats.amax, kind="stable")
    best = (before, None, identity, np.zeros(0, np.int64))
    previous: float | None = None  # the best alpha the previous split measured
    for count in SPLITS if candidate.splittable else (0,):
        if count >= max(channels // 8, 1):
            break
        split = np.sort(by_amax[:count]).astype(np.int64)
        kept = stats.amax.copy()
        kept[split] = 0.0

        def score(a: float | None) -> tuple[Score, float | None, np.ndarray]:
            exponents = identity if a is None else exponents_for(kept, wmax, a)
            return scorer.error(exponents, split), a, exponents

        if alpha is not None:
            found = [score(alpha)]
        elif previous is None:
            found = [score(a) for a in (None, *COARSE_ALPHAS)]
            centre = _best(found)[1]
            if centre is not None:
                found += [score(round(a, 2)) for a in (centre - 0.1, centre + 0.1) if 0.0 < a <= 1.0]
        else:
            found = _local_alphas(score, previous)
        trial = _best(found)
        previous = _best([f for f in found if f[1] is not None] or found)[1]
        gain = SPLIT_GAIN if count > best[3].size else 1.0
        if trial[0].better_than(best[0], gain) or (alpha is not None and count == 0):
            best = (*trial, split)
    error, chosen_alpha, exponents, split = best
    clip = 1.0
    # The per-tensor threshold: the observed maximum, or a clip measured better. Tighter clips trade
    # rounding of the bulk for clipping of the tail: once one no longer helps, tighter ones do not.
    for trial_clip in CLIPS:
        clipped = scorer.error(exponents, split, trial_clip)
        if not clipped.better_than(error, CLIP_GAIN):
            break
        error, clip = clipped, trial_clip
    clip_amax = clip * scorer.activation_max(exponents, split) if clip < 1.0 else None
    if not exponents.any() and not split.size:
        return GroupChoice(None, before, error, clip, clip_amax, candidate.input)
    group = SmoothGroup(candidate.input, candidate.consumers, "mul" if split.size else candidate.inverse,
                        tuple(int(e) for e in exponents), chosen_alpha, tuple(int(c) for c in split))
    return GroupChoice(group, before, error, clip, clip_amax, candidate.input)


def _local_alphas(score, start: float) -> list[tuple[Score, float | None, np.ndarray]]:
    """No rescaling, ``start`` and its +-0.1 neighbours, then further 0.1 steps in the direction
    that measured better, while each step helps: the error is close to unimodal in alpha, and a
    split moves its best alpha by a step or two, so a walk from the last split's best finds it in
    three to five trials where the coarse grid and its refinement take seven."""
    found = [score(None), score(start)]
    for direction in (-0.1, 0.1):
        here = start
        while 0.0 < round(here + direction, 2) <= 1.0:
            here = round(here + direction, 2)
            step = score(here)
            found.append(step)
            if not step[0].better_than(_best([f for f in found[1:-1]])[0]):
                break
    return found


def _best(found: list[tuple[Score, float | None, np.ndarray]]) -> tuple[Score, float | None, np.ndarray]:
    best = found[0]
    for trial in found[1:]:
        if trial[0].better_than(best[0]):
            best = trial
    return best
