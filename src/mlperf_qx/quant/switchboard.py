"""One FP32 graph in which every quantized op can be switched between int8 and FP32 at run time.

Built once from the FP32 model, the quantization plan and the calibrated scales: each activation
a quantized op reads gets its QuantizeLinear -> DequantizeLinear pair, each weight and int32 bias
its dequantized int8 value, and each op (a *unit*) a boolean graph input, its gate. The op reads
``If(gate) then DequantizeLinear(QuantizeLinear(operand)) else operand`` (the pair computed only
when the gate is on: on MiniLM 15% less CPU per search than a Where over a pair computed always,
the same values bit for bit). Feeding other gates gives the outputs of
the model with any set of ops kept in FP32 - no re-quantization, no recalibration, no new session
per trial; the scales are the calibrated ones throughout, exactly as the int8 model will use them.

Units are the quantized ops: those that compute (MatMul, Conv, Gemm, Add, Mul, pooling...) and the
pass-through ops that share their input's grid (Reshape, Transpose, Squeeze, MaxPool, Concat...).
The op itself is exact on the grid, but the Q/DQ written before it rounds its input: real error,
measured like any other (on magika it took the written model to 0.707 cosine while a search that
called those ops exact promised 1.0). A Linear's bias Add follows its MatMul's gate (int32 only
when both operands are int8). With every gate off the graph is the FP32 model exactly.

A gated weight or bias is not a switch in the graph but an input fed on every run: the FP32
initializer or its dequantized int8 value, both held once as onnxruntime values. Same numbers (the
op read a computed, not a constant, operand before too), but no copy of every weight per run (a
third of a small batch's run on MiniLM) and a gated model about the size of the FP32 one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from ..kernels.quantize import fake_quantize_int8, quantize_bias_int32
from ..runtime import usable_cores
from .annotate import QuantPlan
from .gated_segments import MAX_SEGMENTS, UNITS_PER_SEGMENT, SegmentedGraph, node_reads
from .op_specs import spec_for
from .scales import weight_scale

GATE_PREFIX = "qx_gate/"
SHARED_GATE = "qx_gate/shared"  # any other gated node (none today): on whenever a unit is int8
QUICK_SAMPLES = 4  # samples per single-op sensitivity trial (the search itself uses all held-out samples)
# Samples per batch, when the model takes batches: the quick samples make more than one, so that a
# trial on them alone (the search's first binary search) runs one batch per core too. On mpnet, in
# one process, build / sensitivity / search: 3.0 / 15.4 / 9.6 s with batches of 4 side by side, the
# binary search on the quick samples then one batch on one thread; 2.9 / 16.7 / 7.7 s by 2; 3.2-3.8
# / 15.9-17.4 / 8.5-8.8 s one batch after the other on two threads. The same figures every way.
BATCH_SAMPLES = 2
T, R = TypeVar("T"), TypeVar("R")


@dataclass
class OutputError:
    mean_cosine: float
    min_cosine: float
    sqnr_db: float
    accuracy: float | None = None  # top-1 of the first output against held-out labels, in %


def gate_name(unit: str) -> str:
    return GATE_PREFIX + unit


@dataclass(frozen=True)
class _Switched:
    """A weight or bias input of the gated graph: ``int8`` (dequantized) when ``gate`` is on, else ``fp32``."""
    gate: str
    int8: ort.OrtValue
    fp32: ort.OrtValue


class Switchboard:
    def __init__(self, fp32: onnx.ModelProto, plan: QuantPlan, scales: dict[str, np.float32],
                 feeds: list[dict[str, np.ndarray]], labels: list[int] | None = None, segments: int | None = None,
                 side_by_side: bool | None = None):
        self.labels = labels
        self.units = _units(fp32, plan)
        proto, initializers, switched = _gated_model(fp32, plan, scales, self.units)
        self.switched = {name: _Switched(gate, ort.OrtValue.ortvalue_from_numpy(int8),
                                         ort.OrtValue.ortvalue_from_numpy(original))
                         for name, (gate, int8, original) in switched.items()}
        self.output_names = [o.name for o in fp32.graph.output]
        types = {v.name: v.type.tensor_type.elem_type for v in fp32.graph.value_info if v.type.HasField("tensor_type")}
        segments = segments or max(1, min(MAX_SEGMENTS, len(self.units) // UNITS_PER_SEGMENT))
        # More samples than the quick ones come in several batches (``_batched``): one per core at
        # a time, each on one thread (``_each``); else each run on every core.
        self.side_by_side = usable_cores() > 1 and len(feeds) > BATCH_SAMPLES if side_by_side is None else side_by_side
        self.graph = SegmentedGraph(proto, initializers, segments, types, one_thread=self.side_by_side)
        self._first_node = self._first_gated_nodes()
        self.samples = _Samples(self, feeds)
        self.sample_count = len(feeds)
        self.reference = self.samples.reference
        # The first few samples, for the many single-op trials of the sensitivity pass: the first
        # batch (or feeds) of the held-out ones, so a trial run on them is half run on all.
        self.quick = _Subset(self, self.samples.first(QUICK_SAMPLES), labels[:QUICK_SAMPLES] if labels else None) \
            if len(feeds) > QUICK_SAMPLES else self
        # The sensitivity pass's trials run one per core already, each on the quick samples alone:
        # for them those samples make one batch, with its own all-FP32 run (fewer, larger runs: on
        # mpnet the pass took 16.7 s by 2, 15.4 s by 4; the same figures).
        self.quick_solo = self.quick
        if self.quick is not self and self.samples.batched and len(self.quick.samples.feeds) > 1:
            self.quick_solo = _Subset(self, _Samples(self, feeds[:QUICK_SAMPLES], QUICK_SAMPLES, self.reference[0]),
                                      self.quick.labels)

    def gates(self, int8: set[str]) -> dict:
        """The run's inputs besides the samples: every gate, and each switched weight's value."""
        gates = {gate_name(u): np.array(u in int8) for u in self.units}
        gates[SHARED_GATE] = np.array(bool(int8))
        values = {name: s.int8 if gates[s.gate] else s.fp32 for name, s in self.switched.items()}
        return {**gates, **values}

    def outputs(self, int8: set[str], samples: _Samples | None = None, solo: bool = False) -> list[list[np.ndarray]]:
        """The model's outputs per feed batch, with the units in ``int8`` quantized, the rest FP32.
        Each run starts at the segment of the first node whose gate differs from a remembered run
        on the same samples (the all-FP32 one, or one of the last trials): before it, every value
        is that run's (cached). A trial already run is not run again. ``solo``: on the graph's
        one-thread sessions, for trials run two at a time: started from the all-FP32 run only and
        not remembered, so that no trial's values depend on which trials happened to run beside or
        before it (they would, should one thread and two ever round a model differently)."""
        samples = samples or self.samples
        key = frozenset(int8)
        gates = self.gates(set(int8))

        def batch(k: int) -> list[np.ndarray]:
            with samples.lock:
                start, past = self._resume(key, samples.runs[k][:1] if solo else samples.runs[k])
            if start is None:
                return past.outputs
            result, crossing = self.graph.run({**samples.feeds[k], **gates}, start, past.crossing if start else None,
                                              solo)
            if not solo:
                with samples.lock:
                    samples.remember(k, _Run(key, result, crossing))
            return result

        # A solo trial runs beside another trial already: its batches one after the other.
        return _each(list(range(len(samples.feeds))), batch, self.side_by_side and not solo)

    def _resume(self, key: frozenset, runs: list[_Run]) -> tuple[int | None, _Run]:
        """(the segment to start at, the remembered run whose values before it are this trial's);
        start None: that run is this very trial."""
        best, start = runs[0], 0
        for run in runs:
            changed = [self._first_node[u] for u in key ^ run.int8 if u in self._first_node]
            if bool(key) != bool(run.int8) and SHARED_GATE in self._first_node:
                changed.append(self._first_node[SHARED_GATE])
            if not changed:
                return None, run
            segment = self.graph.segment_of(min(changed))
            if segment > start:
                best, start = run, segment
        return start, best

    def error(self, int8: set[str], solo: bool = False) -> OutputError:
        """The outputs' error against all-FP32 on every held-out sample (all-FP32 itself is the
        reference already computed: with every gate off the graph is the FP32 model)."""
        return _error(self.reference, self.outputs(int8, solo=solo) if int8 else self.reference, self.labels)

    def _first_gated_nodes(self) -> dict[str, int]:
        """unit (or SHARED_GATE) -> index of the first node its gate changes: one reading the gate
        or a weight switched by it. Absent: its gate changes nothing."""
        readers = self.graph.first_reader
        first = {}
        for unit in [*self.units, SHARED_GATE]:
            gate = gate_name(unit) if unit != SHARED_GATE else SHARED_GATE
            nodes = [readers[name] for name, s in self.switched.items() if s.gate == gate and name in readers]
            nodes += [readers[gate]] if gate in readers else []
            if nodes:
                first[unit] = min(nodes)
        return first


@dataclass
class _Run:
    int8: frozenset  # the units that ran int8
    outputs: list[np.ndarray]
    crossing: dict  # every value that crossed a segment boundary in it


RECENT_RUNS = 6  # trials remembered per feed batch besides the all-FP32 run (a give-back trial starts
                 # from the last set that met the target, a halving trial from its block's)


class _Samples:
    """Held-out samples as the switchboard runs them: the feed batches, their all-FP32 outputs, and
    per batch the runs a trial may start from (the all-FP32 run first, kept; then the latest)."""

    def __init__(self, board: Switchboard, feeds: list[dict], batch_samples: int = BATCH_SAMPLES,
                 first: list[np.ndarray] | None = None):
        self.lock = threading.Lock()
        self.feeds, runs = _batched(board, feeds, batch_samples, first)
        self.batched = runs is not None  # else one feed per sample
        gates = board.gates(set())
        runs = runs or _each(self.feeds, lambda feed: board.graph.run({**feed, **gates}), board.side_by_side)
        self.reference = [outputs for outputs, _ in runs]
        self.runs = [[_Run(frozenset(), outputs, crossing)] for outputs, crossing in runs]

    def first(self, count: int) -> _Samples:
        """The batches holding the first ``count`` samples (a batched set's first batches hold those;
        ``count`` a multiple of BATCH_SAMPLES), sharing this set's remembered runs."""
        view = object.__new__(_Samples)
        batches = -(-count // BATCH_SAMPLES) if self.batched else count  # not by len(feeds): 3 unbatched samples are 3
        view.batched, view.lock = self.batched, self.lock
        view.feeds, view.reference, view.runs = self.feeds[:batches], self.reference[:batches], self.runs[:batches]
        return view

    def remember(self, batch: int, run: _Run) -> None:
        runs = self.runs[batch]
        runs.append(run)
        if len(runs) > 1 + RECENT_RUNS:
            del runs[1]


def _each(items: list[T], call: Callable[[T], R], side_by_side: bool) -> list[R]:
    """``call`` on each item, the results in order; one item per core at a time when ``side_by_side``
    (onnxruntime runs without the GIL). Each call's numbers are its own whatever runs beside it."""
    if not side_by_side or len(items) < 2:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(usable_cores(), len(items))) as pool:
        return list(pool.map(call, items))


