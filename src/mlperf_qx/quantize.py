"""The quantization pipeline:

FP32 ONNX -> canonicalize -> annotate (QuantPlan) -> observe (or read the cache) -> thresholds ->
group scales -> insert Q/DQ -> [lower to QOperator] -> provenance -> staged file -> onnxruntime
checks (loads, fusions, output SQNR) -> published model (+ cache, TensorRT cache, report).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from .atomic import staged_outputs
from .calibration.cache import CalibrationCache, TensorRange, read_cache, trt_cache_text
from .calibration.model_inputs import model_inputs
from .calibration.readers import CalibrationSet, open_calibration_set
from .errors import UserInputError, first_line
from .ir.canonical_record import record_canonicalization
from .ir.canonicalize import canonicalization_pipeline
from .kernels.warm_up import warm_up_in_background
from .ir.passes.eliminate_dead_code import EliminateDeadCode
from .onnx_io import load_model_proto, save_model
from .progress import Stopwatch, step
from .provenance import package_versions, portable_command_line, record_in_model, sha256_file
from .quant.annotate import NodeDecision, QuantPlan, nodes_reading_masks, plan_quantization
from .quant.op_specs import QUANTIZED_OP_TYPES
from .quant.calibrate import observe
from .quant.equalize import EqualizationResult, equalize
from .quant.equalization import inverse_nodes_kept_fp32
from .quant.infinite_masks import nodes_reading_infinite_masks
from .quant.insert_qdq import QdqCounts, insert_qdq
from .quant.subgraph_nodes import subgraph_decisions
from .quant.islands import island_fp32_reasons
from .quant.claims import Claim, HeldOutFigures, claim_warning, held_out_figures, run_both
from .quant.holdout import held_out_labels, search_precision, split_holdout
from .quant.layer_check import MAX_ROUNDS, ToleranceState, failing_layers, remedy, unmet_warning
from .quant.replan import replan
from .quant.precision_search import SearchResult, Sensitivity, Target, int8_flop_share
from .quant.shared_scale import shared_inputs, starved_shared_ops
from .quant.observers import MinMaxObserver, threshold
from .quant.runtime_check import FusionReport, check_int8_model, run_with_tensors, sqnr_db
from .quant.scales import scale_from_amax
from .quant.spec import Format, Method

CHECK_SAMPLES = 8  # output SQNR check; every extra sample costs two model runs
# Below this output SQNR (noise at 1 % of the signal's power) qx warns and names the worst layers.
OUTPUT_SQNR_FLOOR_DB = 20.0
# Histogram thresholds (entropy, percentile, mse) need enough values per sample to be a
# distribution; below this a tensor takes its observed range instead.
MIN_VALUES_PER_SAMPLE = 256


@dataclass
class QuantizeOptions:
    calib: Path
    calib_list: Path | None = None
    preprocess: object | None = None
    method: Method = Method.MINMAX
    percentile: float = 99.99
    samples: int | None = None
    batch: int | None = None  # None: chosen from the activation volume per sample
    exclude: set[str] = field(default_factory=set)
    equalize: list[str] = field(default_factory=list)  # "smoothquant", "cle"
    alpha: float | None = None  # smoothquant's migration strength; None: chosen per layer by measured error
    target: Target | None = None  # accuracy-aware precision: keep the fewest ops FP32 that reach it
    sensitivity: bool = False  # measure and report every op's sensitivity (both directions)
    holdout: int | None = None  # last N ids of the list: search samples, not used for ranges
    labels: Path | None = None  # "<sample> <label>" lines naming the held-out ids, for an accuracy target
    fmt: Format = Format.QDQ
    cache: Path | None = None
    trt_cache: Path | None = None
    report: Path | None = None
    show_progress: bool = True


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
    proto = load_model_proto(path)
    already = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_OP_TYPES)
    if already:
        raise UserInputError(f"{path}: already quantized (contains {', '.join(already)}); pass the FP32 model")
    try:
        # By path: the checker then also handles models past protobuf's 2 GB limit.
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, Exception) as exc:  # noqa: B014 - the checker raises several types
        raise UserInputError(f"{path}: fails the ONNX checker: {first_line(exc, 200)}") from None
    model, passes = canonicalization_pipeline()(ir.serde.deserialize_model(proto))
    record_canonicalization(model, passes)  # verify replays exactly these on the FP32 file
    return model


@dataclass
class _Calibration:
    """What the calibration phase hands on: a range per observed tensor, and where it came from."""

    ranges: dict[str, TensorRange]
    list_sha256: str
    ids_sha256: str
    samples: int
    batch: int = 0
    observers: dict = field(default_factory=dict)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    calib: CalibrationSet | None = None
    cached: bool = False
    held_out: int = 0  # last ids of the list used by the precision search, not for ranges


def quantize_model(model_path: Path, output: Path, options: QuantizeOptions, argv: list[str]) -> QuantizeResult:
    warm_up_in_background()
    shown, watch = options.show_progress, Stopwatch()
    with watch.phase("loading"), step(f"loading and canonicalizing {model_path.name}", shown):
        model, model_hash = _load(model_path)
    calib, equalization, kept = None, None, {}
    searching = options.target is not None or options.sensitivity
    if "smoothquant" in options.equalize or searching:
        calib = _open_calibration(model, options)
    ranges_calib, holdout = split_holdout(calib, options.holdout) if searching else (calib, [])
    if options.equalize:
        with watch.phase("equalization"), step(f"equalizing ({', '.join(options.equalize)}) and checking the FP32 "
                                               "model is unchanged", shown):
            equalization = equalize(model, options.equalize, ranges_calib, _node_names(model, options.exclude),
                                    options.alpha, shown)
        kept = inverse_nodes_kept_fp32(equalization.record)
    # Where(mask, 0, -inf): masks, not overflows; decomposed activations: planned as one unit.
    kept = {**nodes_reading_infinite_masks(model), **island_fp32_reasons(model.graph), **kept}
    fp32_proto = ir.serde.serialize_model(model)  # the model quantized: each candidate is written from it
    plan = plan_quantization(model, options.exclude, kept)
    with watch.phase("calibration"):
        calibration = _calibrate(model, plan, _cache_key(model_hash, equalization), options, calib, ranges_calib)
    if equalization is not None:
        _apply_measured_thresholds(calibration.ranges, equalization)
    plan, kept = _keep_fp32_after_calibration(model, plan, calibration.ranges, options, kept)
    search_result, sensitivities, flops = None, [], None
    labels = held_out_labels(options.labels, holdout) if options.target and options.target.accuracy else None
    held_out_feeds = [calibration.calib.sample(i) for i in holdout]
    if searching:
        with watch.phase("sensitivity and precision search"):
            search_result, sensitivities, flops = search_precision(
                fp32_proto, plan, _group_scales(plan, calibration.ranges), held_out_feeds, labels, options.target,
                options.sensitivity, shown)
        if search_result is not None and search_result.fp32:
            kept = {**kept, **search_result.fp32}
            plan = replan(model, options.exclude, kept, calibration.ranges, plan)
    check_feeds = held_out_feeds or _check_feeds(calibration.calib, options, model_inputs(model))
    record = equalization.record if equalization is not None and equalization.record else None
    with watch.phase("writing and checking"), step("writing the int8 model and holding each layer to verify's "
                                                   "tolerance", shown):
        candidate, plan, counts, tensor_scales, tolerance = _write_within_tolerance(
            fp32_proto, model, plan, calibration, options, kept, record, check_feeds[:CHECK_SAMPLES])
        _record_provenance(candidate, plan, calibration, model_hash, options, argv, equalization)
    diagnose = _Diagnostics(fp32_proto, sorted(plan.activation_uses), check_feeds[:CHECK_SAMPLES], options, watch,
                            lambda figures: getattr(_claim(search_result, figures), "met", False))
    with watch.phase("writing and checking"), step("checking the int8 model in onnxruntime", shown):
        fusion, output_sqnr, figures = _publish(candidate, fp32_proto, output, plan, calibration, tensor_scales,
                                                check_feeds, labels, model_hash, options, bool(holdout), diagnose)
    flop_share = int8_flop_share({d.name for d in plan.decisions if d.quantized}, flops) if flops else None
    claim = _claim(search_result, figures)
    if claim is not None:
        search_result.met = claim.met
        search_result.steps.append(f"written model on {figures.samples} held-out samples: mean cosine "
                                   f"{figures.mean_cosine:.5f}, SQNR {figures.sqnr_db:.1f} dB: "
                                   f"{'met' if claim.met else 'NOT met'}")
    result = QuantizeResult(output, plan.decisions, counts, tensor_scales, calibration.ranges, fusion, output_sqnr,
                            calibration.samples, calibration.batch, calibration.cached, equalization=equalization,
                            search=search_result, sensitivities=sensitivities, int8_flop_share=flop_share,
                            timings=watch, held_out=figures, claim=claim, tolerance=tolerance,
                            sqnr_on="held-out" if holdout else "calibration")
    result.decisions = plan.decisions + subgraph_decisions(candidate.graph)  # If/Loop bodies: reported, FP32
    if fusion.flops is not None and fusion.flops.share is not None:  # what onnxruntime runs int8, after fusion
        result.int8_flop_share = fusion.flops.share
    _finish(result, plan, calibration, diagnose, sensitivities, options, model_path)
    return result


def _claim(search: SearchResult | None, figures: HeldOutFigures | None) -> Claim | None:
    """The search chose on the switchboard; its verdict is the written model's."""
    if search is None or figures is None:
        return None
    return Claim(replace(search.target, fp32_accuracy=figures.fp32_accuracy), figures)


