"""Observe activation ranges: one onnxruntime pass over the calibration set, batched, streaming.

The FP32 model is augmented so that every observed tensor is also a graph output. onnxruntime
writes them into a preallocated arena that the observers bin in one kernel call per batch; nothing
is kept, so memory stays flat in N. A pass of many batches runs several at a time, one per core,
each into an arena of its own, absorbed in batch order (``_Pass.in_parallel``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ..background import in_background
from ..calibration.readers import CalibrationSet
from ..errors import UserInputError, first_line
from ..progress import progress_bar
from ..runtime import open_session, usable_cores
from .in_order import run_in_order
from .observers import MinMaxObserver, absorb_segments, bin_segments, make_observer, update_segments
from .output_arena import OutputArena, prefaulted_buffer
from .qoperator_opset import model_opset
from .reduce_in_graph import Reductions, add_reductions, batch_statistics, plan_reductions
from .runtime_check import expose_tensors, join_samples
from .spec import Method
from .weights_by_reference import serialize_without_weights
from .written_order import read_where_written

_BATCH_DIM = "qx_batch"
AUTO_BATCH_BYTES = 32 << 20
MAX_AUTO_BATCH = 64
# The largest arena buffer made before the probe from the declared shapes: a guess, so what a wrong
# one can cost (the buffer written for nothing, held beside the real one for a moment) is bounded.
# Declared shapes can be stale (a model exported at a larger size): one declared 2 GiB of a real
# 16 KiB. ResNet-50's arena at batch 1 is 67 MB.
PREMADE_MAX_BYTES = 4 * AUTO_BATCH_BYTES
# Batches run at once (pass_workers): each holds its batch's outputs, so memory grows with them, not
# with N. The first two batches of a pass run alone (the probe's, and the run that settles the
# arena), and the session runs each batch on fewer cores: too few batches would not win it back.
# Measured on ResNet-50 entropy, quiet, 2 cores (calibration s, parallel vs one at a time, 3 rounds):
# 8 batches 1.21-1.50 vs 0.99-1.13 (slower: the two lone batches on one core cost more than the
# rest gains), 16 even, 32 2.61-2.89 vs 2.78-2.96; so 8 a worker.
MAX_WORKERS = 4
MIN_BATCHES_PER_WORKER = 8


@dataclass
class Observation:
    observers: dict[str, MinMaxObserver]
    batch: int
    # The FP32 model outputs of the first ``keep_outputs`` samples, captured on the way so that
    # the output SQNR check does not run the FP32 model again (empty if none were asked for).
    reference_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    # The pass's session, output arenas and probe, for the caller to let go of once it no longer
    # waits on both cores (``released_in_background``: freeing them is not free).
    spent: list = field(default_factory=list, repr=False)


def observe(model: ir.Model, tensors: list[str], calib: CalibrationSet, method: Method, batch: int | None,
            show_progress: bool = True, keep_outputs: int = 0) -> Observation:
    model_outputs = [v.name for v in model.graph.outputs]
    extra_outputs = [name for name in model_outputs if name not in tensors]
    observers = {name: make_observer(method) for name in tensors}
    float32 = float32_tensors(model, tensors)
    # Reduced in the graph (minmax): a few scalars per float32 tensor, then the other observed
    # tensors whole (a transformer's int64 shape vectors joined by a Concat) and every model output.
    reductions = plan_reductions([t for t in tensors if t in float32], relu_outputs(model),
                                 [t for t in tensors if t not in float32 and t not in model_outputs])
    reduced = not method.needs_histogram and bool(reductions.tensors)
    fetched = reductions.names + reductions.read_out + model_outputs if reduced else tensors + extra_outputs
    # Several batches at a time where each can be reduced apart and absorbed in order: the
    # reduced statistics, or an arena of float32 outputs (guessed from the declared types: the
    # session is opened for it before the probe shows the outputs).
    parallel = reduced or _all_float32(model, fetched)
    # The arena's buffer, written once on the other core while the session is built (else the
    # probe's copy into it took 44 ms of faulting in ResNet-50's 67 MB on the pass's path).
    premade = None if reduced or not parallel else _premade_buffer(model, fetched, calib, batch)
    try:
        session, batch, probe_feeds, probe = _calibration_session(model, fetched, calib, batch,
                                                                  reductions if reduced else None, parallel)
    except UserInputError:
        if not reduced:
            raise
        # An operator the reductions cannot follow: read the tensors out instead (any real
        # failure of the model itself is reported from there).
        reduced, fetched = False, tensors + extra_outputs
        session, batch, probe_feeds, probe = _calibration_session(model, fetched, calib, batch, None,
                                                                  _all_float32(model, fetched))
    outputs_at = {name: fetched.index(name) for name in model_outputs}
    read_at = {name: fetched.index(name) for name in tensors if name not in float32} if reduced else {}
    # Rows of a model output are samples only when its leading axis is the batch axis.
    batch_first = all(probe[outputs_at[n]].ndim >= 1 and probe[outputs_at[n]].shape[0] == 1 for n in model_outputs)
    kept: dict[str, list[np.ndarray]] = {n: [] for n in model_outputs} if keep_outputs and batch_first else {}
    arena = None if reduced or not OutputArena.usable(probe, batch) else OutputArena(
        session, fetched, probe_feeds, probe, batch, _taken(premade))
    premade = None  # the arena holds it now, or nothing does
    # The other workers' arenas, made ready on the idle core while this thread starts the pass alone.
    spares = in_background(_spare_arenas, arena, session.qx_calibration_workers - 1, name="qx-arenas")
    calibration = _Pass(tensors, observers, fetched, reductions if reduced else None, read_at, outputs_at, kept,
                        keep_outputs)
    arena_ran = False
    # At batch 1 the probe is sample 0 run on this very session: the first batch's outputs
    # already, so that batch is not run again (one model run of N saved: an eighth at N=8).
    probe_is_first_batch = batch == 1
    batches = iter(calib.batches(batch))
    with progress_bar(show_progress) as progress:
        calibration.progress, calibration.task = progress, progress.add_task("calibrating", total=len(calib))
        # The first batches one after the other: the probe's, then one real run, which settles
        # whether the arena works (see _run_batch). The rest several at a time where the session
        # was opened for it (see _calibration_session), else one after the other.
        for ids, feeds in batches:
            if probe_is_first_batch:
                result, bound, probe_is_first_batch = _probe_as_batch(probe, arena, reduced), arena is not None, False
            else:
                result, arena, bound = _run_batch(session, arena, arena_ran, fetched, feeds, ids)
                arena_ran = arena_ran or bound
            calibration.observe(ids, result, arena if bound else None)
            if session.qx_calibration_workers > 1 and (reduced or arena_ran):
                calibration.in_parallel(session, batches, arena, spares.result())
                break
    references = {name: join_samples(parts) for name, parts in kept.items() if parts}
    # Handed to the caller, which lets them go once its thresholds are found: unmapping 3 arenas
    # (33 ms for ResNet-50's) on the other core then slowed the threshold search on both by 29 ms.
    spent = [session, arena, spares, probe, calibration]
    del session, arena, spares, probe, calibration
    return Observation(observers, batch, references, spent)


class _Pass:
    """What one calibration pass keeps (the observers, the first model outputs, the progress) and
    how a batch's outputs reach it: one batch after the other (``observe``), or several batches run
    at once and absorbed in order (``in_parallel``)."""

    def __init__(self, tensors: list[str], observers: dict[str, MinMaxObserver], fetched: list[str],
                 reductions: Reductions | None, read_at: dict[str, int], outputs_at: dict[str, int],
                 kept: dict[str, list[np.ndarray]], keep_outputs: int) -> None:
        self.tensors, self.observers, self.fetched, self.reductions = tensors, observers, fetched, reductions
        self.ordered = [observers[name] for name in tensors]
        self.read_at, self.outputs_at, self.kept, self.keep_outputs = read_at, outputs_at, kept, keep_outputs
        self.seen, self.progress, self.task = 0, None, None
        self.session: ort.InferenceSession | None = None
        self.arenas: list[OutputArena | None] = []

    def observe(self, ids: list[str], result, arena: OutputArena | None) -> None:
        """One batch's outputs (``_run_batch``'s result; ``arena``: the arena that holds them) into the observers."""
        if self.reductions is not None:
            arrays, rows = result, len(ids)
            maxima = observe_reduced(self.tensors, self.observers, self.reductions, self.read_at, arrays)
        elif arena is not None:
            rows, count = result, len(self.tensors)
            maxima = update_segments(self.ordered, arena.data, arena.offsets[:count], arena.lengths(rows)[:count])
            arrays = [arena.segment(i, rows) for i in range(len(self.fetched))]
        else:
            arrays, rows = result, len(ids)
            maxima = [self.observers[n].update(a) for n, a in zip(self.tensors, arrays)]
        self._finish(ids, arrays, maxima, rows)

    def in_parallel(self, session: ort.InferenceSession, batches, arena: OutputArena | None,
                    spares: list[OutputArena]) -> None:
        """The remaining ``batches`` on ``session.qx_calibration_workers`` threads, each running one
        batch on one core into an arena of its own and binning it there; absorbed in batch order,
        so the observers end exactly as one thread would leave them (``in_order``)."""
        workers = session.qx_calibration_workers
        self.session = session
        self.arenas = [arena] + (spares if arena is not None else [None] * (workers - 1))
        run_in_order(batches, workers, self._measure, self._absorb)

    def _measure(self, worker: int, ids: list[str], feeds: dict):
        """Runs a batch and reduces it without touching the observers (on a worker thread)."""
        arena = self.arenas[worker]
        result, _, bound = _run_batch(self.session, arena, True, self.fetched, feeds, ids)
        if not bound:
            return result, None
        count = len(self.tensors)
        return result, bin_segments(self.ordered, arena.data, arena.offsets[:count], arena.lengths(result)[:count])

    def _absorb(self, worker: int, ids: list[str], measured) -> None:
        result, binned = measured
        if binned is None:  # read out (the reduced statistics, or a batch the arena does not fit)
            self.observe(ids, result, None)
            return
        arena, rows, count = self.arenas[worker], result, len(self.tensors)
        maxima = absorb_segments(self.ordered, binned, arena.data, arena.offsets[:count], arena.lengths(rows)[:count])
        self._finish(ids, [arena.segment(i, rows) for i in range(len(self.fetched))], maxima, rows)

    def _finish(self, ids: list[str], arrays: list[np.ndarray], maxima, rows: int) -> None:
        reject_non_finite(self.tensors, maxima, ids)
        if self.seen < self.keep_outputs:
            for name in self.kept:
                self.kept[name].append(np.array(arrays[self.outputs_at[name]][: self.keep_outputs - self.seen], copy=True))
        self.seen += rows
        self.progress.advance(self.task, len(ids))


def observe_reduced(tensors: list[str], observers: dict[str, MinMaxObserver], reductions: Reductions,
                     read_at: dict[str, int], arrays: list[np.ndarray]) -> list[float]:
    """One batch's in-graph statistics, and the tensors read out (at ``read_at``), into the
    observers; returns each tensor's max|x| in ``tensors`` order."""
    maxima, counts = batch_statistics(arrays, reductions)
    batch_max = dict(zip(reductions.tensors, maxima))
    for name, count in zip(reductions.tensors, counts):
        observers[name].amax = max(observers[name].amax, float(batch_max[name]))
        observers[name].count += int(count)
    for name, at in read_at.items():
        batch_max[name] = observers[name].update(arrays[at])
    return [batch_max[name] for name in tensors]