def _error(references: list[list[np.ndarray]], outputs: list[list[np.ndarray]], labels: list[int] | None) -> OutputError:
    """Per-sample cosine (each output flattened), SQNR and top-1 of the outputs against the references."""
    cosines, noise, signal = [], 0.0, 0.0
    for reference, candidate in zip(references, outputs):
        a = np.concatenate([r.reshape(r.shape[0], -1) for r in reference if r.ndim >= 1], axis=1).astype(np.float64)
        b = np.concatenate([c.reshape(c.shape[0], -1) for c in candidate if c.ndim >= 1], axis=1).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosines.extend(np.where(norms > 0, np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0), 1.0))
        noise += float(np.sum((a - b) ** 2))
        signal += float(np.sum(a ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(signal / noise) if signal > 0 else float("-inf")
    return OutputError(float(np.mean(cosines)), float(np.min(cosines)), float(sqnr), _accuracy(outputs, labels))




def _accuracy(outputs: list[list[np.ndarray]], labels: list[int] | None) -> float | None:
    """Top-1 of the first output, scored by the classification accuracy script's own function."""
    if labels is None:
        return None
    from ..accuracy.classification import score

    first = np.concatenate([o[0].reshape(o[0].shape[0], -1) for o in outputs])
    good, total = score({i: int(row.argmax()) for i, row in enumerate(first)}, labels)
    return 100.0 * good / max(total, 1)


class _Subset:
    """The same switchboard on its first samples (same sessions, same runs remembered)."""

    def __init__(self, board: Switchboard, samples: _Samples, labels: list[int] | None):
        self.board, self.labels, self.samples = board, labels, samples
        self.reference = self.samples.reference

    def error(self, int8: set[str], solo: bool = False) -> OutputError:
        return _error(self.reference, self.board.outputs(int8, self.samples, solo) if int8 else self.reference,
                      self.labels)


def _units(fp32: onnx.ModelProto, plan: QuantPlan) -> list[str]:
    """The quantized ops that get a gate, in graph order."""
    quantized = {d.name for d in plan.decisions if d.quantized}
    bias_adds = {b.node for b in plan.bias_uses if b.node != b.compute}
    units = []
    for node in fp32.graph.node:
        if node.name not in quantized or node.name in bias_adds:
            continue
        if spec_for(node.op_type, node.domain) is not None:
            units.append(node.name)
    return units


def _gated_model(fp32: onnx.ModelProto, plan: QuantPlan, scales: dict[str, np.float32], units: list[str]
                 ) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto], dict[str, tuple[str, np.ndarray, np.ndarray]]]:
    """The gated graph (its initializers apart: the FP32 model's own, not copied, and the new ones),
    and its switched inputs: name -> (gate, dequantized int8 value, FP32 value)."""
    proto = onnx.ModelProto(ir_version=fp32.ir_version, opset_import=fp32.opset_import, functions=fp32.functions)
    graph = proto.graph
    graph.name = fp32.graph.name
    for field in ("node", "input", "output"):
        getattr(graph, field).extend(getattr(fp32.graph, field))
    nodes = {n.name: n for n in graph.node}
    inits = {t.name: t for t in fp32.graph.initializer}
    unit_set = set(units)
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    switched: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    gate_of = {u: u for u in units}
    for use in plan.bias_uses:
        gate_of.setdefault(use.node, use.compute)

    def gate_input(node_name: str) -> str:
        gate = gate_of.get(node_name)
        return gate_name(gate) if gate is not None and gate in unit_set else SHARED_GATE

    def gated(node_name: str, index: int, scale: str, zero: str) -> None:
        """node.input[index] := If(gate) then DequantizeLinear(QuantizeLinear(it)) else it. WHY an
        If, not a Where over a Q/DQ pair computed always: the pair is computed only when the gate
        is on, and no select copies the operand (same kernels, same values bit for bit)."""
        node = nodes[node_name]
        original = node.input[index]
        switch = f"qx_fq/{original}/{node_name}/{index}"
        int8 = helper.make_graph(
            [helper.make_node("QuantizeLinear", [original, scale, zero], [f"{switch}/q"], name=f"{switch}/Q"),
             helper.make_node("DequantizeLinear", [f"{switch}/q", scale, zero], [f"{switch}/dq"], name=f"{switch}/DQ")],
            "int8", [], [helper.make_tensor_value_info(f"{switch}/dq", onnx.TensorProto.FLOAT, None)])
        fp32 = helper.make_graph([helper.make_node("Identity", [original], [f"{switch}/fp32"], name=f"{switch}/I")],
                                 "fp32", [], [helper.make_tensor_value_info(f"{switch}/fp32", onnx.TensorProto.FLOAT, None)])
        new_nodes.append(helper.make_node("If", [gate_input(node_name)], [switch], name=f"qx_switch/{node_name}/{index}",
                                          then_branch=int8, else_branch=fp32))
        node.input[index] = switch

    def switched_constant(node_name: str, index: int, fake: str, int8: np.ndarray, original: np.ndarray) -> None:
        """node.input[index] := a graph input, fed ``int8`` when the gate is on, else ``original``, the
        FP32 initializer's values."""
        node = nodes[node_name]
        switch = f"{fake}/{node_name}/{index}"
        switched[switch] = (gate_input(node_name), np.asarray(int8, dtype=original.dtype), original)
        node.input[index] = switch

    activation_scale = _fake_quantize_activations(plan, scales, new_inits, gated)
    weight_scales = {}
    for node_name, index in plan.weight_uses:
        name = nodes[node_name].input[index]
        if name not in inits or name.startswith("qx_fq/"):
            continue
        # Read once (a read of a protobuf bytes field copies it). A writable copy for the kernels: a
        # read-only array is another numba specialization, compiled on first use (+220 MB peak on MiniLM)
        original = numpy_helper.to_array(inits[name])
        weights = original.astype(np.float32)
        scale = weight_scale(weights)  # the scale insert_qdq writes (weights run on the calling thread)
        weight_scales[(node_name, index)] = scale
        flat = weights.reshape(-1)  # a view: the copy is fake-quantized in place (no third copy of the weight)
        fake = fake_quantize_int8(flat, scale, narrow=True, out=flat).reshape(weights.shape)  # 0-d too
        switched_constant(node_name, index, f"qx_fq/{name}/{node_name}", fake, original)
    for use in plan.bias_uses:
        compute = nodes[use.compute]
        s_in = activation_scale.get(compute.input[use.data_index])
        s_w = weight_scales.get((use.compute, use.weight_index))
        name = nodes[use.node].input[use.bias_index]
        if s_in is None or s_w is None or name not in inits:
            continue
        original = numpy_helper.to_array(inits[name])
        quantized, scale = quantize_bias_int32(original, s_in, s_w)
        switched_constant(use.node, use.bias_index, f"qx_fq/{name}/{use.node}",
                          quantized.astype(np.float32) * np.float32(scale), original)
    initializers = _finish_graph(graph, units, new_nodes, [*inits.values(), *new_inits], switched)
    return proto, initializers, switched


