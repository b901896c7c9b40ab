"""The ``layer_numerics`` check: per-layer SQNR and cosine of the candidate against the
reference, each layer on the reference's inputs (teacher-forced), within the tolerances of
``layer_tolerance``; the end-to-end drift is reported beside it.

Three kinds of failure are kept apart: a candidate that does not run in onnxruntime FAILs the
check; a reference that does not run is the user's input (exit 2); a graph qx built for the
measurement (teacher-forced, tensors exposed as outputs) that onnxruntime refuses is qx's own
failure (exit 3, with onnxruntime's cause), never a verdict on the user's model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import onnx

from ..errors import InternalError, UserInputError, first_line
from ..layer_tolerance import MIN_LAYER_COSINE, MIN_LAYER_SQNR_DB, within
from ..quant.annotate import MASK_MAGNITUDE
from ..quant.op_specs import QOPERATOR_FORMS
from ..quant.uint8_activations import symmetric_zero_point
from .graph_match import MatchResult, compute_view, tensor_scale

NAME = "layer_numerics"


@dataclass
class LayerError:
    tensor: str
    op_type: str
    sqnr_db: float
    cosine: float
    max_abs_error: float


def layer_numerics_check(reference: onnx.ModelProto, candidate: onnx.ModelProto, match: MatchResult,
                         feeds: list[dict], partials: dict[str, str]):
    """(the check, the per-layer errors)."""
    from .audit import Check

    if not feeds:
        return Check(NAME, False, "not checked: no samples to run", "", not_checked=True), []
    if not match.pairs:
        return Check(NAME, False, "not checked: no layer of the candidate is aligned with the reference",
                     f"graph_equivalent: {match.detail}", not_checked=True), []
    try:
        layers, end_to_end = _layer_errors(reference, candidate, match, feeds, partials)
    except Exception as exc:  # noqa: BLE001 - sorted into the candidate's, the user's or qx's failure
        return _runtime_failure(reference, candidate, feeds[0], exc), []
    if not layers:
        return Check(NAME, False, "not checked: no aligned layer has a float output to compare",
                     f"{len(match.pairs)} aligned nodes, all int8 pass-through or shape arithmetic",
                     not_checked=True), []
    worst_sqnr = min(layers, key=lambda l: l.sqnr_db)
    worst_cos = min(layers, key=lambda l: l.cosine)
    drift = min(end_to_end, key=lambda l: l.sqnr_db) if end_to_end else None
    split = len(set(partials.values()))
    measured = (f"each layer on the reference's inputs: min SQNR {worst_sqnr.sqnr_db:.1f} dB ({worst_sqnr.tensor}), "
                f"min cosine {worst_cos.cosine:.4f} ({worst_cos.tensor}) over {len(layers)} layers"
                + (f" ({split} split linear layers compared whole, int8 MatMul plus FP32 outlier path)" if split else ""))
    detail = (f"tolerance: SQNR >= {MIN_LAYER_SQNR_DB} dB and cosine >= {MIN_LAYER_COSINE}"
              + (f"; information, end to end (accumulated drift): min SQNR {drift.sqnr_db:.1f} dB ({drift.tensor})"
                 if drift else ""))
    return Check(NAME, within(worst_sqnr.sqnr_db, worst_cos.cosine), measured, detail), layers


def _runtime_failure(reference: onnx.ModelProto, candidate: onnx.ModelProto, feed: dict, cause: Exception):
    """Whose failure ``cause`` is: the candidate's (a FAIL), the reference's (bad input) or qx's."""
    from .audit import Check

    for role, proto in (("candidate", candidate), ("reference", reference)):
        problem = _plain_run_problem(proto, feed)
        if problem and role == "candidate":
            return Check(NAME, False, "the candidate does not run in onnxruntime", problem)
        if problem:
            raise UserInputError(f"the reference does not run in onnxruntime: {problem}")
    raise InternalError(f"layer_numerics: onnxruntime refused a graph qx built to measure the layers (both models run "
                        f"as they are): {first_line(cause, 400)}") from cause


