"""The quantization pipeline:

FP32 ONNX -> canonicalize -> annotate (QuantPlan) -> observe (or read the cache) -> thresholds ->
group scales -> insert Q/DQ -> [lower to QOperator] -> provenance -> staged file -> onnxruntime
checks (loads, fusions, output SQNR) -> published model (+ cache, TensorRT cache, report).

This module runs the phases in order; each lives in ``quant/``: the ranges in
``calibrated_ranges``, the precision search in ``holdout``, writing the candidate within verify's
layer tolerance in ``within_tolerance``, staging, checking and renaming in ``publish``, and the
refusal of a file without an int8 op in ``no_int8``.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx
import onnx_ir as ir

from .background import in_background
from .calibration.cache import TensorRange
from .calibration.model_inputs import model_inputs
from .errors import UserInputError, first_line
from .ir.canonical_record import record_canonicalization
from .ir.canonicalize import canonicalization_pipeline
from .kernels.warm_up import warm_up_in_background
from .onnx_io import (check_model_file, default_opset, has_external_data, parse_model_file, private_model,
                      read_external_data, read_model_file)
from .progress import Stopwatch, step
from .provenance import package_versions, portable_command_line, record_in_model
from .quant.annotate import NodeDecision, QuantPlan, nodes_reading_masks, plan_quantization
from .quant.calibrated_ranges import CHECK_SAMPLES, Calibration, calibrate, first_samples, open_calibration
from .quant.claims import Claim, HeldOutFigures, claim_warning
from .quant.equalization import inverse_nodes_kept_fp32
from .quant.equalize import CHECK_SAMPLES as EQUALIZE_CHECK_SAMPLES
from .quant.equalize import EqualizationResult, equalize
from .quant.equalized_ranges import tensors_to_range
from .quant.holdout import held_out_labels, search_precision, split_holdout
from .quant.infinite_masks import nodes_reading_infinite_masks
from .quant.insert_qdq import QdqCounts
from .quant.islands import island_fp32_reasons
from .quant.layer_check import ToleranceState, unmet_warning
from .quant.no_int8 import Int8Guard
from .quant.op_specs import QUANTIZED_OP_TYPES
from .quant.options import QuantizeOptions
from .quant.precision_search import SearchResult, Sensitivity, int8_flop_share
from .quant.publish import Diagnostics, publish, quality_warnings
from .quant.replan import replan
from .quant.runtime_check import FusionReport
from .quant.scales import group_scales, scale_from_amax
from .quant.shared_scale import starved_shared_ops
from .quant.spec import Method
from .quant.subgraph_nodes import subgraph_decisions
from .quant.weights_apart import OpenedOnce
from .quant.within_tolerance import write_within_tolerance

# QuantizeLinear and DequantizeLinear (int8, per tensor) arrive in opset 10.
MIN_QUANTIZE_OPSET = 10


@dataclass
class QuantizeResult:
    output: Path
    decisions: list[NodeDecision]
    counts: QdqCounts
    scales: dict[str, float]
    ranges: dict[str, TensorRange]
    fusion: FusionReport
    output_sqnr_db: dict[str, float]
    samples: int
    batch_used: int
    cache_used: bool
    report_files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    equalization: EqualizationResult | None = None
    search: SearchResult | None = None
    sensitivities: list[Sensitivity] = field(default_factory=list)
    int8_flop_share: float | None = None
    timings: Stopwatch = field(default_factory=Stopwatch)  # wall seconds per phase
    held_out: HeldOutFigures | None = None  # the written model on the held-out samples
    claim: Claim | None = None  # the precision target, judged on the written model
    tolerance: ToleranceState | None = None  # what holding each layer to verify's tolerance changed
    sqnr_on: str = "calibration"  # the samples output_sqnr_db was measured on


def load_fp32_model(path: Path) -> ir.Model:
    return canonical_fp32_model(checked_fp32_proto(path, read_model_file(path)))


def checked_fp32_proto(path: Path, data: bytes) -> onnx.ModelProto:
    """The FP32 model whose file ``path`` holds ``data`` (``read_model_file``), refused when it is
    already quantized or fails onnx's checker."""
    proto = parse_model_file(path, data, load_external_data=False)
    external = has_external_data(proto)
    read_external_data(proto, path)
    already = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_OP_TYPES)
    if already:
        raise UserInputError(f"{path}: already quantized (contains {', '.join(already)}); pass the FP32 model")
    opset = default_opset(proto)
    if opset < MIN_QUANTIZE_OPSET:
        # Not bumped silently: an op whose definition changed since (Upsample, BatchNormalization's
        # attributes, Slice's inputs) would then mean something else than the FP32 model it came from.
        raise UserInputError(f"{path}: opset {opset} predates QuantizeLinear/DequantizeLinear (opset "
                             f"{MIN_QUANTIZE_OPSET}); convert the FP32 model first, e.g. onnx.version_converter."
                             "convert_version(model, 13), check it, and quantize that file")
    try:
        check_model_file(path, data, external)
    except (onnx.checker.ValidationError, Exception) as exc:  # noqa: B014 - the checker raises several types
        raise UserInputError(f"{path}: fails the ONNX checker: {first_line(exc, 200)}") from None
    return proto


