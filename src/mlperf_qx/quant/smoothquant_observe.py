"""SmoothQuant's observing pass: one FP32 run over the calibration set that takes, for each group
input, its per-channel max |x| and a stratified sample of its token rows (what ``smoothquant``'s
scorer tries its factors on), the model's own outputs on the first samples (what the equalized
model must reproduce), and, with minmax, every range calibration needs (``equalized_ranges``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from ..calibration.readers import CalibrationSet
from ..errors import UserInputError, first_line
from ..kernels.absmax import absmax_columns_and_rows
from ..kernels.row_picks import stratified_picks
from ..progress import progress_bar
from ..runtime import open_session
from .calibrate import pass_workers
from .equalized_ranges import PassRanges
from .in_order import run_in_order
from .observers import MinMaxObserver
from .runtime_check import expose_tensors
from .weights_by_reference import serialize_without_weights

if TYPE_CHECKING:
    from .smoothquant import Candidate

ROWS_PER_GROUP = 384  # evenly spaced token rows per group (over the whole set)
TOP_ROWS_PER_SAMPLE = 2  # plus, per sample, the rows of largest |x| (see observe_channels)
MAX_ROWS_PER_GROUP = 1024  # beyond it (large sets), rows come from every k-th sample only, weighted k


@dataclass
class ChannelStats:
    amax: np.ndarray  # per channel, over the calibration set
    rows: np.ndarray  # sampled token rows (R x C)
    weights: np.ndarray | None = None  # rows of the set each sampled row stands for (None: 1 each)


def observe_channels(model: ir.Model, candidates: list[Candidate], calib: CalibrationSet,
                     show_progress: bool = True) -> dict[str, ChannelStats]:
    """Each group input's per-channel max |x| and a stratified sample of its token rows (``observe``)."""
    return observe(model, candidates, calib, show_progress).stats


@dataclass
class Observed:
    """What the observing pass measured (``observe``)."""

    stats: dict[str, ChannelStats]  # per group input
    outputs: list[dict[str, np.ndarray]]  # the model's own outputs on the first ``outputs_on`` samples
    # max|x| and count of each tensor of ``ranges_of``, as calibration's minmax pass takes them
    # (None: none asked for, or onnxruntime could not run the reductions: calibration measures them).
    observers: dict[str, MinMaxObserver] | None = None


def observe(model: ir.Model, candidates: list[Candidate], calib: CalibrationSet, show_progress: bool = True,
            outputs_on: int = 0, ranges_of: Sequence[str] = ()) -> Observed:
    """One FP32 pass: each group input's per-channel max |x| and a stratified sample of its token
    rows; the model's own outputs on the first ``outputs_on`` samples (what the equalized model
    must reproduce, taken from this pass rather than from a session of its own); and the minmax
    range of each tensor of ``ranges_of``, reduced in the graph exactly as calibration's minmax
    pass reduces it (``reduce_in_graph``), so that calibration need not run the model again
    (``equalized_ranges``). Per sample, the
    TOP_ROWS_PER_SAMPLE rows of largest |x| are always kept (weight 1): they are the
    massive-activation tokens that carry most of a layer's output energy, and an even sample misses
    them. The other rows are sampled evenly, each weighted by the rows it stands for, so pooled
    sums over the sample estimate the sums over the whole set without bias. On a large set only
    every k-th sample gives rows (each weighted k more), which bounds memory and scoring time; the
    per-channel maxima always come from every sample."""
    names = [c.input for c in candidates]
    # Samples on every core at once, each run on one thread, absorbed in their order (``in_order``):
    # the same statistics as one run after the other, without onnxruntime's threads waiting for
    # each other at every operator of a one-sample run.
    workers = pass_workers(len(calib), parallel=True)
    session, ranges = _observing_session(model, names, list(ranges_of), threads=1 if workers > 1 else 0)
    stats_fetch = ranges.fetched if ranges is not None else []
    outputs = [o.name for o in model.graph.outputs if o.name not in {*names, *stats_fetch}]
    sampler = _RowSampler(len(calib))
    model_outputs: list[dict[str, np.ndarray]] = []

    def fetched(index: int) -> list[str]:
        return names + stats_fetch + (outputs if index < outputs_on else [])  # each name once

    def measure(_worker: int, where: list, feeds: dict) -> list[np.ndarray]:
        index, sample_id = where
        try:
            return session.run(fetched(index), feeds)
        except Exception as exc:
            raise UserInputError(f"onnxruntime failed on calibration sample {sample_id}: {first_line(exc)}") from None

    def absorb(_worker: int, where: list, arrays: list[np.ndarray]) -> None:
        index, sample_id = where
        if index < outputs_on:
            found = dict(zip(fetched(index), arrays))
            model_outputs.append({o.name: found[o.name] for o in model.graph.outputs})
        for name, array in zip(names, arrays):
            sampler.add(name, array, index)
        if ranges is not None:
            ranges.add(arrays[len(names):len(names) + len(stats_fetch)], sample_id)
        progress.advance(task)

    samples = (([index, sample_id], calib.sample(sample_id)) for index, sample_id in enumerate(calib.ids))
    with progress_bar(show_progress) as progress:
        task = progress.add_task("observing channels for smoothquant", total=len(calib))
        if workers > 1:
            run_in_order(samples, workers, measure, absorb)
        else:
            for where, feeds in samples:
                absorb(0, where, measure(0, where, feeds))
    return Observed({n: sampler.stats(n) for n in names}, model_outputs,
                    ranges.observers if ranges is not None else None)


