"""The intensional verdict: is the candidate the same mathematics as the reference?

Each check reports what it measured and PASS/FAIL:
  qdq_symmetric_int8     every Q/DQ (and QOperator scale/zero point) is int8 or int32-bias,
                         zero point 0, one scalar scale; or uint8 with zero point 128 (qx's
                         QOperator activations: u = q + 128, value for value the same grid)
  weights_half_step      every int8/int32 weight dequantizes within half a step of the reference
  no_pruning             no weight zeroed that the reference rounds to non-zero
  no_replaced_weights    weight scales are max|w|/127 and bias scales s_in*s_w; float weights identical
  graph_equivalent       same compute graph modulo Q/DQ (and QOperator forms)
  calibration_provenance calibrated on exactly the given list (same ids, same count); overlap with
                         the accuracy set reported (a failure only with --forbid-overlap)
  layer_numerics         per-layer SQNR and cosine, each layer on the reference's inputs (teacher-forced),
                         within tolerances; the end-to-end drift is reported beside it
  equalization_exact     a recorded equalization, rebuilt from the FP32 reference, is an FP32 identity
                         (and the other checks then compare with the equalized reference); without a
                         record, no weight may be the reference rescaled per channel
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..calibration.readers import read_calibration_list
from ..calibration.sample_ids import ids_sha256, sample_key
from ..errors import first_line
from ..provenance import sha256_file
from ..layer_tolerance import MIN_LAYER_COSINE, MIN_LAYER_SQNR_DB, within
from ..quant.annotate import MASK_MAGNITUDE
from ..quant.op_specs import INTEGER_MATMUL, QOPERATOR_FORMS
from ..quant.uint8_activations import ZERO_POINT as UINT8_ZERO_POINT
from .equalization_check import NAME as EQUALIZATION_CHECK
from .equalization_check import equalized_reference, rescaled_channels, split_layer_partials
from .graph_match import GraphView, MatchResult, compute_view, constant_array, match_graphs, tensor_scale

HALF_STEP_SLACK = 1e-5  # relative: float32 rounding of q*s
SCALE_RTOL = 1e-3


@dataclass
class Check:
    name: str
    passed: bool
    measured: str
    detail: str = ""


@dataclass
class LayerError:
    tensor: str
    op_type: str
    sqnr_db: float
    cosine: float
    max_abs_error: float


@dataclass
class WeightFinding:
    max_error_in_half_steps: float = 0.0
    pruned: int = 0
    scale_mismatches: list[str] = None
    replaced_float: list[str] = None
    worst: str = ""
    checked: int = 0
    rescaled: list[str] = field(default_factory=list)


def audit(reference: onnx.ModelProto, candidate: onnx.ModelProto, candidate_path: Path,
          accuracy_ids: list[str], calib_list: Path | None, feeds: list[dict],
          forbid_overlap: bool = False) -> tuple[list[Check], list[LayerError]]:
    reference, equalization, record = equalized_reference(reference, candidate, feeds)
    ref_view, cand_view = compute_view(reference), compute_view(candidate)
    match = match_graphs(ref_view, cand_view)
    checks = [_check_qdq(candidate)]
    weights = _check_weights(ref_view, cand_view, match)
    if equalization is None:
        weights.rescaled += _unmatched_rescales(ref_view, cand_view, match)
        equalization = Check(EQUALIZATION_CHECK, not weights.rescaled,
                             "no equalization recorded; " + (f"{len(weights.rescaled)} weight(s) rescaled per channel"
                                                             if weights.rescaled else "no weight rescaled per channel"),
                             ("rescaled without a recorded, exact inverse: " + "; ".join(weights.rescaled[:3]))
                             if weights.rescaled else "")
    checks.append(equalization)
    checks.append(Check("weights_half_step", weights.max_error_in_half_steps <= 1.0,
                        f"max error {weights.max_error_in_half_steps:.4f} half-steps over {weights.checked} tensors",
                        weights.worst))
    checks.append(Check("no_pruning", weights.pruned == 0, f"{weights.pruned} weight(s) zeroed that round to non-zero"))
    replaced = (weights.scale_mismatches or []) + (weights.replaced_float or [])
    checks.append(Check("no_replaced_weights", not replaced, f"{len(replaced)} tensor(s) with foreign scale or values",
                        "; ".join(replaced[:3])))
    checks.append(Check("graph_equivalent", match.equal, match.detail))
    checks.append(_check_provenance(candidate, accuracy_ids, calib_list, forbid_overlap))
    partials = split_layer_partials(reference, record)
    try:
        layers, end_to_end = (_layer_errors(reference, candidate, match, feeds, partials) if match.pairs and feeds
                              else ([], []))
    except Exception as exc:  # a candidate onnxruntime cannot run is not equivalent, not a crash
        checks.append(Check("layer_numerics", False, "the candidate does not run in onnxruntime", first_line(exc, 200)))
        return checks, []
    if layers:
        worst_sqnr = min(layers, key=lambda l: l.sqnr_db)
        worst_cos = min(layers, key=lambda l: l.cosine)
        drift = min(end_to_end, key=lambda l: l.sqnr_db) if end_to_end else None
        ok = within(worst_sqnr.sqnr_db, worst_cos.cosine)
        checks.append(Check("layer_numerics", ok,
                            f"each layer on the reference's inputs: min SQNR {worst_sqnr.sqnr_db:.1f} dB "
                            f"({worst_sqnr.tensor}), min cosine {worst_cos.cosine:.4f} ({worst_cos.tensor}) over "
                            f"{len(layers)} layers" + (f" ({len(set(partials.values()))} split linear layers compared whole, "
                                                       "int8 MatMul plus FP32 outlier path)" if partials else ""),
                            f"tolerance: SQNR >= {MIN_LAYER_SQNR_DB} dB and cosine >= {MIN_LAYER_COSINE}"
                            + (f"; information, end to end (accumulated drift): min SQNR {drift.sqnr_db:.1f} dB "
                               f"({drift.tensor})" if drift else "")))
    else:
        checks.append(Check("layer_numerics", False, "no aligned layers to compare", match.detail))
    return checks, layers


def _scalar(view_or_inits, name: str):
    tensor = view_or_inits.get(name)
    return None if tensor is None else onnx.numpy_helper.to_array(tensor)


def symmetric_zero_point(dtype: np.dtype) -> int:
    """The zero point of the symmetric grid in ``dtype``: 0, or 128 in uint8, whose u = q + 128
    holds value for value what int8 q holds at zero point 0 (same scale, same [-128, 127] range)."""
    return UINT8_ZERO_POINT if dtype == np.uint8 else 0


def _check_qdq(candidate: onnx.ModelProto) -> Check:
    inits = {t.name: t for t in candidate.graph.initializer}
    problems, count = [], 0
    for node in candidate.graph.node:
        pairs = []
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            pairs.append((node.input[1], node.input[2] if len(node.input) > 2 else ""))
        elif node.op_type in QOPERATOR_FORMS:
            form = QOPERATOR_FORMS[node.op_type].qoperator
            positions = [(o.scale, o.zero_point) for o in form.operands] + [(form.output_scale, form.output_zero_point)]
            pairs += [(node.input[s], node.input[z]) for s, z in positions if z < len(node.input)]
        for scale_name, zero_name in pairs:
            count += 1
            scale = _scalar(inits, scale_name)
            zero = _scalar(inits, zero_name) if zero_name else np.zeros((), np.int8)
            if scale is None or scale.size != 1:
                problems.append(f"{node.name}: scale '{scale_name}' is not one scalar (per-channel or computed)")
            elif zero is None or zero.dtype not in (np.int8, np.int32, np.uint8):
                problems.append(f"{node.name}: quantized type {getattr(zero, 'dtype', '?')} is not int8")
            elif np.any(zero != symmetric_zero_point(zero.dtype)):
                problems.append(f"{node.name}: zero point '{zero_name}' is not {symmetric_zero_point(zero.dtype)} "
                                f"({zero.dtype})")
    return Check("qdq_symmetric_int8", not problems and count > 0,
                 f"{count} quantization parameter sets, {len(problems)} not symmetric int8 per-tensor",
                 "; ".join(problems[:3]) if problems else ("" if count else "the candidate has no quantization"))


def _dequantizer(view: GraphView, name: str):
    """(quantized array, scale) if ``name`` is a DQ of an initializer."""
    node = view.producers.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    q, scale = constant_array(view, node.input[0]), constant_array(view, node.input[1])
    return None if q is None or scale is None else (q, scale)


def _qoperator_weight(cand_node, index: int, view: GraphView):
    """QOperator weights sit inside the node: (int8/int32 array, scale) for the float op's input
    ``index``, located by the op's OpSpec (the table the lowering wrote it from)."""
    node = cand_node.node
    spec = QOPERATOR_FORMS.get(node.op_type)
    if spec is not None:
        form = spec.qoperator
        if index < len(form.operands):
            operand = form.operands[index]
            return constant_array(view, node.input[operand.value]), constant_array(view, node.input[operand.scale])
        if form.bias is not None and index == len(form.operands) and len(node.input) > form.bias:
            s_x, s_w = (constant_array(view, node.input[o.scale]) for o in form.operands[:2])
            return constant_array(view, node.input[form.bias]), np.float32(s_x) * np.float32(s_w)
        return None
    if node.op_type == INTEGER_MATMUL[1] and index == 1:
        # MatMulInteger carries no scales: s_w is the accumulator's scale (s_x*s_w) over s_x.
        s_product = _accumulator_scale(view, node.output[0])
        s_x = tensor_scale(view, node.input[0])
        if s_product is None or s_x is None or s_x == 0:
            return None
        return constant_array(view, node.input[1]), np.float32(s_product / s_x)
    if node.op_type == "Add" and index < len(node.input):
        values = constant_array(view, node.input[index])
        if values is not None and values.dtype == np.int32:  # the int32 bias added to MatMulInteger
            return values, tensor_scale(view, node.output[0])
    return None


