"""The intensional verdict: is the candidate the same mathematics as the reference?

Each check reports what it measured and PASS, FAIL or NOT CHECKED (it had nothing to check, e.g.
no weight aligned: never a PASS; the verdict is then INCONCLUSIVE unless another check FAILs):
  canonicalization_replayed  the reference is the user's FP32 file after exactly the canonicalization
                         passes the candidate records, and the replay changed what the record says
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
from ..provenance import sha256_file
from ..quant.op_specs import INTEGER_MATMUL, QOPERATOR_FORMS
from ..quant.uint8_activations import symmetric_zero_point
from .canonical_check import canonical_reference
from .equalization_check import NAME as EQUALIZATION_CHECK
from .equalization_check import equalized_reference, rescaled_channels, split_layer_partials
from .graph_match import GraphView, MatchResult, compute_view, constant_array, match_graphs, tensor_scale
from .layer_numerics import LayerError, layer_numerics_check

HALF_STEP_SLACK = 1e-5  # relative: float32 rounding of q*s
SCALE_RTOL = 1e-3


@dataclass
class Check:
    """One check's finding. ``not_checked``: the check had nothing to check (no aligned weight, no
    sample...): it is not a PASS (``passed`` is False) and not a FAIL; ``detail`` says why."""

    name: str
    passed: bool
    measured: str
    detail: str = ""
    not_checked: bool = False

    @property
    def status(self) -> str:
        return "NOT CHECKED" if self.not_checked else ("PASS" if self.passed else "FAIL")


@dataclass
class WeightFinding:
    max_error_in_half_steps: float = 0.0
    pruned: int = 0
    scale_mismatches: list[str] = None
    replaced_float: list[str] = None
    worst: str = ""
    checked: int = 0  # int8/int32 weights compared with a reference weight
    float_compared: int = 0  # float weights compared for identity
    rescaled: list[str] = field(default_factory=list)
    rescale_candidates: int = 0  # unaligned int8 weights searched for a per-channel rescale


def audit(reference: onnx.ModelProto, candidate: onnx.ModelProto, candidate_path: Path,
          accuracy_ids: list[str], calib_list: Path | None, feeds: list[dict],
          forbid_overlap: bool = False) -> tuple[list[Check], list[LayerError]]:
    reference, canonical = canonical_reference(reference, candidate)
    reference, equalization, record = equalized_reference(reference, candidate, feeds, canonical is not None)
    ref_view, cand_view = compute_view(reference), compute_view(candidate)
    match = match_graphs(ref_view, cand_view)
    checks = [_check_qdq(candidate)] + ([canonical] if canonical is not None else [])
    weights = _check_weights(ref_view, cand_view, match)
    if equalization is None:
        found, weights.rescale_candidates = _unmatched_rescales(ref_view, cand_view, match)
        weights.rescaled += found
        equalization = _unrecorded_rescale_check(weights, match)
    checks.append(equalization)
    checks += _weight_checks(weights, match)
    unrecorded = ("; the candidate records no canonicalization (qx.canonicalization), so it is compared with the "
                  "reference as given" if canonical is None and not match.equal else "")
    checks.append(Check("graph_equivalent", match.equal, match.detail + unrecorded))
    checks.append(_check_provenance(candidate, accuracy_ids, calib_list, forbid_overlap))
    layer_check, layers = layer_numerics_check(reference, candidate, match, feeds, split_layer_partials(reference, record))
    checks.append(layer_check)
    return checks, layers


def _nothing_aligned(match: MatchResult) -> str:
    return (f"no weight of the candidate is aligned with a reference weight (graph_equivalent: {match.detail})"
            if not match.equal else "the aligned layers hold no int8 weight")


def _unrecorded_rescale_check(weights: WeightFinding, match: MatchResult) -> Check:
    if weights.rescaled:
        return Check(EQUALIZATION_CHECK, False, f"no equalization recorded; {len(weights.rescaled)} weight(s) rescaled "
                     "per channel", "rescaled without a recorded, exact inverse: " + "; ".join(weights.rescaled[:3]))
    searched = weights.checked + weights.rescale_candidates
    if not searched:
        return Check(EQUALIZATION_CHECK, False, "not checked: no int8 weight to compare with the reference's",
                     _nothing_aligned(match), not_checked=True)
    return Check(EQUALIZATION_CHECK, True, f"no equalization recorded; none of {searched} int8 weight(s) is the "
                 "reference's rescaled per channel (beyond half an int8 step)")


def _weight_checks(weights: WeightFinding, match: MatchResult) -> list[Check]:
    if not weights.checked:
        why = _nothing_aligned(match)
        half_step = Check("weights_half_step", False, "not checked: 0 int8 weights aligned", why, not_checked=True)
        pruning = Check("no_pruning", False, "not checked: 0 int8 weights aligned", why, not_checked=True)
    else:
        half_step = Check("weights_half_step", weights.max_error_in_half_steps <= 1.0,
                          f"max error {weights.max_error_in_half_steps:.4f} half-steps over {weights.checked} tensors",
                          weights.worst)
        pruning = Check("no_pruning", weights.pruned == 0,
                        f"{weights.pruned} weight(s) zeroed that round to non-zero over {weights.checked} tensors")
    replaced = (weights.scale_mismatches or []) + (weights.replaced_float or [])
    compared = weights.checked + weights.float_compared
    if compared:
        replacement = Check("no_replaced_weights", not replaced,
                            f"{len(replaced)} of {compared} tensor(s) with foreign scale or values", "; ".join(replaced[:3]))
    else:
        replacement = Check("no_replaced_weights", False, "not checked: 0 weights aligned", _nothing_aligned(match),
                            not_checked=True)
    return [half_step, pruning, replacement]


def _scalar(view_or_inits, name: str):
    tensor = view_or_inits.get(name)
    return None if tensor is None else onnx.numpy_helper.to_array(tensor)


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
    if not count:  # an FP32 file: nothing here is int8, symmetric or not; the check had nothing to check
        return Check("qdq_symmetric_int8", False, "not checked: 0 quantization parameter sets",
                     "the candidate holds no int8 op (no Q/DQ, no QOperator form): it is not a quantized model",
                     not_checked=True)
    return Check("qdq_symmetric_int8", not problems,
                 f"{count} quantization parameter sets, {len(problems)} not symmetric int8 per-tensor",
                 "; ".join(problems[:3]))


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
                finding.float_compared += 1
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
                rescaled = rescaled_channels(reference, q.astype(np.float64) * scale, float(scale))
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


def _unmatched_rescales(ref: GraphView, cand: GraphView, match: MatchResult) -> tuple[list[str], int]:
    """Candidate int8 weights outside the matched node pairs (the graphs differ, e.g. by an
    unrecorded inverse) that are a reference weight of the same shape rescaled per channel, and
    how many unmatched int8 weights were searched."""
    matched = {name for _, cand_node in match.pairs for name in cand_node.input_values if name}
    by_shape: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for name in ref.initializers:
        values = constant_array(ref, name)
        if values is not None and values.dtype.kind == "f" and values.ndim >= 2:
            by_shape.setdefault(values.shape, []).append((name, values))
    found, searched = [], 0
    for name, node in cand.producers.items():
        if node.op_type != "DequantizeLinear" or name in matched:
            continue
        quantized = _dequantizer(cand, name)
        if quantized is None or quantized[0].dtype != np.int8 or np.asarray(quantized[1]).size != 1:
            continue
        step = float(np.asarray(quantized[1]).reshape(-1)[0])
        values = quantized[0].astype(np.float64) * step
        searched += bool(by_shape.get(values.shape))
        for ref_name, reference in by_shape.get(values.shape, []):
            rescaled = rescaled_channels(reference, values, step)
            if rescaled is not None:
                axis, low, high = rescaled
                found.append(f"'{ref_name}' appears scaled along axis {axis} by ×{low:.3g}…×{high:.3g}")
                break
    return found, searched


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


def checks_as_dicts(checks: list[Check]) -> list[dict]:
    return [{**asdict(c), "status": c.status} for c in checks]