def _fake_quantize_activations(plan: QuantPlan, scales: dict[str, np.float32], new_inits: list, gated
                               ) -> dict[str, np.float32]:
    """Every quantized activation's scale and zero point, its readers gated."""
    activation_scale = {}
    for tensor, uses in plan.activation_uses.items():
        scale = np.float32(scales[plan.group_of(tensor)])
        activation_scale[tensor] = scale
        s_name, z_name = f"qx_fq/{tensor}/scale", f"qx_fq/{tensor}/zero"
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), s_name),
                      numpy_helper.from_array(np.array(0, np.int8), z_name)]
        for node_name, index in uses:
            gated(node_name, index, s_name, z_name)
    return activation_scale


def _finish_graph(graph: onnx.GraphProto, units: list[str], new_nodes: list, initializers: list,
                  switched: dict[str, tuple[str, np.ndarray, np.ndarray]]) -> dict[str, onnx.TensorProto]:
    """Gates and switched values as inputs, nodes in topological order, a free batch axis, output
    shapes left to the run; returns the initializers some node still reads."""
    read = {name for node in [*graph.node, *new_nodes] for name in node_reads(node)} | {o.name for o in graph.output}
    kept = {t.name: t for t in initializers if t.name in read}
    inputs = [i for i in graph.input if i.name not in {t.name for t in initializers} - set(kept)]  # old models
    del graph.input[:]
    graph.input.extend(inputs)
    graph.input.extend(helper.make_tensor_value_info(name, onnx.TensorProto.BOOL, [])
                       for name in [*map(gate_name, units), SHARED_GATE])
    graph.input.extend(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(original.dtype),
                                                     original.shape) for name, (_, _, original) in switched.items())
    ordered = list(new_nodes) + list(graph.node)
    del graph.node[:]
    graph.node.extend(_topological(ordered, {i.name for i in graph.input} | set(kept), len(new_nodes)))
    del graph.value_info[:]
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if not value.name.startswith(GATE_PREFIX) and value.name not in switched and len(dims) > 0:
            dims[0].Clear()
            dims[0].dim_param = "qx_batch"
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    return kept