def _plain_run_problem(proto: onnx.ModelProto, feed: dict) -> str:
    from ..runtime import open_session

    try:
        open_session(proto).run(None, feed)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types; the message is the finding
        return first_line(exc, 300)
    return ""


def _layer_errors(reference, candidate, match: MatchResult, feeds: list[dict],
                  partials: dict[str, str] | None = None, end_to_end: bool = True, opened=None
                  ) -> tuple[list[LayerError], list[LayerError]]:
    """(local, end to end) per-layer errors. Local: the candidate runs teacher-forced, every
    QuantizeLinear reading the reference's value of its tensor, so each layer's error is its own
    quantization's, not the drift of the layers before it (a 12-layer transformer drifts more at
    depth than any single layer errs; that drift is what the extensional verdict measures).
    Streamed sample by sample: a BERT-base's 600 layers over 32 samples do not fit in memory.
    ``partials`` (partial sums inside a split linear layer) are neither compared nor forced: such a
    layer runs on its own from its input to its output after the outlier Add. Without
    ``end_to_end`` (quantize reads only the local errors) that list is empty and costs nothing.
    Each model's weights go to onnxruntime by reference (``quant.weights_apart``): the graphs built
    for the measurement are copied, inferred and opened without them, their sessions side by side.
    ``opened``: the reference made apart once for several candidates (``weights_apart.OpenedOnce``,
    quantize's rounds)."""
    from ..quant.runtime_check import with_outputs
    from ..background import together
    from ..quant.weights_apart import open_apart, weights_apart

    (reference, ref_weights) = opened.apart if opened is not None else weights_apart(reference)
    candidate, cand_weights = weights_apart(candidate)
    pairs, candidate, forced, sources, wanted = _measured(reference, candidate, match, partials)
    cand_names = [c.node.output[0] for _, c in pairs]
    ref_names = [r.node.output[0] for r, _ in pairs]
    runs = [(reference, wanted, ref_weights), (forced, cand_names, cand_weights)]
    # Their worker threads stop spinning after each run: numpy sums the last sample meanwhile (10 %
    # less time and CPU on mpnet's check, measured here under load)
    sessions = together(*[partial(open_apart, with_outputs(proto, names), weights, spin_between_runs=False)
                          for proto, names, weights in runs + ([(candidate, cand_names, cand_weights)] if end_to_end else [])])
    view = compute_view(candidate)
    local, drift = _LayerStats(pairs), _LayerStats(pairs)

    def run(feed: dict) -> tuple[dict, dict, dict | None]:
        ref = dict(zip(wanted, sessions[0].run(wanted, feed)))
        forced_feed = {**feed, **{new: ref[name] for new, name in sources.items()}}
        forced_out = dict(zip(cand_names, sessions[1].run(cand_names, forced_feed)))
        return ref, forced_out, dict(zip(cand_names, sessions[2].run(cand_names, feed))) if end_to_end else None

    # The next sample runs in onnxruntime (without the GIL) while this one's sums are taken in
    # numpy: the same runs and the same sums in the same order, two samples in memory at most.
    with ThreadPoolExecutor(max_workers=1) as runner:
        pending = runner.submit(run, feeds[0]) if feeds else None
        for index in range(len(feeds)):
            ref, forced_out, plain_out = pending.result()
            pending = runner.submit(run, feeds[index + 1]) if index + 1 < len(feeds) else None
            local.add(ref, ref_names, forced_out, cand_names, view)
            if end_to_end:
                drift.add(ref, ref_names, plain_out, cand_names, view)
            del ref, forced_out, plain_out
    return local.errors(), drift.errors()


def _measured(reference: onnx.ModelProto, candidate: onnx.ModelProto, match: MatchResult,
              partials: dict[str, str] | None) -> tuple[list, onnx.ModelProto, onnx.ModelProto, dict[str, str], list[str]]:
    """What is compared and run, from the models apart: (the aligned pairs compared, the candidate
    with inferred types, the candidate teacher-forced, {its new input: reference tensor}, the
    reference's tensors to expose)."""
    candidate = _with_inferred_types(candidate)  # exposed outputs are declared with their real types
    pairs = _comparable_pairs(match, _elem_types(_with_inferred_types(reference)), _elem_types(candidate), partials)
    forced, sources = _teacher_forced(candidate, reference, partials)
    return pairs, candidate, forced, sources, sorted({r.node.output[0] for r, _ in pairs} | set(sources.values()))