def _finish(result: QuantizeResult, plan: QuantPlan, calibration: _Calibration, diagnose: "_Diagnostics",
            sensitivities: list, options: QuantizeOptions, model_path: Path) -> None:
    """Warnings and the report (per-layer errors: measured once, on the staged model, for both)."""
    shown, watch = options.show_progress, result.timings
    target_met = result.claim is not None and result.claim.met
    layers = diagnose.layers
    result.warnings = _quality_warnings(diagnose.low, layers or [], options, target_met) + diagnose.failures
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


def _write_within_tolerance(fp32: onnx.ModelProto, model: ir.Model, plan: QuantPlan, calibration: _Calibration,
                            options: QuantizeOptions, kept: dict[str, str], record, feeds: list):
    """The candidate, written from the FP32 model, with each layer held to verify's layer tolerance
    (see ``quant.layer_check``): measured, remedied, written again until it holds."""
    state = ToleranceState(dict(kept))
    observed = {name: o.amax for name, o in calibration.observers.items()}
    while True:
        candidate = ir.serde.deserialize_model(_copy(fp32))
        counts, tensor_scales = _rewrite(candidate, plan, _group_scales(plan, calibration.ranges), options.fmt)
        if not feeds:
            return candidate, plan, counts, tensor_scales, state
        state.failing, state.layers_measured = failing_layers(fp32, ir.serde.serialize_model(candidate), feeds, record)
        if (not state.failing or state.rounds >= MAX_ROUNDS
                or not remedy(state.failing, model, plan, calibration.ranges, observed, state)):
            return candidate, plan, counts, tensor_scales, state
        state.rounds += 1
        plan = replan(model, options.exclude, state.kept, calibration.ranges, plan)


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