def _int8_bound_error(view: GraphView, cand_node, cand_name: str, reference: np.ndarray) -> str | None:
    """For an int8 Clip's bound: "" if it is the reference bound on the shared grid (rounded and
    saturated, as the lowering writes it), else what is wrong; None for any other operand."""
    if cand_node.node.op_type != "Clip":
        return None
    values = constant_array(view, cand_name)
    if values is None or values.dtype not in (np.int8, np.uint8):
        return None
    scale = tensor_scale(view, cand_node.node.input[0])
    if scale is None:
        return "int8 Clip bound on a grid whose scale cannot be found"
    expected = np.clip(np.rint(reference.astype(np.float64) / np.float64(scale)), -128, 127)
    values = values.astype(np.float64) - symmetric_zero_point(values.dtype)
    return "" if np.array_equal(values, expected) else (
        f"int8 bound {values.reshape(-1)[:1]} is not the reference bound {reference.reshape(-1)[:1]} on the grid")


def _accumulator_scale(view: GraphView, name: str) -> np.float32 | None:
    """Scale of a MatMulInteger result: read where its int32 bias Add is dequantized."""
    for reader in view.consumers.get(name, []):
        if reader.op_type == "Add":
            return tensor_scale(view, reader.output[0])
    return tensor_scale(view, name)


