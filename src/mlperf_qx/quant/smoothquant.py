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

from ..calibration.readers import CalibrationSet
from ..errors import UserInputError, first_line
from ..progress import progress_bar
from ..ir.graph_edit import constant_array
from ..kernels.quantize import quantize_int8
from ..runtime import open_session
from .equalization import MAX_EXPONENT, SmoothGroup
from .runtime_check import expose_tensors
from .scales import scale_from_amax

COARSE_ALPHAS = (0.3, 0.5, 0.7, 0.9)
SPLITS = (0, 1, 2, 4, 8)  # outlier channels split off to an FP32 side path (most extreme |x| first)
SPLIT_GAIN = 0.8  # a larger split must cut the measured error by 20 % to be taken
ROWS_PER_GROUP = 384
# Thresholds below the maximum tried for the MatMuls' input, as shares of it; one is taken only if
# it cuts the measured layer error by 5 % (a per-tensor method choice: minmax where the outliers
# carry the signal, a clip where rounding of the bulk costs more).
CLIPS = (0.8, 0.6, 0.45, 0.35, 0.25)
CLIP_GAIN = 0.95  # token rows kept per group to score the alphas (sampled evenly over the set)


@dataclass(frozen=True)
class Candidate:
    """A group that may be smoothed: its input, its MatMuls and how 1/s would be applied."""

    input: str
    consumers: tuple[str, ...]
    inverse: str
    weights: tuple[np.ndarray, ...]


@dataclass
class GroupChoice:
    group: SmoothGroup | None  # None: no rescaling measured best
    error_before: float
    error_after: float
    clip: float = 1.0  # activation threshold as a share of the (smoothed) maximum, measured best
    clip_amax: float | None = None  # that threshold, in the units of the MatMuls' input
    input: str = ""  # the group's input tensor (before any rescaling)


def find_candidates(model: ir.Model, skip: set[str]) -> list[Candidate]:
    """Every activation read by MatMuls with a constant 2-D weight (node names in ``skip`` are
    left alone: excluded or kept FP32)."""
    found: dict[str, list[ir.Node]] = {}
    for node in model.graph:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or node.name in skip:
            continue
        x, weight = node.inputs[0], constant_array(node.inputs[1])
        if weight is None or weight.ndim != 2 or x is None or constant_array(x) is not None:
            continue
        if x.dtype not in (ir.DataType.FLOAT, None) or weight.dtype != np.float32:
            continue
        found.setdefault(x.name, []).append(node)
    candidates = []
    for name, nodes in found.items():
        x = nodes[0].inputs[0]
        readers = {use.node.name for use in x.uses()}
        producer = x.producer()
        foldable = (producer is not None and producer.op_type == "LayerNormalization" and not x.is_graph_output()
                    and readers == {n.name for n in nodes} and _constant_params(producer))
        candidates.append(Candidate(name, tuple(n.name for n in nodes), "layernorm" if foldable else "mul",
                                    tuple(constant_array(n.inputs[1]) for n in nodes)))
    return candidates


def _constant_params(norm: ir.Node) -> bool:
    return all(constant_array(norm.inputs[i]) is not None for i in (1, 2) if i < len(norm.inputs) and norm.inputs[i] is not None)


@dataclass
class ChannelStats:
    amax: np.ndarray  # per channel, over the calibration set
    rows: np.ndarray  # sampled token rows (R x C)