def _comparable_pairs(match: MatchResult, ref_types: dict[str, int], cand_types: dict[str, int],
                      partials: dict[str, str] | None) -> list:
    """The aligned nodes whose float outputs are compared."""
    pairs = []
    for ref_node, cand_node in match.pairs:
        if ref_node.op_type in ("Shape", "Constant") or not ref_node.node.output or ref_node.node.output[0] in (partials or {}):
            continue
        if onnx.TensorProto.UNDEFINED in (ref_types.get(ref_node.node.output[0]), cand_types.get(cand_node.node.output[0])):
            continue  # a sequence (SequenceEmpty, SplitToSequence): no array to compare, and no tensor output to expose
        if ref_types.get(ref_node.node.output[0], onnx.TensorProto.FLOAT) not in FLOAT_TYPES:
            continue  # integer shape arithmetic (a one-hot's Reshape of int64): not a layer to compare
        pairs.append((ref_node, cand_node))
    return pairs


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def _elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    """{value: element type}; a sequence, map or optional maps to UNDEFINED: not a layer to compare
    (a dynamo-exported EmbeddingBag's SequenceEmpty exposed as a float tensor fails the session)."""
    graph = proto.graph
    declared = (*graph.value_info, *graph.input, *graph.output)
    return {v.name: v.type.tensor_type.elem_type if v.type.HasField("tensor_type") else onnx.TensorProto.UNDEFINED
            for v in declared if v.type.tensor_type.elem_type or v.type.WhichOneof("value") not in (None, "tensor_type")}