def _check_weights(ref: GraphView, cand: GraphView, match: MatchResult) -> WeightFinding:
    finding = WeightFinding(scale_mismatches=[], replaced_float=[])
    worst = -1.0
    for ref_node, cand_node in match.pairs:
        for index, name in enumerate(ref_node.input_values):
            reference = constant_array(ref, name) if name else None
            if reference is None or reference.dtype.kind != "f" or index >= len(cand_node.input_values):
                continue
            cand_name = cand_node.input_values[index]
            bound = _int8_bound_error(cand, cand_node, cand_name, reference)
            if bound is not None:
                if bound:
                    finding.replaced_float.append(f"{name}: {bound}")
                continue
            quantized = _dequantizer(cand, cand_name) or _qoperator_weight(cand_node, index, cand)
            if quantized is None:
                values = constant_array(cand, cand_name)
                if values is None or not np.array_equal(values, reference):
                    finding.replaced_float.append(f"{name}: float values differ from the reference")
                continue
            q, scale = quantized
            if q.dtype == np.uint8:  # a constant operand of QLinearAdd/Mul on the uint8 grid: q = u - 128
                q = (q.astype(np.int16) - symmetric_zero_point(q.dtype)).astype(np.int8)
            finding.checked += 1
            scale = np.float32(np.asarray(scale).reshape(-1)[0]) if np.asarray(scale).size == 1 else None
            if scale is None:
                continue  # per-channel: reported by qdq_symmetric_int8
            error = np.abs(q.astype(np.float64) * scale - reference.astype(np.float64))
            half_steps = float(error.max() / (scale / 2)) if error.size else 0.0
            half_steps = max(0.0, half_steps - HALF_STEP_SLACK)
            if half_steps > 1.0:
                rescaled = rescaled_channels(reference, q.astype(np.float64) * scale)
                if rescaled is not None:
                    axis, low, high = rescaled
                    finding.rescaled.append(f"'{name}' is the reference's scaled along axis {axis} by ×{low:.3g}…×{high:.3g}")
            if half_steps > worst:
                worst = half_steps
                finding.worst = f"worst: {name} ({half_steps:.3f} half-steps)"
            rounds_nonzero = np.rint(reference.astype(np.float64) / scale) != 0
            finding.pruned += int(np.count_nonzero((q == 0) & rounds_nonzero))
            if q.dtype == np.int8:
                expected = np.float32(np.abs(reference).max() / 127.0)
                if expected > 0 and abs(scale - expected) > SCALE_RTOL * expected:
                    finding.scale_mismatches.append(f"{name}: scale {scale:.6g}, max|w|/127 = {expected:.6g}")
    finding.max_error_in_half_steps = max(worst, 0.0)
    return finding