class _Diagnostics:
    """What is measured on the staged int8 model before it is published: the per-layer SQNR
    against FP32, when an output falls below the floor (for the warning) or a report is asked
    for. A diagnostic that fails becomes a warning: it never turns a good model into a crash, and
    it runs before the rename, so a crash elsewhere never leaves a published file behind."""

    def __init__(self, fp32_model, tensors: list[str], feeds: list, options: QuantizeOptions, watch: Stopwatch,
                 target_met) -> None:
        self.fp32_model, self.tensors, self.feeds, self.options = fp32_model, tensors, feeds, options
        self.target_met, self.watch = target_met, watch  # target_met(figures): the written model meets the target
        self.low: dict[str, float] = {}
        self.layers: list[dict] | None = None
        self.failures: list[str] = []

    def __call__(self, staged: Path, output_sqnr: dict[str, float], figures) -> None:
        from .quant.report import layer_errors

        self.low = {name: value for name, value in output_sqnr.items() if value < OUTPUT_SQNR_FLOOR_DB}
        if not ((self.low and not self.target_met(figures)) or self.options.report is not None):
            return
        with self.watch.phase("report"), step("measuring per-layer SQNR against FP32", self.options.show_progress):
            try:
                self.layers = layer_errors(self.fp32_model, staged, self.tensors, self.feeds)
            except Exception as exc:
                self.failures.append(f"per-layer SQNR could not be measured ({type(exc).__name__}: "
                                     f"{first_line(exc)}); the int8 model is unaffected")


def _load(model_path: Path) -> tuple[ir.Model, str]:
    with ThreadPoolExecutor(max_workers=1) as hasher:  # hashlib releases the GIL: hash while loading
        hashing = hasher.submit(sha256_file, model_path)
        model = load_fp32_model(model_path)
        return model, hashing.result()


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


def _open_calibration(model: ir.Model, options: QuantizeOptions) -> CalibrationSet:
    return open_calibration_set(options.calib, model_inputs(model), options.calib_list, options.preprocess,
                                options.samples)


