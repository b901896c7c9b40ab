"""The switchboard's gated graph cut into consecutive segments, one onnxruntime session each.

Everything a trial computes before its first int8 op is the FP32 reference, bit for bit: only a
gated op reads a gate. So a trial starts at the segment holding its first gated node, from the
values the all-FP32 run left at that segment's boundary (cached once per batch of samples), or
after the last gate it shares with another remembered run (the switchboard's ``_resume``). The
sensitivity pass, one trial per block and per op, then computes on average half the graph; the
search's own trials, whose first int8 op is near the input, run every segment.

Cuts are placed near evenly spaced node positions, where the fewest values cross (a transformer's
layer boundary: the hidden state and the attention mask), and only where every crossing value's
element type is known (it becomes a segment's declared input). The segments run exactly the ops
of the whole graph on the same values (no fusion spans a switch or a gate input): checked equal,
bit for bit, to one session of the whole graph in the tests.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from ..runtime import open_session, usable_cores
from ..session_weights import tensors_by_reference

UNITS_PER_SEGMENT = 16  # about one segment per this many gated ops (MiniLM's 141: 9 segments)
MAX_SEGMENTS = 32


@dataclass
class _Segment:
    first_node: int  # index in the whole graph's node list
    session: object
    inputs: list[str]
    outputs: list[str]
    weights: dict  # the arrays onnxruntime reads its large initializers from, alive as long as the session
    model: onnx.ModelProto  # its graph, weights by reference: for the one-thread session
    solo: object = None  # the same graph on one thread (``SegmentedGraph.solo``)


class SegmentedGraph:
    """``run(feed, start, cached)``: the graph's outputs, from segment ``start`` on, the values
    crossing into it taken from ``cached`` (a previous run's crossing values on the same samples)."""

    def __init__(self, proto: onnx.ModelProto, initializers: dict[str, onnx.TensorProto], segments: int,
                 known_types: dict[str, int], one_thread: bool = False):
        """``one_thread``: every session on one thread, for a caller that runs one batch per core
        (``solo`` then has nothing to build)."""
        self.one_thread = one_thread
        graph = proto.graph
        nodes = list(graph.node)
        self.output_names = [o.name for o in graph.output]
        producer = {name: k for k, node in enumerate(nodes) for name in node.output if name}
        reads = [node_reads(node) for node in nodes]
        last_read = {}
        for k, names in enumerate(reads):
            for name in names:
                if name in producer:
                    last_read[name] = k
        for name in self.output_names:
            last_read[name] = len(nodes)
        types = _element_types(proto, initializers, known_types)
        cuts = _cuts(len(nodes), segments, producer, last_read, types)
        self.first_reader: dict[str, int] = {}
        for k, names in enumerate(reads):
            for name in names:
                self.first_reader.setdefault(name, k)
        # Built side by side, one per core: onnxruntime releases the GIL while it builds a session
        # (the segments are independent: the same sessions, in the same order).
        with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
            self.segments = list(pool.map(lambda cut: _segment(proto, initializers, nodes, reads, *cut, producer,
                                                               last_read, types, one_thread), zip(cuts, cuts[1:])))

    def solo(self, on: bool) -> None:
        """One-thread sessions of every segment (``on``), for runs made two at a time; or dropped.
        WHY: two trials at once on one thread each took 18-32 % less CPU than one after the other on
        two threads (mpnet; onnxruntime's threads wait for each other at every operator), and the
        outputs are bit-identical on one thread and on two (tests)."""
        if not on or self.one_thread:  # one-thread sessions already: ``run`` takes them
            for segment in self.segments:
                segment.solo = None
            return

        def build(segment: _Segment) -> None:
            segment.solo = open_session(segment.model, threads=1, spin_between_runs=False,
                                        external_weights=segment.weights)

        with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
            list(pool.map(build, self.segments))

    def segment_of(self, node_index: int) -> int:
        """The segment holding node ``node_index`` (the last one starting at or before it)."""
        return max(k for k, s in enumerate(self.segments) if s.first_node <= node_index)

    def run(self, feed: dict, start: int = 0, cached: dict | None = None, solo: bool = False
            ) -> tuple[list[np.ndarray], dict]:
        """(the graph's outputs, every value that crossed a cut in this run or came from ``cached``);
        ``solo``: on the one-thread sessions."""
        values = {**(cached or {}), **feed}
        crossing = dict(cached or {})
        for segment in self.segments[start:]:
            session = (segment.solo or segment.session) if solo else segment.session
            results = session.run(segment.outputs, {name: values[name] for name in segment.inputs})
            values.update(zip(segment.outputs, results))
            crossing.update(zip(segment.outputs, results))
        return [values[name] for name in self.output_names], crossing


def node_reads(node: onnx.NodeProto) -> set[str]:
    """The values a node reads, its subgraphs' outer-scope reads included."""
    names = {name for name in node.input if name}
    for attribute in node.attribute:
        for body in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
            inner = {name for n in body.node for name in n.output} | {i.name for i in body.input}
            inner |= {t.name for t in body.initializer}
            names |= {name for n in body.node for name in node_reads(n) if name not in inner}
    return names


def _element_types(proto: onnx.ModelProto, initializers: dict[str, onnx.TensorProto], known: dict[str, int]
                   ) -> dict[str, int]:
    """name -> element type, where known: ``known`` (the FP32 model's value types), declared, or of
    the switchboard's own Q/DQ/Where nodes."""
    graph = proto.graph
    types = dict(known)
    types |= {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]
             if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
    types.update({t.name: t.data_type for t in initializers.values()})
    for node in graph.node:
        if node.output and node.output[0] not in types:
            if node.op_type == "QuantizeLinear" and len(node.input) > 2:
                known = types.get(node.input[2])
            elif node.op_type == "DequantizeLinear":
                known = types.get(node.input[1])
            elif node.op_type == "Where":
                known = types.get(node.input[1]) or types.get(node.input[2])
            elif node.op_type == "If":  # the switchboard's switches: their branches declare it
                branch = next(a.g for a in node.attribute if a.name == "then_branch")
                known = branch.output[0].type.tensor_type.elem_type
            else:
                known = None
            if known:
                types[node.output[0]] = known
    return types


def _cuts(count: int, segments: int, producer: dict, last_read: dict, types: dict) -> list[int]:
    """Node indices where a segment starts (0 first) and ``count`` (the end)."""
    # Values crossing position k: produced before k, read at or after k. Counted by a sweep: how
    # many cross, and how many of those have no known element type (no cut there).
    crossing, untyped = np.zeros(count + 2, np.int64), np.zeros(count + 2, np.int64)
    for name, made in producer.items():
        last = min(last_read.get(name, -1), count)
        if last > made:
            crossing[made + 1] += 1
            crossing[last + 1] -= 1
            if name not in types:
                untyped[made + 1] += 1
                untyped[last + 1] -= 1
    crossing, untyped = np.cumsum(crossing), np.cumsum(untyped)
    cuts = [0]
    window = count // (2 * max(segments, 1))
    for j in range(1, segments):
        target = j * count // segments
        eligible = [k for k in range(max(cuts[-1] + 1, target - window), min(count, target + window + 1))
                    if untyped[k] == 0]
        if eligible:
            cuts.append(min(eligible, key=lambda k: (crossing[k], abs(k - target))))
    return [*cuts, count]


def _segment(proto: onnx.ModelProto, initializers: dict[str, onnx.TensorProto], nodes: list, reads: list[set[str]],
             first: int, end: int, producer: dict, last_read: dict, types: dict, one_thread: bool = False) -> _Segment:
    graph = proto.graph
    read = set().union(*reads[first:end]) if end > first else set()
    crossing_in = sorted(name for name in read if name in producer and producer[name] < first)
    outputs = [name for node in nodes[first:end] for name in node.output
               if name and last_read.get(name, -1) >= end]
    inputs = [helper.make_tensor_value_info(name, types[name], None) for name in crossing_in]
    inputs += [i for i in graph.input if i.name in read]
    declared = {o.name: o for o in graph.output}
    values = [declared.get(name) or helper.make_tensor_value_info(name, types[name], None) for name in outputs]
    written, weights = tensors_by_reference(initializers[name] for name in sorted(read) if name in initializers)
    body = helper.make_graph(nodes[first:end], f"{graph.name}_{first}", inputs, values, written)
    model = helper.make_model(body, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    model.functions.extend(proto.functions)
    session = open_session(model, spin_between_runs=False, external_weights=weights, threads=1 if one_thread else 0)
    return _Segment(first, session, [i.name for i in session.get_inputs()], outputs, weights, model)