def _unmatched_rescales(ref: GraphView, cand: GraphView, match: MatchResult) -> list[str]:
    """Candidate int8 weights outside the matched node pairs (the graphs differ, e.g. by an
    unrecorded inverse) that are a reference weight of the same shape rescaled per channel."""
    matched = {name for _, cand_node in match.pairs for name in cand_node.input_values if name}
    by_shape: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for name in ref.initializers:
        values = constant_array(ref, name)
        if values is not None and values.dtype.kind == "f" and values.ndim >= 2:
            by_shape.setdefault(values.shape, []).append((name, values))
    found = []
    for name, node in cand.producers.items():
        if node.op_type != "DequantizeLinear" or name in matched:
            continue
        quantized = _dequantizer(cand, name)
        if quantized is None or quantized[0].dtype != np.int8 or np.asarray(quantized[1]).size != 1:
            continue
        values = quantized[0].astype(np.float64) * float(np.asarray(quantized[1]).reshape(-1)[0])
        for ref_name, reference in by_shape.get(values.shape, []):
            rescaled = rescaled_channels(reference, values)
            if rescaled is not None:
                axis, low, high = rescaled
                found.append(f"'{ref_name}' appears scaled along axis {axis} by ×{low:.3g}…×{high:.3g}")
                break
    return found


OVERLAP_RULE = ("MLPerf's rule is that calibration uses exactly the published calibration list, which may be drawn "
                "from the accuracy set (ImageNet's cal_image_list_option_1.txt names 500 validation images)")


def _check_provenance(candidate: onnx.ModelProto, accuracy_ids: list[str], calib_list: Path | None,
                      forbid_overlap: bool = False) -> Check:
    """The candidate was calibrated on exactly ``calib_list``: the same ids in the same order, all
    of them. Overlap with the accuracy set is reported, and fails only under ``forbid_overlap``."""
    props = {p.key: p.value for p in candidate.metadata_props}
    if "qx.quantization" not in props:
        return Check("calibration_provenance", False, "no qx.quantization metadata",
                     "the candidate does not record how its scales were calibrated")
    info = json.loads(props["qx.quantization"])
    recorded_file = info.get("calibration_list_sha256", "")
    recorded_ids = info.get("calibration_ids_sha256", "")
    recorded_count = info.get("calibration_samples")
    if calib_list is None:
        return Check("calibration_provenance", bool(recorded_file),
                     f"{recorded_count} samples, list sha256 {recorded_file[:12]}…",
                     "pass --calib-list to check that the candidate was calibrated on exactly that list")
    ids = read_calibration_list(calib_list)
    file_matches = sha256_file(calib_list) == recorded_file
    # The ids fingerprint ignores the list's layout (labels, extensions); older models record only the file hash.
    same_ids = ids_sha256(ids) == recorded_ids if recorded_ids else file_matches
    exact = same_ids and recorded_count == len(ids)
    overlap = sorted({sample_key(i) for i in ids} & {sample_key(i) for i in accuracy_ids})
    detail = []
    if not exact:
        if same_ids or file_matches:
            detail.append(f"the candidate was calibrated on {recorded_count} of the {len(ids)} ids of {calib_list.name}, "
                          "not the whole list")
        else:
            detail.append(f"{calib_list.name} is not the list the candidate was calibrated on (its ids differ from "
                          f"the {recorded_count} recorded in the model)")
    if overlap:
        if forbid_overlap:
            detail.append(f"{len(overlap)} calibration id(s) are in the accuracy set, e.g. {overlap[0]} "
                          "(--forbid-overlap)")
        else:
            detail.append(f"information: {len(overlap)} calibration id(s) are also in the accuracy set, e.g. "
                          f"{overlap[0]}; allowed: {OVERLAP_RULE}; --forbid-overlap makes this a failure")
    passed = exact and not (overlap and forbid_overlap)
    return Check("calibration_provenance", passed,
                 f"{len(ids)} ids in {calib_list.name}, {'exactly the calibration recorded' if exact else 'not the recorded calibration'}; "
                 f"{len(overlap)} in the accuracy set", "; ".join(detail))