def _premade_buffer(model: ir.Model, fetched: list[str], calib: CalibrationSet, batch: int | None):
    """The arena buffer (``prefaulted_buffer``) for the batch ``_calibration_session`` will most
    likely pick, made in the background; sized from the declared shapes, which the probe's outputs
    must confirm (``OutputArena`` makes another otherwise). None if a shape is not declared, or
    the guess is above PREMADE_MAX_BYTES."""
    values = declared_sample_values(model, fetched)
    if values is None:
        return None
    if not calib.batchable:
        batch = 1
    elif batch is None:
        batch = auto_batch(4 * values, len(calib))
    if 4 * values * batch > PREMADE_MAX_BYTES:
        return None
    return in_background(prefaulted_buffer, values * batch, name="qx-arena")


def _taken(premade) -> np.ndarray | None:
    """The premade buffer, or None if there is none or making it failed (the arena then makes its
    own, as without one: a guess must never be what stops a calibration)."""
    if premade is None:
        return None
    try:
        return premade.result()
    except (MemoryError, OSError):
        return None


def declared_sample_values(model: ir.Model, fetched: list[str]) -> int | None:
    """Values of one sample of the ``fetched`` tensors by their declared shapes: each static but for
    a leading batch axis (symbolic, or 1); None where one is not."""
    values = _values_by_name(model)
    total = 0
    for name in fetched:
        shape = values[name].shape if name in values else None
        if shape is None:
            return None
        dims = list(shape)
        batch_axis = dims[0] if dims else 1
        if isinstance(batch_axis, int) and batch_axis != 1 or not all(isinstance(d, int) for d in dims[1:]):
            return None
        total += int(np.prod(dims[1:], dtype=np.int64))
    return total


