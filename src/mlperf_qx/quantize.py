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
from .quant.precision_search import SearchResult, Sensitivity, Target, int8_flop_share
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
    output_names = [v.name for v in model.graph.outputs]  # kept by canonicalization and Q/DQ insertion
    calib, equalization, kept = None, None, {}
    searching = options.target is not None or options.sensitivity
    if "smoothquant" in options.equalize or searching:
        calib = _open_calibration(model, options)
    ranges_calib, holdout = _split_holdout(calib, options) if searching else (calib, [])
    if options.equalize:
        with watch.phase("equalization"), step(f"equalizing ({', '.join(options.equalize)}) and checking the FP32 "
                                               "model is unchanged", shown):
            equalization = equalize(model, options.equalize, ranges_calib, _node_names(model, options.exclude),
                                    options.alpha, shown)
        kept = inverse_nodes_kept_fp32(equalization.record)
    equalized = equalization is not None and bool(equalization.record)
    fp32_proto = ir.serde.serialize_model(model) if equalized or searching else None
    fp32_model = fp32_proto if equalized else model_path
    kept = {**nodes_reading_infinite_masks(model), **kept}  # Where(mask, 0, -inf): masks, not overflows
    plan = plan_quantization(model, options.exclude, kept)
    with watch.phase("calibration"):
        calibration = _calibrate(model, plan, _cache_key(model_hash, equalization), options, calib, ranges_calib)
    if equalization is not None:
        _apply_measured_thresholds(calibration.ranges, equalization)
    plan, kept = _keep_masks_fp32(model, plan, calibration.ranges, options, kept)
    search_result, sensitivities, flop_share = None, [], None
    if searching:
        with watch.phase("sensitivity and precision search"):
            search_result, sensitivities, flops = _search_precision(fp32_proto, plan, calibration, holdout, options)
        if search_result is not None and search_result.fp32:
            kept = {**kept, **search_result.fp32}
            plan = _replan(model, options.exclude, kept, calibration.ranges)
        flop_share = int8_flop_share({d.name for d in plan.decisions if d.quantized}, flops)
    with watch.phase("writing and checking"), \
            step("inserting Q/DQ" + (" and lowering to QOperator" if options.fmt is Format.QOPERATOR else ""), shown):
        scales = _group_scales(plan, calibration.ranges)
        counts, tensor_scales = _rewrite(model, plan, scales, options.fmt)
        _record_provenance(model, plan, calibration, model_hash, options, argv, equalization)
        check_feeds = _check_feeds(calibration.calib, options, model_inputs(model))
    target_met = search_result is not None and search_result.met
    diagnose = _Diagnostics(fp32_model, sorted(plan.activation_uses), check_feeds, options, target_met, watch)
    with watch.phase("writing and checking"), step("writing the int8 model and checking it in onnxruntime", shown):
        fusion, output_sqnr = _publish(model, model_path, output, plan, calibration, tensor_scales, check_feeds,
                                       output_names, model_hash, options, diagnose)
    result = QuantizeResult(output, plan.decisions, counts, tensor_scales, calibration.ranges, fusion, output_sqnr,
                            calibration.samples, calibration.batch, calibration.cached, equalization=equalization,
                            search=search_result, sensitivities=sensitivities, int8_flop_share=flop_share,
                            timings=watch)
    result.decisions = plan.decisions + subgraph_decisions(model.graph)  # If/Loop bodies: reported, FP32
    if fusion.flops is not None and fusion.flops.share is not None:  # what onnxruntime runs int8, after fusion
        result.int8_flop_share = fusion.flops.share
    layers = diagnose.layers
    result.warnings = _quality_warnings(diagnose.low, layers or [], options, target_met) + diagnose.failures
    if options.report is not None and sensitivities:
        from .quant.sensitivity_report import write_sensitivity

        result.report_files += write_sensitivity(options.report, sensitivities, search_result)
    if options.report is not None:
        from .quant.report import write_report

        with watch.phase("report"), step(f"writing the report to {options.report} (plots)", shown):
            try:
                result.report_files += write_report(options.report, model_path, output, plan, result,
                                                   calibration.observers, layers or [], options)
            except Exception as exc:  # the model is written and checked; a report failure must not undo that
                result.warnings.append(f"the report in {options.report} could not be written "
                                       f"({type(exc).__name__}: {first_line(exc)}); the int8 model is unaffected")
    return result