def _topological(nodes: list[onnx.NodeProto], available: set[str], added: int = 0) -> list[onnx.NodeProto]:
    """Kahn's order, stable. The first ``added`` nodes (the fake-quantization and switch nodes) go
    as late as they can: just before the first of the others that reads them (directly or through
    another added node); among the rest the earlier in ``nodes`` goes first. WHY late: a trial
    runs from the segment of its first gated node, and a switch placed where its operand is made
    (the attention mask, made once at the input and read by every layer) would start every trial
    of a late layer's op at the first segment."""
    import heapq

    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in node_reads(node):  # a switch's branches read its operand from the outer scope
            if name not in available and name in producer:
                waiting[k] += 1
                readers.setdefault(producer[name], []).append(k)
    rank = [k - added for k in range(len(nodes))]
    for k in reversed(range(added)):  # an added node's readers come after it in the list
        rank[k] = min((rank[r] for r in readers.get(k, [])), default=len(nodes))
    ready = [(rank[k], k) for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, k = heapq.heappop(ready)
        ordered.append(nodes[k])
        for reader in readers.get(k, []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, (rank[reader], reader))
    if len(ordered) != len(nodes):
        raise ValueError("the gated graph has a cycle")
    return ordered


def _batched(board: Switchboard, feeds: list[dict[str, np.ndarray]], batch_samples: int = BATCH_SAMPLES,
             first: list[np.ndarray] | None = None) -> tuple[list[dict[str, np.ndarray]], list | None]:
    """The feeds as batches when the model takes them (same shapes, batch axis 0): ``batch_samples``
    in each, the quick samples first (a trial on them is then the first batches of one on all:
    same batches, same numbers); else one by one. Batches of a fixed size, not one per core: what
    a batch computes must not depend on the machine, and equal batches share the cores evenly.
    When batched, also the all-FP32 run of each batch (the probe run is the reference run).
    ``first``: the all-FP32 outputs of the first samples, known already (else the first sample
    runs alone): the first batch must begin with them."""
    if len(feeds) > 1 and all(f.keys() == feeds[0].keys() and all(f[k].shape == feeds[0][k].shape for k in f) for f in feeds):
        chunks = [feeds[start:start + batch_samples] for start in range(0, len(feeds), batch_samples)]
        batches = [{k: np.concatenate([f[k] for f in chunk]) for k in feeds[0]} for chunk in chunks]
        try:
            gates = board.gates(set())
            runs = _each(batches, lambda batch: board.graph.run({**batch, **gates}), board.side_by_side)
            single = first if first is not None else board.graph.run({**feeds[0], **gates})[0]
            if all(b.shape[0] == len(chunks[0]) and b.shape[1:] == s.shape[1:] and
                   np.allclose(b[:len(s)], s, rtol=1e-4, atol=1e-5) for b, s in zip(runs[0][0], single) if s.ndim >= 1):
                return batches, runs
        except Exception:
            pass
    return feeds, None