def canonical_fp32_model(proto: onnx.ModelProto) -> ir.Model:
    model, passes = canonicalization_pipeline()(ir.serde.deserialize_model(proto))
    record_canonicalization(model, passes)  # verify replays exactly these on the FP32 file
    return model


def _check_exclusions(model: ir.Model, model_path: Path, exclude: set[str]) -> None:
    """An --exclude that names nothing would leave the op it meant int8 without a word (a typo)."""
    known = {node.name for node in model.graph} | {node.op_type for node in model.graph}
    unknown = sorted(item for item in exclude if item not in known)
    if unknown:
        raise UserInputError(f"--exclude '{unknown[0]}': no node of {model_path.name} has that name or op type "
                             "(after canonicalization; qx quantize --explain lists them)")


def quantize_model(model_path: Path, output: Path, options: QuantizeOptions, argv: list[str]) -> QuantizeResult:
    warm_up_in_background()
    shown, watch = options.show_progress, Stopwatch()
    with watch.phase("loading"), step(f"loading and canonicalizing {model_path.name}", shown):
        model, model_hash = _load(model_path)
    _check_exclusions(model, model_path, options.exclude)
    searching = options.target is not None or options.sensitivity
    calib = open_calibration(model, options) if "smoothquant" in options.equalize or searching else None
    ranges_calib, holdout = split_holdout(calib, options.holdout) if searching else (calib, [])
    equalization, kept = _equalize(model, options, ranges_calib, watch, bool(holdout))
    fp32_proto = ir.serde.serialize_model(model)  # the model quantized: each candidate is written from it
    plan = plan_quantization(model, options.exclude, kept)
    int8_guard = Int8Guard(model_path, model, plan)  # no file without an int8 op: refused now, or once written
    cache_key = _cache_key(model_hash, equalization)  # what --cache is read and written under
    with watch.phase("calibration"):
        calibration = calibrate(model, plan, cache_key, options, calib, ranges_calib,
                                equalization.ranges if equalization is not None else None)
    if equalization is not None:
        _apply_measured_thresholds(calibration.ranges, equalization)
    plan, kept = _keep_fp32_after_calibration(model, plan, calibration.ranges, options, kept)
    search_result, sensitivities, flops = None, [], None
    labels = held_out_labels(options.labels, holdout) if options.target and options.target.accuracy else None
    held_out_feeds = [calibration.calib.sample(i) for i in holdout]
    # The first candidate's private copy of the FP32 model (Python work, about a second on mpnet)
    # is made while the search runs, which waits on onnxruntime most of its time.
    first_copy = in_background(private_model, fp32_proto, name="qx-candidate-copy") if searching else None
    if searching:
        with watch.phase("sensitivity and precision search"):
            search_result, sensitivities, flops = search_precision(
                fp32_proto, plan, group_scales(plan, calibration.ranges), held_out_feeds, labels, options.target,
                options.sensitivity, shown)
        if search_result is not None and search_result.fp32:
            kept = {**kept, **search_result.fp32}
            plan = replan(model, options.exclude, kept, calibration.ranges, plan)
    if equalization is not None:
        equalization.confirm()  # nothing is written from a rewrite not proven exact
    check_feeds = held_out_feeds or first_samples(calibration.calib, options, model_inputs(model))
    record = equalization.record if equalization is not None and equalization.record else None
    with watch.phase("writing and checking"), step("writing the int8 model and holding each layer to verify's "
                                                   "tolerance", shown):
        reference = OpenedOnce(fp32_proto)  # the FP32 model, apart once for every check of the phase

        def provenance(candidate: ir.Model, plan: QuantPlan) -> None:
            _record_provenance(candidate, plan, calibration, model_hash, options, argv, equalization)

        candidate, candidate_proto, plan, counts, tensor_scales, tolerance = write_within_tolerance(
            fp32_proto, model, plan, calibration, options, kept, record, check_feeds[:CHECK_SAMPLES], provenance,
            reference, first_copy)
        int8_guard.check_written(candidate, plan, search_result)
    diagnose = Diagnostics(fp32_proto, sorted(plan.activation_uses), check_feeds[:CHECK_SAMPLES], options, watch,
                           lambda figures: getattr(_claim(search_result, figures), "met", False))
    with watch.phase("writing and checking"), step("checking the int8 model in onnxruntime", shown):
        fusion, output_sqnr, figures = publish(candidate, candidate_proto, reference, output, plan, calibration,
                                               tensor_scales, check_feeds, labels, cache_key, options, bool(holdout),
                                               diagnose)
    result = QuantizeResult(output, plan.decisions + subgraph_decisions(candidate.graph),  # If/Loop bodies: FP32
                            counts, tensor_scales, calibration.ranges, fusion, output_sqnr, calibration.samples,
                            calibration.batch, calibration.cached, equalization=equalization, search=search_result,
                            sensitivities=sensitivities, int8_flop_share=_int8_flop_share(plan, flops, fusion),
                            timings=watch, held_out=figures, claim=_judge(search_result, figures), tolerance=tolerance,
                            sqnr_on="held-out" if holdout else "calibration")
    _finish(result, plan, calibration, diagnose, sensitivities, options, model_path)
    return result