def auto_batch(sample_bytes: int, samples: int) -> int:
    """The batch that keeps a batch's observed activations near AUTO_BATCH_BYTES (see ``_calibration_session``)."""
    return int(max(1, min(MAX_AUTO_BATCH, AUTO_BATCH_BYTES // max(sample_bytes, 1), samples)))


def _spare_arenas(arena: OutputArena | None, count: int) -> list[OutputArena]:
    """``count`` more arenas like ``arena``, every page already written once (``OutputArena.like``)."""
    return [arena.like() for _ in range(count)] if arena is not None else []


def _probe_as_batch(probe: list[np.ndarray], arena: OutputArena | None, reduced: bool):
    """The probe's outputs as ``_run_batch`` returns a batch of one: copied into the arena's
    segments when it is used (then observed exactly as a bound run is), else as they are. Not a
    bound run: an arena whose first real run fails is still dropped (see ``_run_batch``)."""
    if arena is None or reduced:
        return probe
    for index, array in enumerate(probe):
        arena.segment(index, 1)[...] = array
    return 1


def _run_batch(session: ort.InferenceSession, arena: OutputArena | None, arena_ran: bool, fetched: list[str],
               feeds: dict, ids: list[str]):
    """(outputs, the arena still in use, whether it wrote them): into the arena when it fits the
    batch, else read out. onnxruntime checks bound outputs against the shapes it inferred, and a
    model's declared shapes can be wrong (ddddocr: rank 2 inferred, rank 3 computed), so an arena
    whose first run fails is dropped and the batch read out instead."""
    if arena is not None and arena.fits(feeds):
        try:
            return arena.run(feeds), arena, True
        except Exception as exc:
            if arena_ran:
                raise UserInputError(f"onnxruntime failed on calibration sample(s) {ids[0]}..: {first_line(exc)}") from None
            arena = None
    try:
        return session.run(fetched, feeds), arena, False
    except Exception as exc:
        raise UserInputError(f"onnxruntime failed on calibration sample(s) {ids[0]}..: {first_line(exc)}") from None


def _values_by_name(model: ir.Model) -> dict[str, ir.Value]:
    """The main graph's inputs and node outputs, by name (what a calibration pass may observe)."""
    values = {v.name: v for v in model.graph.inputs}
    values.update({v.name: v for node in model.graph for v in node.outputs})
    return values


def float32_tensors(model: ir.Model, tensors: list[str]) -> set[str]:
    """The tensors the graph declares float32: those the in-graph reductions take."""
    values = _values_by_name(model)
    return {t for t in tensors if t in values and values[t].dtype == ir.DataType.FLOAT}


def _all_float32(model: ir.Model, fetched: list[str]) -> bool:
    """Every fetched tensor declared float32: the outputs fit an arena, so batches can run at once."""
    return len(float32_tensors(model, fetched)) == len(fetched)


def relu_outputs(model: ir.Model) -> set[str]:
    """Tensors a Relu writes: never below zero, so their minimum need not be reduced."""
    return {node.outputs[0].name for node in model.graph if node.op_type == "Relu" and node.domain in ("", "ai.onnx")}


def reject_non_finite(tensors: list[str], maxima, ids: list[str]) -> None:
    for name, value in zip(tensors, maxima):
        if not np.isfinite(value):
            where = ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"
            raise UserInputError(f"activation '{name}' is NaN or infinite on calibration sample(s) {where}: the FP32 "
                                 "model overflows on this input; check the sample's preprocessing")


def _calibration_session(model: ir.Model, fetched: list[str], calib: CalibrationSet, batch: int | None,
                         reduced: Reductions | None = None, parallel: bool = False):
    """The session and batch size to calibrate with, and one sample's feeds and fetched outputs
    (the probe: it sizes the output arenas). ``batch=None`` picks the batch: as many samples as
    keep a batch's observed activations near AUTO_BATCH_BYTES (measured here: for ResNet-50,
    67 MB of observed activations per sample, batch 1 beat batch 4 and 16 on 2 cores; tiny models
    gain from large batches). ``reduced``: the tensors are reduced in the graph (``fetched`` are
    their statistics), see ``reduce_in_graph``. ``parallel``: batches of this pass can run several
    at a time (``_Pass.in_parallel``); each session is opened for that when it will run enough
    batches (``_workers``), and says so in ``qx_calibration_workers``."""
    first = calib.sample(calib.ids[0])
    if not calib.batchable:  # an input without a batch axis (a recurrent state, a scalar): one sample a run
        batch = 1
    static = probe = None  # the batch-1 session, built once: the probe's is reused for calibration
    if batch is None:
        static = _session(_augmented(model, fetched, batch_dynamic=False, reduced=reduced),
                          pass_workers(len(calib), parallel))
        probe = _run_probe(static, fetched, first, calib.ids[0])
        per_sample = (4 * int(batch_statistics(probe, reduced)[1].sum())
                      + sum(a.nbytes for a in probe[len(reduced.names):][:len(reduced.read_out)])
                      if reduced else sum(a.nbytes for a in probe))
        batch = auto_batch(per_sample, len(calib))
    if batch > 1:
        session = _session(_augmented(model, fetched, batch_dynamic=True, reduced=reduced),
                           pass_workers(-(-len(calib) // batch), parallel))
        single = _batched_probe(session, fetched, first)
        if single is not None:
            return session, batch, first, single
    if static is None:
        static = _session(_augmented(model, fetched, batch_dynamic=False, reduced=reduced),
                          pass_workers(len(calib), parallel))
        probe = _run_probe(static, fetched, first, calib.ids[0])
    return static, 1, first, probe


def _run_probe(session: ort.InferenceSession, fetched: list[str], feeds: dict, sample_id: str) -> list[np.ndarray]:
    try:
        return session.run(fetched, feeds)
    except Exception as exc:
        raise UserInputError(f"onnxruntime failed on calibration sample {sample_id}: {first_line(exc)}") from None


def _augmented(model: ir.Model, tensors: list[str], batch_dynamic: bool, reduced: Reductions | None = None
               ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The calibration graph, and the weights it references (see ``weights_by_reference``)."""
    proto, weights = serialize_without_weights(model)
    graph = proto.graph
    exposed = reduced.read_out if reduced else tensors
    if reduced:
        add_reductions(graph, reduced)
    expose_tensors(graph, exposed)
    read_where_written(graph, exposed, model_opset(model))
    if batch_dynamic:
        # Batch the calibration run even for a model exported at batch 1: make dimension 0
        # symbolic and drop intermediate shapes (checked on a real batch before use).
        del graph.value_info[:]
        for value in graph.output:
            value.type.tensor_type.ClearField("shape")
        for value in graph.input:
            dims = value.type.tensor_type.shape.dim
            if len(dims) > 0:
                dims[0].Clear()
                dims[0].dim_param = _BATCH_DIM
    return proto, weights


def _session(augmented: tuple[onnx.ModelProto, dict[str, np.ndarray]], workers: int = 1) -> ort.InferenceSession:
    """A calibration session; for ``workers`` > 1 with the cores shared out among that many runs
    at a time (one thread each on 2 cores), else onnxruntime's default (every core for each run)."""
    proto, weights = augmented
    threads = max(1, usable_cores() // workers) if workers > 1 else 0
    try:
        session = open_session(proto, spin_between_runs=False, external_weights=weights, threads=threads)
    except Exception as exc:  # e.g. an attribute the checker lets pass but no kernel accepts (fuzzed pads)
        raise UserInputError(f"onnxruntime cannot load the model for calibration: {first_line(exc, 200)}") from None
    session.qx_calibration_workers = workers
    return session


def pass_workers(batches: int, parallel: bool) -> int:
    """How many of a pass's ``batches`` run at once: one per core (at most MAX_WORKERS, each with
    an arena of its own), where the pass allows it and runs at least MIN_BATCHES_PER_WORKER each;
    else 1. On 2 cores, two one-thread runs of ResNet-50 at a time took less CPU per sample than
    one run on both cores, whose threads wait for each other at every operator (in_order)."""
    workers = min(usable_cores(), MAX_WORKERS)
    return workers if parallel and workers > 1 and batches >= MIN_BATCHES_PER_WORKER * workers else 1


def _batched_probe(session: ort.InferenceSession, fetched: list[str], first: dict) -> list[np.ndarray] | None:
    """One sample's outputs from the batched session, or None if batching does not work: a batch
    of two copies of the sample must give two copies of every batch-1 result's shape."""
    doubled = {k: np.concatenate([v, v], axis=0) for k, v in first.items()}
    try:
        single = session.run(fetched, first)
        double = session.run(fetched, doubled)
    except Exception:
        return None
    # Statistics reduced in the graph are scalars for any batch; everything else has rows.
    works = all((s.ndim == d.ndim == 0) or (d.shape[:1] == (2,) and s.shape[:1] == (1,) and d.shape[1:] == s.shape[1:])
                for s, d in zip(single, double))
    return single if works else None
