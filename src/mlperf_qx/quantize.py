"""The quantization pipeline:

FP32 ONNX -> canonicalize -> annotate (QuantPlan) -> observe (or read the cache) -> thresholds ->
group scales -> insert Q/DQ -> [lower to QOperator] -> provenance -> staged file -> onnxruntime
checks (loads, fusions, output SQNR) -> published model (+ cache, TensorRT cache, report).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from .atomic import staged_outputs
from .calibration.cache import CalibrationCache, TensorRange, read_cache, trt_cache_text
from .calibration.model_inputs import model_inputs
from .calibration.readers import CalibrationSet, open_calibration_set
from .errors import UserInputError, first_line
from .ir.canonicalize import canonicalization_pipeline
from .kernels.warm_up import warm_up_in_background
from .ir.passes.eliminate_dead_code import EliminateDeadCode
from .onnx_io import load_model_proto, save_model
from .provenance import package_versions, portable_command_line, record_in_model, sha256_file
from .quant.annotate import NodeDecision, QuantPlan, plan_quantization
from .quant.calibrate import observe
from .quant.insert_qdq import QdqCounts, insert_qdq
from .quant.observers import MinMaxObserver, threshold
from .quant.runtime_check import FusionReport, check_int8_model, run_with_tensors, sqnr_db
from .quant.scales import scale_from_amax
from .quant.spec import Format, Method

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                 "ConvInteger", "QLinearAdd", "QLinearMul", "QGemm", "DynamicQuantizeLinear"}
CHECK_SAMPLES = 8  # output SQNR check; every extra sample costs two model runs


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


def load_fp32_model(path: Path) -> ir.Model:
    proto = load_model_proto(path)
    already = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_OPS)
    if already:
        raise UserInputError(f"{path}: already quantized (contains {', '.join(already)}); pass the FP32 model")
    try:
        # By path: the checker then also handles models past protobuf's 2 GB limit.
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, Exception) as exc:  # noqa: B014 - the checker raises several types
        raise UserInputError(f"{path}: fails the ONNX checker: {first_line(exc, 200)}") from None
    model, _ = canonicalization_pipeline()(ir.serde.deserialize_model(proto))
    return model


def quantize_model(model_path: Path, output: Path, options: QuantizeOptions, argv: list[str]) -> QuantizeResult:
    warm_up_in_background()
    with ThreadPoolExecutor(max_workers=1) as hasher:  # hashlib releases the GIL: hash while loading
        hashing = hasher.submit(sha256_file, model_path)
        model = load_fp32_model(model_path)
        model_hash = hashing.result()
    output_names = [v.name for v in model.graph.outputs]  # kept by canonicalization and Q/DQ insertion
    plan = plan_quantization(model, options.exclude)
    tensors = plan.observed_tensors()
    inputs = model_inputs(model)
    calib: CalibrationSet | None = None
    cached = _usable_cache(options.cache, model_hash)
    observers: dict = {}
    references: dict[str, np.ndarray] = {}
    if cached is not None:
        ranges, list_hash, sample_count, batch_used = _ranges_from_cache(cached, tensors), cached.calibration_list_sha256, cached.samples, 0
    else:
        calib = open_calibration_set(options.calib, inputs, options.calib_list, options.preprocess, options.samples)
        observation = observe(model, tensors, calib, options.method, options.batch, options.show_progress,
                              keep_outputs=CHECK_SAMPLES)
        observers, batch_used, references = observation.observers, observation.batch, observation.reference_outputs
        ranges = _ranges(observers, options)
        list_hash, sample_count = calib.list_sha256, len(calib)

    group_amax: dict[str, float] = {}
    for tensor in plan.activation_uses:
        group = plan.group_of(tensor)
        group_amax[group] = max(ranges[t].amax for t in plan.group_stats[group])
    scales = {group: scale_from_amax(amax) for group, amax in group_amax.items()}
    counts, tensor_scales = insert_qdq(model, plan, scales)
    EliminateDeadCode()(model)
    if options.fmt is Format.QOPERATOR:
        from .quant.lower_qoperator import LowerToQOperator

        LowerToQOperator()(model)
    record_in_model(model, {
        "quantization": {
            "scheme": "int8 symmetric per-tensor, zero point 0, int32 bias",
            "method": options.method.value,
            "percentile": options.percentile if options.method is Method.PERCENTILE else None,
            "format": options.fmt.value,
            "calibration_list_sha256": list_hash,
            "calibration_samples": sample_count,
            "fp32_model_sha256": model_hash,
            "excluded": sorted(options.exclude),
            "fp32_nodes": {d.name: d.reason for d in plan.decisions if not d.quantized},
        },
        "quantize_command": portable_command_line(argv),
        "quantize_versions": package_versions(["onnx", "onnxruntime", "numba", "numpy"]),
    })

    check_feeds = _check_feeds(calib, options, inputs)
    cache_written = options.cache is not None and cached is None
    with staged_outputs(output) as staging:
        staged = staging.path(output)
        save_model(model, staged)
        fusion, output_sqnr = _check_int8(model_path, staged, check_feeds, references, output_names)
        if cache_written:
            cache = CalibrationCache(model_hash, list_hash, options.method.value,
                                     options.percentile if options.method is Method.PERCENTILE else None,
                                     sample_count, ranges)
            staging.path(options.cache).write_text(cache.to_json(), encoding="utf-8")
        if options.trt_cache is not None:
            activation_scales = {t: s for t, s in tensor_scales.items() if t in plan.activation_uses}
            staging.path(options.trt_cache).write_text(trt_cache_text(activation_scales), encoding="utf-8")
    result = QuantizeResult(output, plan.decisions, counts, tensor_scales, ranges, fusion, output_sqnr,
                            sample_count, batch_used, cached is not None)
    if options.report is not None:
        from .quant.report import write_report

        result.report_files = write_report(options.report, model_path, output, plan, result, observers, check_feeds, options)
    return result


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


def _ranges(observers: dict[str, MinMaxObserver], options: QuantizeOptions) -> dict[str, TensorRange]:
    ranges = {}
    for name, observer in observers.items():
        amax = threshold(observer, options.method, options.percentile)
        ranges[name] = TensorRange(float(amax), float(scale_from_amax(amax)), int(observer.count))
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