def _with_inferred_types(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with onnx's inferred value types where it declares none: a tensor exposed as an
    output without its type would be declared float, and onnxruntime refuses an int64 one so
    declared. Unchanged where inference fails (custom ops, past 2 GB)."""
    try:
        return onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - inference is a best effort; the declared types stay
        return proto


def _teacher_forced(candidate: onnx.ModelProto, reference: onnx.ModelProto,
                    partials: dict[str, str] | None = None) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The candidate with every input that the reference also computes (an activation before its
    QuantizeLinear, a residual, a LayerNorm output...) read from a new graph input instead, so each
    node sees the reference's values, quantized where the candidate quantizes them; returns it and
    {new input: reference tensor}."""
    graph = reference.graph
    floats = {v.name for v in (*graph.value_info, *graph.output) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    computed = ({o for n in graph.node for o in n.output} & floats) - set(partials or ())  # shape arithmetic stays the candidate's own
    proto = onnx.ModelProto()
    proto.CopyFrom(candidate)
    initializers = {t.name for t in proto.graph.initializer}
    sources: dict[str, str] = {}
    for node in proto.graph.node:
        for index, name in enumerate(node.input):
            if not name or name in initializers or name not in computed:
                continue
            forced = f"qx_reference/{name}"
            if forced not in sources:
                sources[forced] = name
                proto.graph.input.append(onnx.helper.make_tensor_value_info(forced, onnx.TensorProto.FLOAT, None))
            node.input[index] = forced
    return proto, sources


class _LayerStats:
    """Per aligned layer, sums over samples for SQNR, cosine and max abs error."""

    def __init__(self, pairs):
        self.pairs = pairs
        self.sums: dict[int, np.ndarray] = {}  # index -> [signal, noise, dot, norm_b, max_abs, count]
        self.scratch = _Scratch()

    def add(self, ref_out, ref_names, cand_out, cand_names, view) -> None:
        for index, ((ref_node, cand_node), ref_name, cand_name) in enumerate(zip(self.pairs, ref_names, cand_names)):
            a, b = ref_out[ref_name], cand_out[cand_name]
            if b.dtype in (np.int8, np.uint8, np.int32):
                if cand_node.node.op_type != "Add" and cand_node.node.op_type not in QOPERATOR_FORMS:
                    continue  # an int8 pass-through op (its input layer was compared) or a bare accumulator
                scale = tensor_scale(view, cand_name)
                if scale is None:
                    continue
                b = (b.astype(np.float32) - symmetric_zero_point(b.dtype)) * scale
            if a.dtype.kind != "f" or a.shape != b.shape:
                continue
            self._add(self.sums.setdefault(index, np.zeros(6)), a, b)

    def _add(self, sums: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """The layer's sums over one sample. Each product is taken into a buffer kept between
        layers and summed by np.sum as before (the same pairwise sums of the same values, to the
        bit): a BERT's 500 layers allocated and freed a dozen float64 arrays each."""
        same = _same_bits(a, b)  # an FP32 layer on the reference's inputs
        scratch = self.scratch
        if _nothing_masked(a, b):  # every value compared: the values of a[keep] in their order, without the gather
            a = scratch.float64(0, a)
            b = None if same else scratch.float64(1, b)
        else:  # Masking values (-3.4e38 in additive attention masks) are not signal: compare the rest.
            keep = (np.abs(a) < MASK_MAGNITUDE) & np.isfinite(b)
            a, b = a[keep].astype(np.float64), None if same else b[keep].astype(np.float64)
        if same:  # b is a, bit for bit: no error (x - x is +0), and a*b and b*b are a*a: the same sums, once
            signal = scratch.sum_of_products(a, a)
            sums += [signal, 0.0, signal, signal, 0.0, a.size]
            return
        error = np.subtract(a, b, out=scratch.buffer(2, a.size))
        sums += [scratch.sum_of_products(a, a), scratch.sum_of_products(error, error), scratch.sum_of_products(a, b),
                 scratch.sum_of_products(b, b), 0.0, a.size]
        sums[4] = max(sums[4], float(np.max(np.abs(error, out=scratch.buffer(3, a.size)))) if a.size else 0.0)

    def errors(self) -> list[LayerError]:
        layers = []
        for index, (signal, noise, dot, norm_b, max_abs, _) in sorted(self.sums.items()):
            ref_node = self.pairs[index][0]
            sqnr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
            denominator = np.sqrt(signal * norm_b)
            layers.append(LayerError(ref_node.node.output[0], ref_node.op_type, float(sqnr),
                                     float(dot / denominator) if denominator else 1.0, float(max_abs)))
        return layers


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` (of one shape) hold the same bits, compared in place (not copied to bytes)."""
    if a.dtype != b.dtype:
        return False
    bits = np.dtype(f"u{a.dtype.itemsize}")
    return bool(np.array_equal(a.view(bits), b.view(bits)))


def _nothing_masked(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``(abs(a) < MASK_MAGNITUDE) & isfinite(b)`` holds everywhere, from four reductions
    instead of four arrays: a NaN makes its max and min NaN, which fails both tests as it fails the
    elementwise ones."""
    if not a.size:
        return True
    return bool(max(a.max(), -a.min()) < MASK_MAGNITUDE and np.isfinite(b.max()) and np.isfinite(b.min()))


class _Scratch:
    """float64 buffers reused from layer to layer (grown to the largest layer)."""

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = [np.empty(0)] * 4

    def buffer(self, slot: int, size: int) -> np.ndarray:
        if self.buffers[slot].size < size:
            self.buffers[slot] = np.empty(size)
        return self.buffers[slot][:size]

    def float64(self, slot: int, values: np.ndarray) -> np.ndarray:
        """``values.astype(np.float64).ravel()``, into buffer ``slot``."""
        out = self.buffer(slot, values.size)
        np.copyto(out.reshape(values.shape), values)
        return out

    def sum_of_products(self, x: np.ndarray, y: np.ndarray) -> float:
        """``np.sum(x * y)``: the same pairwise sum, the product taken into buffer 3."""
        return np.sum(np.multiply(x, y, out=self.buffer(3, x.size)))