class _Diagnostics:
    """What is measured on the staged int8 model before it is published: the per-layer SQNR
    against FP32, when an output falls below the floor (for the warning) or a report is asked
    for. A diagnostic that fails becomes a warning: it never turns a good model into a crash, and
    it runs before the rename, so a crash elsewhere never leaves a published file behind."""

    def __init__(self, fp32_model, tensors: list[str], feeds: list, options: QuantizeOptions, target_met: bool,
                 watch: Stopwatch) -> None:
        self.fp32_model, self.tensors, self.feeds, self.options = fp32_model, tensors, feeds, options
        self.target_met, self.watch = target_met, watch
        self.low: dict[str, float] = {}
        self.layers: list[dict] | None = None
        self.failures: list[str] = []

    def __call__(self, staged: Path, output_sqnr: dict[str, float]) -> None:
        from .quant.report import layer_errors

        self.low = {name: value for name, value in output_sqnr.items() if value < OUTPUT_SQNR_FLOOR_DB}
        if not ((self.low and not self.target_met) or self.options.report is not None):
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
    cached = _usable_cache(options.cache, model_hash)
    if cached is not None:
        return _Calibration(_ranges_from_cache(cached, tensors), cached.calibration_list_sha256,
                            cached.calibration_ids_sha256, cached.samples, cached=True, calib=calib)
    calib = calib or _open_calibration(model, options)
    ranges_calib = ranges_calib or calib
    observation = observe(model, tensors, ranges_calib, options.method, options.batch, options.show_progress,
                          keep_outputs=CHECK_SAMPLES)
    return _Calibration(_ranges(observation.observers, options, len(ranges_calib)), calib.list_sha256,
                        calib.ids_sha256, len(calib), observation.batch, observation.observers,
                        observation.reference_outputs, calib, held_out=len(calib) - len(ranges_calib))


HOLDOUT_SHARE, HOLDOUT_MAX, HOLDOUT_MIN_RANGES = 0.2, 16, 8


def _split_holdout(calib: CalibrationSet, options: QuantizeOptions) -> tuple[CalibrationSet, list[str]]:
    """(the samples that set the ranges, the held-out ids the precision search measures on): the
    last ``--holdout`` ids of the list (default 20 %, at most 16). Never the accuracy set."""
    count = options.holdout if options.holdout is not None else min(HOLDOUT_MAX, max(1, int(len(calib) * HOLDOUT_SHARE)))
    if count < 1 or len(calib) - count < min(HOLDOUT_MIN_RANGES, len(calib) - 1):
        raise UserInputError(f"--holdout {count}: the calibration list has {len(calib)} samples; keep at least "
                             f"{HOLDOUT_MIN_RANGES} for the ranges and 1 held out")
    return replace(calib, ids=calib.ids[:-count]), calib.ids[-count:]


def _search_precision(fp32: onnx.ModelProto, plan: QuantPlan, calibration: _Calibration, holdout: list[str],
                      options: QuantizeOptions):
    """Sensitivity of every op on the held-out samples and, with a target, the ops to keep FP32."""
    from .quant.flops import matmul_flops
    from .quant.precision_search import measure_sensitivity, search
    from .quant.switchboard import Switchboard

    shown = options.show_progress
    feeds = [calibration.calib.sample(i) for i in holdout]
    labels = _held_out_labels(options.labels, holdout) if options.target and options.target.accuracy else None
    with step(f"building the int8/FP32 switchboard on {len(feeds)} held-out samples", shown):
        board = Switchboard(fp32, plan, _group_scales(plan, calibration.ranges), feeds, labels)
        flops = matmul_flops(fp32, feeds[0])
    op_types = {n.name: n.op_type for n in fp32.graph.node}
    sensitivities = measure_sensitivity(board, op_types, flops, options.sensitivity, shown)
    result = search(board, sensitivities, options.target, flops, shown) if options.target is not None else None
    return result, sensitivities, flops


