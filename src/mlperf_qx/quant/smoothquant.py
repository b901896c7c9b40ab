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
from .equalization import SmoothGroup, balancing_exponents, linear_weight, outlier_join
from .smoothquant_observe import ChannelStats
from .smoothquant_scores import Beat, ErrorScorer, Score

COARSE_ALPHAS = (0.3, 0.5, 0.7, 0.9)
# The order they are measured in: the likeliest best first, so the others stop early (``Beat``).
COARSE_ORDER = (0.5, 0.7, 0.3, 0.9)
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


def choose(candidate: Candidate, stats: ChannelStats, alpha: float | None = None, bound: bool = True) -> GroupChoice:
    """The group's factors, outlier split and activation clip: for the given alpha, or the measured
    best alpha (or no rescaling) for each split size in SPLITS; a larger split must cut the error by
    SPLIT_GAIN, a clip by CLIP_GAIN. alpha is searched coarse to fine on the unsplit group
    (COARSE_ALPHAS, then +-0.1 around the best); each larger split starts from the alpha the split
    before it measured best and walks +-0.1 while that helps (``_local_alphas``). "Best" is
    ``Score.better_than``: inside verify's layer tolerance first. With ``bound``, a trial is told
    the score it must beat and stops once it cannot (``smoothquant_scores``): the same choice,
    each losing trial measured on fewer rows."""
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

        def score(a: float | None, found: list) -> tuple[Score, float | None, np.ndarray]:
            """Trial ``a``; it matters only if it beats the best alpha in ``found`` (no rescaling
            aside: the best alpha starts the next split's walk, so it is always measured exactly)."""
            exponents = identity if a is None else exponents_for(kept, wmax, a)
            rivals = [f for f in found if f[1] is not None]
            beat = Beat(_best(rivals)[0]) if bound and rivals else None
            return scorer.error(exponents, split, beat=beat), a, exponents

        if alpha is not None:
            found = [score(alpha, [])]
        elif previous is None:
            coarse: dict[float, tuple] = {}
            for a in COARSE_ORDER:  # measured in this order, compared in COARSE_ALPHAS' (ties: the first)
                coarse[a] = score(a, list(coarse.values()))
            found = [score(None, []), *(coarse[a] for a in COARSE_ALPHAS)]
            centre = _best(found)[1]
            if centre is not None:
                for a in (centre - 0.1, centre + 0.1):
                    if 0.0 < a <= 1.0:
                        found.append(score(round(a, 2), found))
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
        clipped = scorer.error(exponents, split, trial_clip, Beat(error, CLIP_GAIN) if bound else None)
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
    walk = [score(start, [])]
    for direction in (-0.1, 0.1):
        here = start
        while 0.0 < round(here + direction, 2) <= 1.0:
            here = round(here + direction, 2)
            step = score(here, walk)
            walk.append(step)
            if not step[0].better_than(_best(walk[:-1])[0]):
                break
    # No rescaling last, though first in the list (it wins ties): measured after the alphas, it
    # stops early where the best of them beats it.
    return [score(None, walk), *walk]


def _best(found: list[tuple[Score, float | None, np.ndarray]]) -> tuple[Score, float | None, np.ndarray]:
    best = found[0]
    for trial in found[1:]:
        if trial[0].better_than(best[0]):
            best = trial
    return best
