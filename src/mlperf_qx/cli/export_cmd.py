"""``qx export``: framework reference -> canonical FP32 ONNX, checked numerically, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserInputError
from . import context
from ..input_spec import parse_input_specs
from ..numeric_check import parse_tolerance

HELP = "Export a PyTorch or TensorFlow reference to canonical ONNX and check it against the framework."
DEFAULT_OPSET = 18


def export(
    framework: str = typer.Option(..., "--framework", help="torch or tf"),
    model: str = typer.Option(..., "--model", help="torch: FILE.py:NAME or package.module:NAME; tf: SavedModel dir, .keras or .h5"),
    output: Path = typer.Option(..., "-o", "--output", help="Output .onnx path"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="torch: state_dict as .safetensors or .pt/.pth"),
    inputs: list[str] = typer.Option([], "--input", help="NAME:DxDxD[:dtype], once per model input, in forward order"),
    output_names: list[str] = typer.Option([], "--output-name", help="Name of each output, in order"),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", help="JSON keyword arguments for NAME"),
    signature: Optional[str] = typer.Option(None, "--signature", help="tf: SavedModel signature (default serving_default)"),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help="tf: FILE.py registering the model's custom Keras classes"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make dimension 0 of every input symbolic"),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset of the default domain"),
    tolerance: str = typer.Option("1e-4,1e-3", "--tolerance", help="ATOL,RTOL of the FP32 check"),
    samples: list[Path] = typer.Option([], "--sample", help="FP32 check input: .npy (one input) or .npz (by input name); given, these replace the random draws"),
    exporter: str = typer.Option("dynamo", "--exporter", help="torch: dynamo (default) or legacy"),
    external_data: str = typer.Option("auto", "--external-data", help="auto (past 2 GB), always or never"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON"),
) -> None:
    tol = parse_tolerance(tolerance)
    if not output.name.endswith(".onnx"):
        raise UserInputError(f"-o '{output}': the output file name must end in .onnx")
    if external_data not in ("auto", "always", "never"):
        raise UserInputError("--external-data must be auto, always or never")
    if not 13 <= opset <= 23:
        raise UserInputError(f"--opset {opset}: supported opsets are 13 to 23")
    _refuse_other_frameworks_options(framework, weights=weights, model_kwargs=model_kwargs, exporter=exporter,
                                     signature=signature, custom_objects=custom_objects)
    from ..onnx_io import external_data_name
    from ..output_paths import check_destinations
    from ..user_code import source_file

    model_file = source_file(model) if framework == "torch" else Path(model) if framework == "tf" else None
    check_destinations({"-o": output, "-o's manifest": output.with_name(output.name + ".manifest.json"),
                        "-o's external data": output.with_name(external_data_name(output))},
                       {"--model": model_file, "--weights": weights, "--custom-objects": custom_objects,
                        **{f"--sample '{sample}'": sample for sample in samples}})
    specs = parse_input_specs(inputs)
    imported = _import(framework, model, weights, specs, output_names, model_kwargs, signature,
                       opset, dynamic_batch, exporter, custom_objects)
    from ..export import export_model

    result = export_model(imported, output, argv=context.argv, opset=opset, dynamic_batch=dynamic_batch,
                          tolerance=tol, samples=samples, external_data=external_data)
    _report(result, as_json)


def _refuse_other_frameworks_options(framework: str, **given) -> None:
    """An option of the other framework would be ignored without a word: refused instead."""
    torch_only = {"weights": "--weights", "model_kwargs": "--model-kwargs"}
    tf_only = {"signature": "--signature", "custom_objects": "--custom-objects"}
    if framework == "tf":
        used = [flag for key, flag in torch_only.items() if given[key] is not None]
        used += ["--exporter"] if given["exporter"] != "dynamo" else []
    elif framework == "torch":
        used = [flag for key, flag in tf_only.items() if given[key] is not None]
    else:
        return
    if used:
        raise UserInputError(f"{used[0]} is for --framework {'torch' if framework == 'tf' else 'tf'}; "
                             f"--framework {framework} does not use it")


def _import(framework, model, weights, specs, output_names, model_kwargs, signature, opset, dynamic_batch, exporter,
            custom_objects=None):
    if framework == "torch":
        if weights is None:
            raise UserInputError("--framework torch needs --weights (a state_dict as .safetensors or .pt)")
        if not specs:
            raise UserInputError("--framework torch needs --input NAME:SHAPE for every forward argument")
        if exporter not in ("dynamo", "legacy"):
            raise UserInputError("--exporter must be dynamo or legacy")
        from ..importers.torch_export import import_torch

        return import_torch(model, weights, specs, model_kwargs=model_kwargs, output_names=output_names or None,
                            opset=opset, dynamic_batch=dynamic_batch, exporter=exporter)
    if framework == "tf":
        from ..importers.tf_export import import_tf

        return import_tf(Path(model), specs, signature=signature, output_names=output_names or None,
                         opset=opset, dynamic_batch=dynamic_batch, custom_objects=custom_objects)
    raise UserInputError(f"--framework '{framework}': choose torch or tf")


def _report(result, as_json: bool) -> None:
    if as_json:
        import json
        from dataclasses import asdict

        print(json.dumps({
            "output": str(result.output),
            "passes": [asdict(p) for p in result.passes],
            "fp32_check": [asdict(c) for c in result.comparisons],
            "tolerance": str(result.tolerance),
            "external_data": result.external_data,
        }, indent=2))
        return
    console = Console()
    passes = Table(title="canonicalization passes", show_edge=False)
    passes.add_column("pass")
    passes.add_column("modified")
    for record in result.passes:
        passes.add_row(record.name, "yes" if record.modified else "-")
    console.print(passes)
    check = Table(title=f"FP32 check, ONNX Runtime vs framework (tolerance {result.tolerance})", show_edge=False)
    for column in ("output", "max abs", "max rel", "mean abs", "atol that passes", "result"):
        check.add_column(column)
    for c in result.comparisons:
        check.add_row(c.name, f"{c.max_abs_error:.3g}", f"{c.max_rel_error:.3g}", f"{c.mean_abs_error:.3g}",
                      f"{c.atol_needed:.3g}", "PASSED" if c.passed else "FAILED")
    console.print(check)
    console.print(f"wrote {result.output}" + (" (+ external data)" if result.external_data else "")
                  + f" and {result.output.name}.manifest.json")