def _equalize(model: ir.Model, options: QuantizeOptions, ranges_calib, watch: Stopwatch, held_out: bool
              ) -> tuple[EqualizationResult | None, dict[str, str]]:
    """``--equalize`` applied to ``model`` (exact FP32 rescaling), and the nodes planned FP32 before
    any range is known, with why: an equalization's inverse, readers of -inf masks, activation islands.
    With minmax, the pass that observes smoothquant's channels also takes the ranges calibration
    needs (``equalized_ranges``): the model runs over the set once. Without held-out samples its
    outputs on the first samples are then the output SQNR check's references, so the exactness
    check runs on as many."""
    equalization, kept = None, {}
    if options.equalize:
        ranges_of = tensors_to_range(model, options)
        check = max(EQUALIZE_CHECK_SAMPLES, CHECK_SAMPLES) if ranges_of and not held_out else EQUALIZE_CHECK_SAMPLES
        with watch.phase("equalization"), step(f"equalizing ({', '.join(options.equalize)}) and checking the FP32 "
                                               "model is unchanged", options.show_progress):
            # With held-out samples nothing needs the rewritten model's outputs before the search is
            # done (the int8 model is checked on those samples): the exactness check runs beside it.
            equalization = equalize(model, options.equalize, ranges_calib, _node_names(model, options.exclude),
                                    options.alpha, options.show_progress, ranges_of, check, check_beside=held_out)
        kept = inverse_nodes_kept_fp32(equalization.record)
    # Where(mask, 0, -inf): masks, not overflows; decomposed activations: planned as one unit.
    return equalization, {**nodes_reading_infinite_masks(model), **island_fp32_reasons(model.graph), **kept}


def _int8_flop_share(plan: QuantPlan, flops: dict[str, float] | None, fusion: FusionReport) -> float | None:
    """What onnxruntime runs int8 after its fusion where measured, else the share as annotated."""
    if fusion.flops is not None and fusion.flops.share is not None:
        return fusion.flops.share
    return int8_flop_share({d.name for d in plan.decisions if d.quantized}, flops) if flops else None


def _judge(search: SearchResult | None, figures: HeldOutFigures | None) -> Claim | None:
    """The precision target judged on the written model: the search's verdict and its last step say so."""
    claim = _claim(search, figures)
    if claim is not None:
        search.met = claim.met
        search.steps.append(f"written model on {figures.samples} held-out samples: mean cosine "
                            f"{figures.mean_cosine:.5f}, SQNR {figures.sqnr_db:.1f} dB: "
                            f"{'met' if claim.met else 'NOT met'}")
    return claim


def _claim(search: SearchResult | None, figures: HeldOutFigures | None) -> Claim | None:
    """The search chose on the switchboard; its verdict is the written model's."""
    if search is None or figures is None:
        return None
    return Claim(replace(search.target, fp32_accuracy=figures.fp32_accuracy), figures)


def _finish(result: QuantizeResult, plan: QuantPlan, calibration: Calibration, diagnose: Diagnostics,
            sensitivities: list, options: QuantizeOptions, model_path: Path) -> None:
    """Warnings and the report (per-layer errors: measured once, on the staged model, for both)."""
    shown, watch = options.show_progress, result.timings
    target_met = result.claim is not None and result.claim.met
    layers = diagnose.layers
    result.warnings = quality_warnings(diagnose.low, layers or [], options, target_met) + diagnose.failures
    result.warnings += [w for w in (unmet_warning(result.tolerance), claim_warning(result.claim)) if w]
    if not diagnose.feeds:
        result.warnings.append("no samples to check the written model with (--cache without the calibration data): "
                               "neither its output SQNR nor verify's layer tolerance was measured; pass --calib DATA")
    if options.report is not None and sensitivities:
        from .quant.sensitivity_report import write_sensitivity

        result.report_files += write_sensitivity(options.report, sensitivities, result.search)
    if options.report is not None:
        from .quant.report import write_report

        with watch.phase("report"), step(f"writing the report to {options.report} (plots)", shown):
            try:
                result.report_files += write_report(options.report, model_path, result.output, plan, result,
                                                   calibration.observers, layers or [], options)
            except Exception as exc:  # the model is written and checked; a report failure must not undo that
                result.warnings.append(f"the report in {options.report} could not be written "
                                       f"({type(exc).__name__}: {first_line(exc)}); the int8 model is unaffected")


