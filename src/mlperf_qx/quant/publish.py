"""Publish the written int8 model: stage it (and the range and TensorRT caches) beside the
destination, check it in onnxruntime (loads, fusions, output SQNR against FP32), run the
diagnostics on the staged file, then rename everything into place. Nothing measured here can
leave a file behind: a failure before the rename publishes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from ..atomic import staged_outputs
from ..background import together
from ..calibration.cache import CalibrationCache, trt_cache_text
from ..errors import first_line
from ..onnx_io import save_model
from ..progress import Stopwatch, step
from .annotate import QuantPlan
from .calibrated_ranges import Calibration
from .claims import HeldOutFigures, held_out_figures, run_both
from .options import QuantizeOptions
from .runtime_check import FusionReport, check_int8_model, join_samples, run_with_tensors, sqnr_db
from .weights_apart import OpenedOnce, load_apart, open_apart
from .spec import Method

# Below this output SQNR (noise at 1 % of the signal's power) qx warns and names the worst layers.
OUTPUT_SQNR_FLOOR_DB = 20.0


class Diagnostics:
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
        from .report import layer_errors

        self.low = {name: value for name, value in output_sqnr.items() if value < OUTPUT_SQNR_FLOOR_DB}
        if not ((self.low and not self.target_met(figures)) or self.options.report is not None):
            return
        with self.watch.phase("report"), step("measuring per-layer SQNR against FP32", self.options.show_progress):
            try:
                self.layers = layer_errors(self.fp32_model, staged, self.tensors, self.feeds)
            except Exception as exc:
                self.failures.append(f"per-layer SQNR could not be measured ({type(exc).__name__}: "
                                     f"{first_line(exc)}); the int8 model is unaffected")


def publish(model: ir.Model, proto: onnx.ModelProto | None, fp32: OpenedOnce, output: Path, plan: QuantPlan,
            calibration: Calibration, tensor_scales: dict[str, float], check_feeds: list, labels: list[int] | None,
            model_hash: str, options: QuantizeOptions, held_out: bool, diagnose: Diagnostics
            ) -> tuple[FusionReport, dict[str, float], HeldOutFigures | None]:
    """Stage the model (and caches), check it in onnxruntime and run the diagnostics on it, then
    rename everything into place. ``proto``: the model serialized already (the proto the layer
    check measured), written as it is; ``fp32``: the FP32 model, opened once for the phase."""
    with staged_outputs(output) as staging:
        staged = staging.path(output)
        save_model(model, staged, proto=proto)
        fusion, output_sqnr, figures = _check_int8(fp32, staged, check_feeds, calibration.references, labels, held_out)
        diagnose(staged, output_sqnr, figures)
        if options.cache is not None and not calibration.cached:
            cache = CalibrationCache(model_hash, calibration.list_sha256, options.method.value,
                                     options.percentile if options.method is Method.PERCENTILE else None,
                                     calibration.samples, calibration.ranges, calibration.ids_sha256,
                                     calibration.held_out)
            staging.path(options.cache).write_text(cache.to_json(), encoding="utf-8")
        if options.trt_cache is not None:
            activation_scales = {t: s for t, s in tensor_scales.items() if t in plan.activation_uses}
            staging.path(options.trt_cache).write_text(trt_cache_text(activation_scales), encoding="utf-8")
    return fusion, output_sqnr, figures


def quality_warnings(low: dict[str, float], layers: list[dict], options: QuantizeOptions,
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


def _check_int8(fp32: OpenedOnce, int8_path: Path, feeds: list[dict[str, np.ndarray]],
                references: dict[str, np.ndarray], labels: list[int] | None, held_out: bool
                ) -> tuple[FusionReport, dict[str, float], HeldOutFigures | None]:
    """What onnxruntime fused, and the output SQNR against FP32 of the written model (read once
    from its file for all its sessions). On held-out samples (a precision search) also every
    figure a target is judged by, with its lower bound. Else on the first calibration samples,
    whose FP32 outputs were usually captured during calibration; only a cached run runs the FP32
    model here. ``fp32``: the FP32 model, made apart while the candidate was written."""
    names = [o.name for o in fp32.proto.graph.output] if feeds else []
    written = load_apart(int8_path)
    if held_out:
        # The fusion check builds its session (and writes the optimized graph) while the written
        # model runs; the FP32 model's timed runs come after both.
        with ThreadPoolExecutor(max_workers=1) as checker:
            fusion_check = checker.submit(check_int8_model, written, [], [])
            reference, candidate = together(fp32.plain_session, partial(open_apart, *written))
            fp32_outputs, int8_outputs, seconds_per_sample = run_both(reference, candidate, names, feeds,
                                                                      between=fusion_check.result)
            fusion, _ = fusion_check.result()
        figures = held_out_figures(fp32_outputs, int8_outputs, labels)
        figures.fp32_seconds_per_sample = seconds_per_sample
        joined = [(join_samples([r[i] for r in fp32_outputs]), join_samples([o[i] for o in int8_outputs]))
                  for i in range(len(names))]
        return fusion, {n: sqnr_db(a, b) for n, (a, b) in zip(names, joined)}, figures
    fusion, candidate = check_int8_model(written, feeds, names)
    if any(n not in references or references[n].shape != candidate[n].shape for n in names):
        references = run_with_tensors(fp32.proto, feeds, names)
    return fusion, {n: sqnr_db(references[n], candidate[n]) for n in names}, None