def _calibrate(model: ir.Model, plan: QuantPlan, model_hash: str, options: QuantizeOptions,
               calib: CalibrationSet | None = None, ranges_calib: CalibrationSet | None = None) -> _Calibration:
    """Ranges of every observed tensor: from ``--cache`` when it is there, else one streaming pass
    over ``ranges_calib`` (the list less any held-out samples). The provenance names the whole list
    ``calib``: every sample used, for ranges or for the precision search, comes from it."""
    tensors = plan.observed_tensors()
    # Inputs of a Concat share its grid; their own ranges say whether one grid can hold them (shared_scale).
    extra = [t for t in shared_inputs(model) if t not in set(tensors)]
    cached = _usable_cache(options.cache, model_hash)
    if cached is not None:
        ranges = _ranges_from_cache(cached, tensors)
        ranges.update({t: cached.tensors[t] for t in extra if t in cached.tensors})
        return _Calibration(ranges, cached.calibration_list_sha256,
                            cached.calibration_ids_sha256, cached.samples, cached=True, calib=calib)
    calib = calib or _open_calibration(model, options)
    ranges_calib = ranges_calib or calib
    observation = observe(model, sorted({*tensors, *extra}), ranges_calib, options.method, options.batch, options.show_progress,
                          keep_outputs=CHECK_SAMPLES)
    return _Calibration(_ranges(observation.observers, options, len(ranges_calib)), calib.list_sha256,
                        calib.ids_sha256, len(calib), observation.batch, observation.observers,
                        observation.reference_outputs, calib, held_out=len(calib) - len(ranges_calib))


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


def _group_scales(plan: QuantPlan, ranges: dict[str, TensorRange]) -> dict[str, np.float32]:
    group_amax: dict[str, float] = {}
    for tensor in plan.activation_uses:
        group = plan.group_of(tensor)
        group_amax[group] = max(ranges[t].amax for t in plan.group_stats[group])
    return {group: scale_from_amax(amax) for group, amax in group_amax.items()}


def _rewrite(model: ir.Model, plan: QuantPlan, scales: dict[str, np.float32], fmt: Format) -> tuple[QdqCounts, dict[str, float]]:
    counts, tensor_scales = insert_qdq(model, plan, scales)
    EliminateDeadCode()(model)
    if fmt is Format.QOPERATOR:
        from .quant.lower_qoperator import LowerToQOperator

        lowering = LowerToQOperator()
        lowering(model)
        for decision in plan.decisions:  # ops the model's opset keeps in float: say so, do not count them int8
            if decision.name in lowering.kept_float:
                decision.quantized, decision.reason = False, lowering.kept_float[decision.name]
    return counts, tensor_scales