def _observing_session(model: ir.Model, names: list[str], ranges_of: list[str], threads: int = 0):
    """The session of the observing pass (the group inputs exposed, the ranges' reductions added),
    and the ranges it takes (None when none are asked, or onnxruntime cannot run the reductions:
    the pass then runs without them, as calibration reads its tensors out then)."""
    ranges = PassRanges(model, ranges_of) if ranges_of else None
    proto, weights = serialize_without_weights(model)  # the weights go to onnxruntime uncopied
    expose_tensors(proto.graph, names)
    if ranges is not None:
        ranges.add_to(proto.graph)
    try:
        return open_session(proto, spin_between_runs=False, external_weights=weights, threads=threads), ranges
    except Exception:
        if ranges is None:
            raise
    return _observing_session(model, names, [], threads)


class _RowSampler:
    """Per tensor, the per-channel max |x| over every sample and the sampled rows with their weights."""

    def __init__(self, samples: int):
        self.per_sample = max(1, -(-ROWS_PER_GROUP // samples))
        self.stride = max(1, -(-samples * (self.per_sample + TOP_ROWS_PER_SAMPLE) // MAX_ROWS_PER_GROUP))
        self.amax: dict[str, np.ndarray] = {}
        self.rows: dict[str, list[np.ndarray]] = {}
        self.weights: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, array: np.ndarray, index: int) -> None:
        # No copy of the array (onnxruntime's is float32 already), both maxima in one pass of a
        # kernel and raised in place: onnxruntime waits while this runs, for every group input
        # of every sample (48 x 128 on mpnet).
        flat = np.asarray(array, np.float32).reshape(-1, array.shape[-1])
        columns, rows = absmax_columns_and_rows(flat)
        if name not in self.amax:
            self.amax[name] = np.zeros(flat.shape[1], np.float32)
        np.maximum(self.amax[name], columns, out=self.amax[name])
        if index % self.stride == 0:
            picks, weight = _stratified_rows(rows, self.per_sample)
            self.rows.setdefault(name, []).append(flat[picks])
            self.weights.setdefault(name, []).append(weight * self.stride)

    def stats(self, name: str) -> ChannelStats:
        return ChannelStats(self.amax[name], np.concatenate(self.rows[name]), np.concatenate(self.weights[name]))


def _stratified_rows(row_peaks: np.ndarray, evenly: int) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, weights): the largest rows (weight 1), then ``evenly`` rows spaced over the
    rest; ``_stratified_rows_reference``'s answer, in a few microseconds instead of a sort and
    eight small arrays (it runs for every group input of every sample)."""
    if row_peaks.size <= TOP_ROWS_PER_SAMPLE or np.isnan(row_peaks).any():  # NaN: the sort's order
        return _stratified_rows_reference(row_peaks, evenly)
    positions, weights = _spread(row_peaks.size - TOP_ROWS_PER_SAMPLE, evenly)
    return stratified_picks(row_peaks, TOP_ROWS_PER_SAMPLE, positions), weights


@functools.lru_cache(maxsize=256)
def _spread(rest: int, evenly: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the evenly spaced rows lie among ``rest`` and every pick's weight (the same for
    every sample of one length)."""
    positions = np.linspace(0, rest - 1, min(evenly, rest)).astype(np.int64)
    weights = np.concatenate([np.ones(TOP_ROWS_PER_SAMPLE), np.full(positions.size, rest / positions.size)])
    positions.flags.writeable = weights.flags.writeable = False  # shared by every call
    return positions, weights


def _stratified_rows_reference(row_peaks: np.ndarray, evenly: int) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, weights): the largest rows (weight 1), then ``evenly`` rows spaced over the rest."""
    order = np.argsort(-row_peaks, kind="stable")
    top = order[:TOP_ROWS_PER_SAMPLE]
    rest = np.sort(order[TOP_ROWS_PER_SAMPLE:])
    if not rest.size:
        return top, np.ones(top.size)
    spread = rest[np.linspace(0, rest.size - 1, min(evenly, rest.size)).astype(np.int64)]
    return np.concatenate([top, spread]), np.concatenate([np.ones(top.size), np.full(spread.size, rest.size / spread.size)])
