"""``qx quantize``: calibrated symmetric per-tensor int8 (MLPerf's lowest common denominator)."""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserInputError
from ..quant.subgraph_nodes import INSIDE
from . import context

HELP = "Calibrate on the calibration list and write a symmetric per-tensor int8 model."


def quantize(
    model: Path = typer.Argument(..., help="FP32 ONNX model (e.g. from qx export)"),
    output: Path = typer.Option(..., "-o", "--output", help="Output int8 .onnx"),
    calib: Path = typer.Option(..., "--calib", help="Folder of .npy/.npz samples, or one .npz"),
    calib_list: Optional[Path] = typer.Option(None, "--calib-list", help="MLPerf calibration list: one sample id per line"),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="FILE.py:FN applied to each sample"),
    method: str = typer.Option("minmax", "--method", help="minmax, percentile, entropy or mse"),
    percentile: Optional[float] = typer.Option(None, "--percentile", help="For --method percentile (default 99.99)"),
    samples: Optional[int] = typer.Option(None, "--samples", help="Use the first N samples of the list"),
    batch: Optional[int] = typer.Option(None, "--batch", help="Calibration batch size (default: chosen from the activation volume)"),
    exclude: list[str] = typer.Option([], "--exclude", help="Node name or op type to keep in FP32 (repeatable)"),
    equalize: list[str] = typer.Option([], "--equalize", help="smoothquant and/or cle: exact FP32 rescaling before quantizing (repeatable)"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="smoothquant's migration strength in [0, 1] (default: chosen per layer by measured error)"),
    target_cosine: Optional[float] = typer.Option(None, "--target-cosine", help="Keep the fewest ops FP32 that reach this mean output cosine on held-out samples"),
    target_sqnr: Optional[float] = typer.Option(None, "--target-sqnr", help="Same, for an output SQNR in dB"),
    target_accuracy: Optional[float] = typer.Option(None, "--target-accuracy", help="Same, for top-1 within this % of FP32 (99 or 99.9) on held-out labels"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="'<sample> <label>' lines for the held-out ids (--target-accuracy)"),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="Measure every op's sensitivity (only it int8; all but it int8)"),
    holdout: Optional[int] = typer.Option(None, "--holdout", help="Last N ids of the list held out for the search and the printed figures (default up to 32, at most half the list)"),
    fmt: str = typer.Option("qdq", "--format", help="qdq (default) or qoperator"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="JSON ranges: reused if present, written if not"),
    trt_cache: Optional[Path] = typer.Option(None, "--trt-cache", help="Also write TensorRT's calibration cache"),
    explain: bool = typer.Option(False, "--explain", help="Print every node: quantized or not, and why"),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for the JSON/Markdown/PNG report"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    from ..quant.spec import Format, Method
    from ..quantize import QuantizeOptions, quantize_model

    if method not in {m.value for m in Method}:
        raise UserInputError(f"--method {method}: choose minmax, percentile, entropy or mse")
    if fmt not in {f.value for f in Format}:
        raise UserInputError(f"--format {fmt}: choose qdq or qoperator")
    method_value, format_value = Method(method), Format(fmt)
    # Options that only one mode reads would otherwise be ignored without a word.
    if percentile is not None and method_value is not Method.PERCENTILE:
        raise UserInputError(f"--percentile is for --method percentile (this run: --method {method})")
    percentile = 99.99 if percentile is None else percentile
    if not 0 < percentile <= 100:
        raise UserInputError(f"--percentile {percentile}: must be in (0, 100]")
    if batch is not None and batch < 1:
        raise UserInputError(f"--batch {batch}: must be at least 1")
    from ..quant.equalize import MODES

    modes = [m for item in equalize for m in item.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UserInputError(f"--equalize {unknown[0]}: choose from {', '.join(MODES)}")
    if alpha is not None and "smoothquant" not in modes:
        raise UserInputError("--alpha is smoothquant's migration strength: it needs --equalize smoothquant")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise UserInputError(f"--alpha {alpha}: must be in [0, 1]")
    if target_cosine is not None and not 0.0 < target_cosine <= 1.0:
        raise UserInputError(f"--target-cosine {target_cosine}: must be in (0, 1]")
    if target_sqnr is not None and not (math.isfinite(target_sqnr) and target_sqnr > 0):
        raise UserInputError(f"--target-sqnr {target_sqnr}: a finite number of dB above 0 (at 0 dB the error is as "
                             "large as the output itself), e.g. 30")
    from ..quant.precision_search import Target

    if target_accuracy is not None and not 0.0 < target_accuracy <= 100.0:
        raise UserInputError(f"--target-accuracy {target_accuracy}: a percentage of FP32's accuracy, e.g. 99 or 99.9")
    wanted = (target_cosine, target_sqnr, target_accuracy)
    target = Target(*wanted) if any(v is not None for v in wanted) else None
    if holdout is not None and target is None and not sensitivity:
        raise UserInputError("--holdout sets the samples a precision target is checked on: it needs --target-cosine, "
                             "--target-sqnr, --target-accuracy or --sensitivity")
    if labels is not None and target_accuracy is None:
        raise UserInputError("--labels are read for --target-accuracy only; add it, or drop --labels")
    if not output.name.endswith(".onnx"):
        raise UserInputError(f"-o '{output}': the output file name must end in .onnx")
    from ..output_paths import check_destinations
    from ..user_code import source_file

    # --cache is read when it exists, so it may exist; it must not be any other input or output.
    check_destinations({"-o": output, "--cache": cache, "--trt-cache": trt_cache},
                       {"the model": model, "--calib": calib, "--calib-list": calib_list, "--labels": labels,
                        "--preprocess": source_file(preprocess) if preprocess else None},
                       folders={"--report": report})
    preprocess_fn = None
    if preprocess:
        from ..user_code import load_function

        preprocess_fn = load_function(preprocess, "--preprocess")
    options = QuantizeOptions(
        calib=calib, calib_list=calib_list, preprocess=preprocess_fn, method=method_value, percentile=percentile,
        samples=samples, batch=batch, exclude=set(exclude), equalize=sorted(set(modes), key=MODES.index), alpha=alpha,
        target=target, sensitivity=sensitivity, holdout=holdout, labels=labels,
        fmt=format_value, cache=cache, trt_cache=trt_cache,
        report=report, show_progress=not as_json,
    )
    result = quantize_model(model, output, options, context.argv)
    _print(result, explain, as_json)


def _fp32_pass_units(result) -> dict:
    """Each phase as a multiple of one FP32 pass over the calibration list (batch 1, qx's session),
    estimated from the FP32 runs on the held-out samples (a precision target's check): the unit the
    time of a quantization is judged in, on a loaded machine as on a quiet one. Empty without them."""
    per_sample = getattr(result.held_out, "fp32_seconds_per_sample", None)
    if not per_sample or not result.samples:
        return {}
    one_pass = per_sample * result.samples
    ratios = {name: seconds / one_pass for name, seconds in result.timings.seconds.items()}
    ratios["total"] = sum(result.timings.seconds.values()) / one_pass
    return {"fp32_pass_s": one_pass, "timings_fp32_passes": ratios}


def _print_int8_share(console, result) -> None:
    """The share of multiply-adds onnxruntime runs in int8, measured on its optimized graph."""
    flops = result.fusion.flops
    if flops is None or flops.share is None:
        if result.int8_flop_share is not None:
            console.print(f"MatMul/Conv FLOPs in int8 (as annotated): {100 * result.int8_flop_share:.1f}%")
        return
    total = flops.int8 + flops.float
    line = (f"MatMul/Conv FLOPs in int8 after onnxruntime's fusion: {100 * flops.share:.1f}% of "
            f"{total / 1e6:.3g} MFLOP per sample (ConvTranspose, LSTM and If branches included)")
    if flops.inside_if:
        line += f"; {100 * flops.inside_if / total:.1f}% are inside If branches, FP32"
    if flops.loops_uncounted:
        line += f"; Loop/Scan bodies not counted ({', '.join(flops.loops_uncounted)})"
    console.print(line)


def _print(result, explain: bool, as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps({
            "output": str(result.output),
            "samples": result.samples,
            "batch": result.batch_used,
            "cache_used": result.cache_used,
            "quantized_activations": result.counts.activations,
            "quantized_weights": result.counts.weights,
            "int32_biases": result.counts.biases,
            "nodes": [vars(d) for d in result.decisions],
            "onnxruntime_int8_kernels": result.fusion.int8_kernels,
            "onnxruntime_fused_nodes": result.fusion.fused_nodes,
            "onnxruntime_session": result.fusion.session,
            "output_sqnr_db": result.output_sqnr_db,
            "warnings": result.warnings,
            "equalization": result.equalization.summary() if result.equalization else None,
            "int8_matmul_conv_flop_share": result.int8_flop_share,
            "flops_after_fusion": vars(result.fusion.flops) if result.fusion.flops is not None else None,
            "precision_search": result.search.as_dict() if result.search else None,
            "target": ({"description": result.claim.target.describe(), "met": result.claim.met,
                        "met_at_lower_bound": result.claim.certain, **result.claim.figures.as_dict()}
                       if result.claim else None),
            "output_sqnr_samples": result.sqnr_on,
            "layer_tolerance": ({"layers": result.tolerance.layers_measured,
                                 "failing": [vars(f) for f in result.tolerance.failing],
                                 "changes": result.tolerance.remedies} if result.tolerance else None),
            "timings_s": result.timings.seconds,
            **_fp32_pass_units(result),
            "report": [str(p) for p in result.report_files],
        }, indent=2))
        return
    console = Console()
    if explain:
        table = Table(title="quantization decisions", show_edge=False)
        for column in ("node", "op", "precision", "why"):
            table.add_column(column, overflow="fold")
        for d in result.decisions:
            table.add_row(d.name, d.op_type, "int8" if d.quantized else "fp32", d.reason)
        console.print(table)
    if result.equalization is not None:
        console.print(f"equalization: {result.equalization.summary()}")
    if result.search is not None:
        search = result.search
        # The switchboard's figures chose the FP32 ops; what is claimed is measured on the written file.
        console.print(f"precision search on {result.held_out.samples} held-out samples: {len(search.fp32)} ops kept "
                      f"FP32 ({search.trials} trials in {search.seconds:.0f} s); the search estimated mean cosine "
                      f"{search.start.mean_cosine:.5f} all int8 -> {search.final.mean_cosine:.5f}")
    if result.claim is not None:
        console.print(f"target {result.claim.describe()}")
    if result.tolerance is not None and result.tolerance.layers_measured:
        tolerance = result.tolerance
        console.print(f"layer tolerance (verify's layer_numerics, on the reference's inputs): "
                      f"{tolerance.layers_measured - len(tolerance.failing)}/{tolerance.layers_measured} layers within"
                      + (f"; {len(tolerance.remedies)} change(s) to get there: {'; '.join(tolerance.remedies[:4])}"
                         + (" …" if len(tolerance.remedies) > 4 else "") if tolerance.remedies else ""))
    _print_int8_share(console, result)
    quantized = sum(d.quantized for d in result.decisions)
    console.print(f"{quantized}/{len(result.decisions)} nodes annotated int8; {result.counts.activations} activations, "
                  f"{result.counts.weights} weights, {result.counts.biases} int32 biases quantized; "
                  f"{'ranges from cache' if result.cache_used else f'{result.samples} calibration samples, batch {result.batch_used}'}")
    kept = sorted({d.op_type for d in result.decisions if not d.quantized and not d.reason.startswith(INSIDE)})
    if kept:
        console.print(f"kept FP32: {', '.join(kept)} (--explain says why)")
    inside = Counter(d.op_type for d in result.decisions if not d.quantized and d.reason.startswith(INSIDE))
    if inside:
        console.print(f"kept FP32 inside If/Loop bodies: {', '.join(f'{k}×{n}' for k, n in sorted(inside.items()))} "
                      "(qx quantizes the main graph; --explain says where)")
    if result.fusion.int8_kernels:
        kernels = ", ".join(f"{op}×{n}" for op, n in result.fusion.int8_kernels.items())
        console.print(f"onnxruntime int8 kernels after fusion: {kernels}")
    if result.fusion.session:
        console.print(f"onnxruntime session: {result.fusion.session}")
    for name, value in result.output_sqnr_db.items():
        where = (f"the {result.held_out.samples} held-out samples" if result.sqnr_on == "held-out"
                 else "the first calibration samples")
        console.print(f"output '{name}': SQNR {value:.1f} dB vs FP32 on {where} (written model)")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)  # one unwrapped line, like the errors
    for path in result.report_files:
        console.print(f"report: {path}")
    console.print(f"time: {result.timings.describe()}")
    passes = _fp32_pass_units(result)
    if passes:
        console.print(f"time in FP32 passes (one: the FP32 model over the {result.samples} listed samples one by one, "
                      f"{passes['fp32_pass_s']:.2f} s from the held-out runs): "
                      + ", ".join(f"{name} {ratio:.1f}x" for name, ratio in passes["timings_fp32_passes"].items()))
    console.print(f"wrote {result.output}")