def _record_provenance(model: ir.Model, plan: QuantPlan, calibration: _Calibration, model_hash: str,
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


def _publish(model: ir.Model, fp32: onnx.ModelProto, output: Path, plan: QuantPlan, calibration: _Calibration,
             tensor_scales: dict[str, float], check_feeds: list, labels: list[int] | None, model_hash: str,
             options: QuantizeOptions, held_out: bool, diagnose: "_Diagnostics"
             ) -> tuple[FusionReport, dict[str, float], HeldOutFigures | None]:
    """Stage the model (and caches), check it in onnxruntime and run the diagnostics on it, then
    rename everything into place."""
    with staged_outputs(output) as staging:
        staged = staging.path(output)
        save_model(model, staged)
        fusion, output_sqnr, figures = _check_int8(fp32, staged, check_feeds, calibration.references, labels, held_out)
        diagnose(staged, output_sqnr, figures)
        if options.cache is not None and not calibration.cached:
            cache = CalibrationCache(model_hash, calibration.list_sha256, options.method.value,
                                     options.percentile if options.method is Method.PERCENTILE else None,
                                     calibration.samples, calibration.ranges, calibration.ids_sha256)
            staging.path(options.cache).write_text(cache.to_json(), encoding="utf-8")
        if options.trt_cache is not None:
            activation_scales = {t: s for t, s in tensor_scales.items() if t in plan.activation_uses}
            staging.path(options.trt_cache).write_text(trt_cache_text(activation_scales), encoding="utf-8")
    return fusion, output_sqnr, figures


def _quality_warnings(low: dict[str, float], layers: list[dict], options: QuantizeOptions,
                      target_met: bool = False) -> list[str]:
    """A warning per output below OUTPUT_SQNR_FLOOR_DB, naming the worst quantized tensors and the
    options not yet used that address it (on trained transformers, equalization and a target).
    None when the precision search met the user's target: that is their floor, not ours."""
    if target_met:
        return []
    worst = ", ".join(f"'{r['tensor']}' {r['sqnr_db']:.1f} dB"
                      for r in sorted(layers, key=lambda r: r["sqnr_db"])[:3]) or "none measured"
    remedies = []
    if "smoothquant" not in options.equalize:
        remedies.append("--equalize smoothquant (moves activation outliers into the weights, exactly)")
    if options.target is None:
        remedies.append("--target-cosine 0.99 (keeps the fewest ops FP32 that reach it)")
    remedies.append("--method mse, or --exclude the worst layers")
    return [f"output '{name}' is {value:.1f} dB SQNR vs FP32, below the {OUTPUT_SQNR_FLOOR_DB:.0f} dB floor; worst "
            f"quantized tensors: {worst}. Try {'; '.join(remedies)}" for name, value in low.items()]


def _usable_cache(path: Path | None, model_hash: str) -> CalibrationCache | None:
    if path is None or not path.exists():
        return None
    cache = read_cache(path)
    if cache.model_sha256 != model_hash:
        raise UserInputError(
            f"--cache '{path}' was computed for another model (sha256 {cache.model_sha256[:12]}…, this one "
            f"{model_hash[:12]}…); delete it or pass a new path to recalibrate"
        )
    return cache


def _ranges_from_cache(cache: CalibrationCache, tensors: list[str]) -> dict[str, TensorRange]:
    missing = [t for t in tensors if t not in cache.tensors]
    if missing:
        raise UserInputError(f"--cache has no range for tensor '{missing[0]}' (+{len(missing) - 1} more); "
                             "delete it to recalibrate")
    return {t: cache.tensors[t] for t in tensors}


def _ranges(observers: dict[str, MinMaxObserver], options: QuantizeOptions, samples: int) -> dict[str, TensorRange]:
    ranges = {}
    for name, observer in observers.items():
        method, note = options.method, ""
        per_sample = observer.count / max(samples, 1)
        if method.needs_histogram and per_sample < MIN_VALUES_PER_SAMPLE:
            # A pooled squeeze-excitation vector has a few dozen values per sample: a histogram
            # threshold there clips real signal (seen: 0.110 clipped to 0.015), so take the range.
            method, note = Method.MINMAX, f"minmax ({per_sample:.0f} values per sample, too few for {options.method.value})"
        amax = threshold(observer, method, options.percentile)
        ranges[name] = TensorRange(float(amax), float(scale_from_amax(amax)), int(observer.count), note)
    return ranges


def _check_feeds(calib: CalibrationSet | None, options: QuantizeOptions, inputs) -> list[dict[str, np.ndarray]]:
    if calib is None:
        if options.cache is None or not options.calib.exists():
            return []
        calib = open_calibration_set(options.calib, inputs, options.calib_list, options.preprocess, options.samples)
    return [calib.sample(i) for i in calib.ids[:CHECK_SAMPLES]]


def _check_int8(fp32: onnx.ModelProto, int8_path: Path, feeds: list[dict[str, np.ndarray]],
                references: dict[str, np.ndarray], labels: list[int] | None, held_out: bool
                ) -> tuple[FusionReport, dict[str, float], HeldOutFigures | None]:
    """What onnxruntime fused, and the output SQNR against FP32 of the written model. On held-out
    samples (a precision search) also every figure a target is judged by, with its lower bound.
    Else on the first calibration samples, whose FP32 outputs were usually captured during
    calibration; only a cached run runs the FP32 model here."""
    names = [o.name for o in fp32.graph.output] if feeds else []
    if held_out:
        fusion, _ = check_int8_model(int8_path, [], [])
        fp32_outputs, int8_outputs, seconds_per_sample = run_both(fp32, int8_path, feeds)
        figures = held_out_figures(fp32_outputs, int8_outputs, labels)
        figures.fp32_seconds_per_sample = seconds_per_sample
        joined = [(np.concatenate([np.atleast_1d(r[i]) for r in fp32_outputs]),
                   np.concatenate([np.atleast_1d(o[i]) for o in int8_outputs])) for i in range(len(names))]
        return fusion, {n: sqnr_db(a, b) for n, (a, b) in zip(names, joined)}, figures
    fusion, candidate = check_int8_model(int8_path, feeds, names)
    if any(n not in references or references[n].shape != candidate[n].shape for n in names):
        references = run_with_tensors(fp32, feeds, names)
    return fusion, {n: sqnr_db(references[n], candidate[n]) for n in names}, None
