"""``qx quantize``: calibrated symmetric per-tensor int8 (MLPerf's lowest common denominator)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserInputError
from . import context

HELP = "Calibrate on the calibration list and write a symmetric per-tensor int8 model."


def quantize(
    model: Path = typer.Argument(..., help="FP32 ONNX model (e.g. from qx export)"),
    output: Path = typer.Option(..., "-o", "--output", help="Output int8 .onnx"),
    calib: Path = typer.Option(..., "--calib", help="Folder of .npy/.npz samples, or one .npz"),
    calib_list: Optional[Path] = typer.Option(None, "--calib-list", help="MLPerf calibration list: one sample id per line"),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="FILE.py:FN applied to each sample"),
    method: str = typer.Option("minmax", "--method", help="minmax, percentile, entropy or mse"),
    percentile: float = typer.Option(99.99, "--percentile", help="For --method percentile"),
    samples: Optional[int] = typer.Option(None, "--samples", help="Use the first N samples of the list"),
    batch: Optional[int] = typer.Option(None, "--batch", help="Calibration batch size (default: chosen from the activation volume)"),
    exclude: list[str] = typer.Option([], "--exclude", help="Node name or op type to keep in FP32 (repeatable)"),
    fmt: str = typer.Option("qdq", "--format", help="qdq (default) or qoperator"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="JSON ranges: reused if present, written if not"),
    trt_cache: Optional[Path] = typer.Option(None, "--trt-cache", help="Also write TensorRT's calibration cache"),
    explain: bool = typer.Option(False, "--explain", help="Print every node: quantized or not, and why"),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for the JSON/Markdown/PNG report"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    from ..quant.spec import Format, Method
    from ..quantize import QuantizeOptions, quantize_model

    try:
        method_value, format_value = Method(method), Format(fmt)
    except ValueError:
        raise UserInputError(f"--method must be one of minmax, percentile, entropy, mse; --format qdq or qoperator "
                             f"(got --method {method} --format {fmt})") from None
    if not 0 < percentile <= 100:
        raise UserInputError(f"--percentile {percentile}: must be in (0, 100]")
    if batch is not None and batch < 1:
        raise UserInputError(f"--batch {batch}: must be at least 1")
    if not output.name.endswith(".onnx"):
        raise UserInputError(f"-o '{output}': the output file name must end in .onnx")
    if output.resolve() == model.resolve():
        raise UserInputError(f"-o '{output}' would overwrite the input model; choose another path")
    preprocess_fn = None
    if preprocess:
        from ..user_code import load_function

        preprocess_fn = load_function(preprocess, "--preprocess")
    options = QuantizeOptions(
        calib=calib, calib_list=calib_list, preprocess=preprocess_fn, method=method_value, percentile=percentile,
        samples=samples, batch=batch, exclude=set(exclude), fmt=format_value, cache=cache, trt_cache=trt_cache,
        report=report, show_progress=not as_json,
    )
    result = quantize_model(model, output, options, context.argv)
    _print(result, explain, as_json)


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
            "output_sqnr_db": result.output_sqnr_db,
            "warnings": result.warnings,
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
    quantized = sum(d.quantized for d in result.decisions)
    console.print(f"{quantized}/{len(result.decisions)} nodes int8; {result.counts.activations} activations, "
                  f"{result.counts.weights} weights, {result.counts.biases} int32 biases quantized; "
                  f"{'ranges from cache' if result.cache_used else f'{result.samples} calibration samples, batch {result.batch_used}'}")
    kept = sorted({d.op_type for d in result.decisions if not d.quantized})
    if kept:
        console.print(f"kept FP32: {', '.join(kept)} (--explain says why)")
    if result.fusion.int8_kernels:
        kernels = ", ".join(f"{op}×{n}" for op, n in result.fusion.int8_kernels.items())
        console.print(f"onnxruntime int8 kernels after fusion: {kernels}")
    for name, value in result.output_sqnr_db.items():
        console.print(f"output '{name}': SQNR {value:.1f} dB vs FP32 on the first calibration samples")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)  # one unwrapped line, like the errors
    for path in result.report_files:
        console.print(f"report: {path}")
    console.print(f"wrote {result.output}")