def observe_channels(model: ir.Model, candidates: list[Candidate], calib: CalibrationSet,
                     show_progress: bool = True) -> dict[str, ChannelStats]:
    """One FP32 pass: each group input's per-channel max |x| and ROWS_PER_GROUP sampled rows."""
    names = [c.input for c in candidates]
    proto = ir.serde.serialize_model(model)
    expose_tensors(proto.graph, names)
    session = open_session(proto)
    amax: dict[str, np.ndarray] = {}
    rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
    per_sample = max(1, -(-ROWS_PER_GROUP // len(calib)))
    with progress_bar(show_progress) as progress:
        task = progress.add_task("observing channels for smoothquant", total=len(calib))
        for sample_id in calib.ids:
            try:
                arrays = session.run(names, calib.sample(sample_id))
            except Exception as exc:
                raise UserInputError(f"onnxruntime failed on calibration sample {sample_id}: {first_line(exc)}") from None
            for name, array in zip(names, arrays):
                flat = np.abs(array.reshape(-1, array.shape[-1]).astype(np.float32))
                amax[name] = np.maximum(amax[name], flat.max(0)) if name in amax else flat.max(0)
                picks = np.linspace(0, flat.shape[0] - 1, min(per_sample, flat.shape[0])).astype(np.int64)
                rows[name].append(array.reshape(-1, array.shape[-1])[picks].astype(np.float32))
            progress.advance(task)
    return {n: ChannelStats(amax[n], np.concatenate(rows[n])[:ROWS_PER_GROUP]) for n in names}


def exponents_for(amax: np.ndarray, weights: tuple[np.ndarray, ...], alpha: float) -> np.ndarray:
    """Power-of-two exponents of s_j = amax_j**alpha / wmax_j**(1 - alpha); 0 where a side is 0."""
    wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0).astype(np.float64)
    amax = amax.astype(np.float64)
    usable = (amax > 0) & (wmax > 0)
    ratio = np.ones_like(amax)
    ratio[usable] = amax[usable] ** alpha / wmax[usable] ** (1.0 - alpha)
    return np.clip(np.rint(np.log2(ratio)), -MAX_EXPONENT, MAX_EXPONENT).astype(np.int32)


class ErrorScorer:
    """Scores factors and splits of one group on its sampled rows: the mean over rows of each
    row's relative squared output error, when x/s and W*s are quantized symmetric per tensor
    (activation scale from the set's per-channel maxima). Per row, not pooled: trained transformers
    put most of a layer's output energy on a few tokens (massive activations), and a pooled error
    would see only those and ignore every other token. The FP32 outputs are computed once."""

    def __init__(self, stats: ChannelStats, weights: tuple[np.ndarray, ...]):
        self.stats, self.weights = stats, weights
        self.exact = [stats.rows @ w for w in weights]
        signal = sum(np.sum(e.astype(np.float64) ** 2, axis=1) for e in self.exact)
        self.usable = signal > 0
        self.signal = signal[self.usable]

    def activation_max(self, exponents: np.ndarray, split: np.ndarray) -> float:
        keep = np.ones(self.stats.amax.shape[0], np.float32)
        keep[split] = 0.0
        return float((self.stats.amax * keep / np.ldexp(1.0, exponents)).max())

    def error(self, exponents: np.ndarray, split: np.ndarray | None = None, clip: float = 1.0) -> float:
        if not self.usable.any():
            return 0.0
        stats = self.stats
        keep = np.ones(stats.amax.shape[0], np.float32)
        split = np.zeros(0, np.int64) if split is None else split
        keep[split] = 0.0  # split-off channels: exact (FP32) on the side path, zero in the int8 MatMul
        scale = np.ldexp(1.0, exponents).astype(np.float32)
        s_x = scale_from_amax(clip * float((stats.amax * keep / scale).max()))
        x_q = quantize_int8(stats.rows * (keep / scale), s_x, narrow=False).astype(np.float32) * s_x
        error = np.zeros(int(self.usable.sum()))
        for w, exact in zip(self.weights, self.exact):
            ws = w * (scale * keep)[:, None]
            s_w = scale_from_amax(float(np.abs(ws).max()))
            w_q = quantize_int8(ws, s_w, narrow=True).astype(np.float32) * s_w
            approximate = x_q @ w_q
            if split.size:
                approximate += stats.rows[:, split] @ w[split]
            error += np.sum((approximate - exact)[self.usable].astype(np.float64) ** 2, axis=1)
        return float(np.mean(error / self.signal))


def choose(candidate: Candidate, stats: ChannelStats, alpha: float | None = None) -> GroupChoice:
    """The group's factors and outlier split: for the given alpha, or the measured best alpha (or
    no rescaling) for each split size in SPLITS; a larger split must cut the error by SPLIT_GAIN.
    alpha is searched coarse to fine: COARSE_ALPHAS, then +-0.1 around the best."""
    channels = stats.amax.shape[0]
    scorer = ErrorScorer(stats, candidate.weights)
    identity = np.zeros(channels, np.int32)
    before = scorer.error(identity)
    by_amax = np.argsort(-stats.amax, kind="stable")
    best = (before, None, identity, np.zeros(0, np.int64))
    for count in SPLITS:
        if count >= max(channels // 8, 1):
            break
        split = np.sort(by_amax[:count]).astype(np.int64)
        kept = stats.amax.copy()
        kept[split] = 0.0

        def score(a: float | None) -> tuple[float, float | None, np.ndarray]:
            exponents = identity if a is None else exponents_for(kept, candidate.weights, a)
            return scorer.error(exponents, split), a, exponents

        if alpha is not None:
            found = [score(alpha)]
        else:
            found = [score(a) for a in (None, *COARSE_ALPHAS)]
            centre = min(found, key=lambda f: f[0])[1]
            if centre is not None:
                found += [score(round(a, 2)) for a in (centre - 0.1, centre + 0.1) if 0.0 < a <= 1.0]
        error, trial_alpha, exponents = min(found, key=lambda f: f[0])
        threshold = best[0] * (SPLIT_GAIN if count > best[3].size else 1.0)
        if error < threshold or (alpha is not None and count == 0):
            best = (error, trial_alpha, exponents, split)
    error, chosen_alpha, exponents, split = best
    clip = 1.0
    for trial in CLIPS:  # the per-tensor threshold: the observed maximum, or a clip measured better
        clipped = scorer.error(exponents, split, trial)
        if clipped < error * CLIP_GAIN:
            error, clip = clipped, trial
    clip_amax = clip * scorer.activation_max(exponents, split) if clip < 1.0 else None
    if not exponents.any() and not split.size:
        return GroupChoice(None, before, error, clip, clip_amax, candidate.input)
    group = SmoothGroup(candidate.input, candidate.consumers, "mul" if split.size else candidate.inverse,
                        tuple(int(e) for e in exponents), chosen_alpha, tuple(int(c) for c in split))
    return GroupChoice(group, before, error, clip, clip_amax, candidate.input)