def _load(model_path: Path) -> tuple[ir.Model, str]:
    """The model and its file's SHA-256, from one read of the file (parsed, checked and hashed);
    the bytes are let go before canonicalization."""
    data = read_model_file(model_path)
    with ThreadPoolExecutor(max_workers=1) as hasher:  # hashlib releases the GIL: hash while parsing
        hashing = hasher.submit(_sha256, data)
        proto = checked_fp32_proto(model_path, data)
        del data
        digest = hashing.result()
    return canonical_fp32_model(proto), digest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_key(model_hash: str, equalization: EqualizationResult | None) -> str:
    """What a range cache belongs to: the model, and the equalization applied to it (ranges of an
    equalized model are not the original's)."""
    if equalization is None or not equalization.record:
        return model_hash
    return hashlib.sha256(f"{model_hash}:{equalization.record.sha256()}".encode()).hexdigest()


def _apply_measured_thresholds(ranges: dict[str, TensorRange], equalization: EqualizationResult) -> None:
    """MatMul inputs whose threshold the smoothquant search measured better clipped (per tensor)."""
    for tensor, (amax, why) in equalization.thresholds().items():
        if tensor in ranges and amax < ranges[tensor].amax:
            old = ranges[tensor]
            ranges[tensor] = TensorRange(float(amax), float(scale_from_amax(amax)), old.count, why)


def _node_names(model: ir.Model, exclude: set[str]) -> set[str]:
    """``--exclude`` (node names or op types) as the node names it covers."""
    return {node.name for node in model.graph if node.name in exclude or node.op_type in exclude}


def _keep_fp32_after_calibration(model: ir.Model, plan: QuantPlan, ranges: dict[str, TensorRange],
                                 options: QuantizeOptions, kept: dict[str, str]) -> tuple[QuantPlan, dict[str, str]]:
    """Nodes the ranges show cannot be int8, planned again without them: readers of attention-mask
    values, and shared-scale ops (Concat) one of whose inputs would keep only a few levels on the
    shared grid. Returns the plan and ``kept`` with them, for any later re-plan."""
    amax = {name: r.amax for name, r in ranges.items()}
    more = {**nodes_reading_masks(plan, amax), **starved_shared_ops(model, plan, amax)}
    if not more:
        return plan, kept
    kept = {**kept, **more}
    return replan(model, options.exclude, kept, ranges, plan), kept


def _record_provenance(model: ir.Model, plan: QuantPlan, calibration: Calibration, model_hash: str,
                       options: QuantizeOptions, argv: list[str], equalization: EqualizationResult | None) -> None:
    facts = {}
    record = equalization.record if equalization else None
    if record:
        # The whole record (exponents included) sits in the model: verify rebuilds the equalized
        # reference from it and the FP32 reference, with nothing else to find or trust.
        facts["equalization"] = record.to_json()
    facts.update({
        "quantization": {
            "scheme": "int8 symmetric per-tensor, zero point 0, int32 bias",
            "method": options.method.value,
            "percentile": options.percentile if options.method is Method.PERCENTILE else None,
            "format": options.fmt.value,
            "calibration_list_sha256": calibration.list_sha256,
            "calibration_ids_sha256": calibration.ids_sha256,
            "calibration_list": options.calib_list.name if options.calib_list is not None else None,
            "calibration_samples": calibration.samples,
            "held_out_for_precision_search": calibration.held_out or None,
            "precision_target": options.target.describe() if options.target else None,
            "fp32_model_sha256": model_hash,
            "excluded": sorted(options.exclude),
            "fp32_nodes": {d.name: d.reason for d in plan.decisions if not d.quantized},
            "per_tensor_methods": {n: r.method for n, r in sorted(calibration.ranges.items()) if r.method},
            "equalization": {"passes": record.passes, "sha256": record.sha256(),
                             "smoothquant_groups": len(record.smoothquant), "cle_pairs": len(record.cle)}
            if record else None,
        },
        "quantize_command": portable_command_line(argv),
        "quantize_versions": package_versions(["onnx", "onnxruntime", "numba", "numpy"]),
    })
    record_in_model(model, facts)