def _layer_errors(reference, candidate, match: MatchResult, feeds: list[dict],
                  partials: dict[str, str] | None = None) -> tuple[list[LayerError], list[LayerError]]:
    """(local, end to end) per-layer errors. Local: the candidate runs teacher-forced, every
    QuantizeLinear reading the reference's value of its tensor, so each layer's error is its own
    quantization's, not the drift of the layers before it (a 12-layer transformer drifts more at
    depth than any single layer errs; that drift is what the extensional verdict measures).
    Streamed sample by sample: a BERT-base's 600 layers over 32 samples do not fit in memory.
    ``partials`` (partial sums inside a split linear layer) are neither compared nor forced: such a
    layer runs on its own from its input to its output after the outlier Add."""
    from ..quant.runtime_check import with_outputs
    from ..runtime import open_session

    pairs = []
    for ref_node, cand_node in match.pairs:
        if ref_node.op_type in ("Shape", "Constant") or not ref_node.node.output or ref_node.node.output[0] in (partials or {}):
            continue
        pairs.append((ref_node, cand_node))
    ref_names = [r.node.output[0] for r, _ in pairs]
    cand_names = [c.node.output[0] for _, c in pairs]
    forced, sources = _teacher_forced(candidate, reference, partials)
    wanted = sorted(set(ref_names) | set(sources.values()))
    sessions = [open_session(with_outputs(proto, names)) for proto, names in
                ((reference, wanted), (forced, cand_names), (candidate, cand_names))]
    view = compute_view(candidate)
    local, end_to_end = _LayerStats(pairs), _LayerStats(pairs)
    for feed in feeds:
        ref = dict(zip(wanted, sessions[0].run(wanted, feed)))
        forced_feed = {**feed, **{new: ref[name] for new, name in sources.items()}}
        local.add(ref, ref_names, dict(zip(cand_names, sessions[1].run(cand_names, forced_feed))), cand_names, view)
        end_to_end.add(ref, ref_names, dict(zip(cand_names, sessions[2].run(cand_names, feed))), cand_names, view)
    return local.errors(), end_to_end.errors()


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
            # Masking values (-3.4e38 in additive attention masks) are not signal: compare the rest.
            keep = (np.abs(a) < MASK_MAGNITUDE) & np.isfinite(b)
            a, b = a[keep].astype(np.float64), b[keep].astype(np.float64)
            sums = self.sums.setdefault(index, np.zeros(6))
            sums += [np.sum(a * a), np.sum((a - b) ** 2), np.sum(a * b), np.sum(b * b), 0.0, a.size]
            sums[4] = max(sums[4], float(np.max(np.abs(a - b))) if a.size else 0.0)

    def errors(self) -> list[LayerError]:
        layers = []
        for index, (signal, noise, dot, norm_b, max_abs, _) in sorted(self.sums.items()):
            ref_node = self.pairs[index][0]
            sqnr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
            denominator = np.sqrt(signal * norm_b)
            layers.append(LayerError(ref_node.node.output[0], ref_node.op_type, float(sqnr),
                                     float(dot / denominator) if denominator else 1.0, float(max_abs)))
        return layers


def checks_as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