def _held_out_labels(path: Path | None, holdout: list[str]) -> list[int]:
    """The label of every held-out id, from a "<sample> <label>" file (a val_map, or the
    calibration list itself in MLPerf's option-2 form)."""
    from .calibration.sample_ids import sample_key
    from .verify.labels import VAL_MAP_FORM, read_labelled

    if path is None:
        raise UserInputError("--target-accuracy needs --labels FILE naming the held-out ids with their labels")
    ids, rows = read_labelled(path, VAL_MAP_FORM)
    labels = {sample_key(i): row[0] for i, row in zip(ids, rows)}
    missing = [i for i in holdout if sample_key(i) not in labels]
    if missing:
        raise UserInputError(f"--labels {path}: no label for held-out id '{missing[0]}' (+{len(missing) - 1} more)")
    return [labels[sample_key(i)] for i in holdout]


def _replan(model: ir.Model, exclude: set[str], kept: dict[str, str], ranges: dict[str, TensorRange]) -> QuantPlan:
    """Plan again with more ops FP32. A tensor that had no range (a Linear's output, read only by
    its bias Add while the Linear was int8) keeps its readers FP32 too: no recalibration."""
    while True:
        plan = plan_quantization(model, exclude, kept)
        missing = [t for t in plan.observed_tensors() if t not in ranges]
        if not missing:
            return plan
        for tensor in missing:
            for node, _ in plan.activation_uses.get(tensor, []):
                kept[node] = f"reads '{tensor}', produced by an op kept FP32 (not calibrated); kept FP32"
            for member in plan.group_members(plan.group_of(tensor)):
                for node, _ in plan.activation_uses.get(member, []):
                    kept[node] = f"shares a scale with '{tensor}', produced by an op kept FP32; kept FP32"


def _keep_masks_fp32(model: ir.Model, plan: QuantPlan, ranges: dict[str, TensorRange],
                     options: QuantizeOptions, kept: dict[str, str]) -> tuple[QuantPlan, dict[str, str]]:
    """Nodes reading attention-mask values stay FP32; planned again without them (every tensor the
    new plan needs was observed: dropping readers of a mask group never splits another group).
    Returns the plan and ``kept`` with them, for any later re-plan."""
    masked = nodes_reading_masks(plan, {name: r.amax for name, r in ranges.items()})
    if not masked:
        return plan, kept
    kept = {**kept, **masked}
    return plan_quantization(model, options.exclude, kept), kept


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


def _publish(model: ir.Model, model_path: Path, output: Path, plan: QuantPlan, calibration: _Calibration,
             tensor_scales: dict[str, float], check_feeds: list, output_names: list[str], model_hash: str,
             options: QuantizeOptions, diagnose: _Diagnostics) -> tuple[FusionReport, dict[str, float]]:
    """Stage the model (and caches), check it in onnxruntime and run the diagnostics on it, then
    rename everything into place."""
    with staged_outputs(output) as staging:
        staged = staging.path(output)
        save_model(model, staged)
        fusion, output_sqnr = _check_int8(model_path, staged, check_feeds, calibration.references, output_names)
        diagnose(staged, output_sqnr)
        if options.cache is not None and not calibration.cached:
            cache = CalibrationCache(model_hash, calibration.list_sha256, options.method.value,
                                     options.percentile if options.method is Method.PERCENTILE else None,
                                     calibration.samples, calibration.ranges, calibration.ids_sha256)
            staging.path(options.cache).write_text(cache.to_json(), encoding="utf-8")
        if options.trt_cache is not None:
            activation_scales = {t: s for t, s in tensor_scales.items() if t in plan.activation_uses}
            staging.path(options.trt_cache).write_text(trt_cache_text(activation_scales), encoding="utf-8")
    return fusion, output_sqnr


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


def _check_int8(fp32_path: Path, int8_path: Path, feeds: list[dict[str, np.ndarray]],
                references: dict[str, np.ndarray], output_names: list[str]) -> tuple[FusionReport, dict[str, float]]:
    """What onnxruntime fused, and the output SQNR against FP32 on the check samples. The FP32
    outputs were usually captured during calibration; only a cached run loads and runs the FP32
    model here."""
    names = output_names if feeds else []
    fusion, candidate = check_int8_model(int8_path, feeds, names)
    if any(n not in references or references[n].shape != candidate[n].shape for n in names):
        references = run_with_tensors(load_model_proto(fp32_path), feeds, names)
    return fusion, {n: sqnr_db(references[n], candidate[n]) for n in names}
