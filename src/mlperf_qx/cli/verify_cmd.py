"""``qx verify-equivalence``: the extensional and intensional verdicts, PASSED or FAILED."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserInputError, VerificationFailed

HELP = "Run reference and candidate under LoadGen, score them, audit the candidate; PASSED or FAILED."


def verify_equivalence(
    reference: str = typer.Option(..., "--reference", help="FP32 ONNX reference, or a framework reference: torch FILE.py:NAME (with --reference-weights) or a TF SavedModel/.keras"),
    reference_weights: Optional[Path] = typer.Option(None, "--reference-weights", help="torch reference: state_dict (.safetensors/.pt)"),
    inputs: list[str] = typer.Option([], "--input", help="framework reference: NAME:SHAPE[:dtype] per input"),
    candidate: Path = typer.Option(..., "--candidate", help="Candidate ONNX (e.g. the int8 model)"),
    dataset: Path = typer.Option(..., "--dataset", help="Folder of preprocessed .npy/.npz samples, or an .npz"),
    labels: Path = typer.Option(..., "--labels", help="MLPerf val_map: '<sample> <label>' per line"),
    out: Path = typer.Option(..., "--out", help="Folder for LoadGen logs and the report"),
    mode: str = typer.Option("both", "--mode", help="extensional, intensional or both"),
    target: str = typer.Option("99", "--target", help="99 or 99.9 (% of the reference accuracy)"),
    scenario: str = typer.Option("Offline", "--scenario", help="Offline or SingleStream"),
    calib_list: Optional[Path] = typer.Option(None, "--calib-list", help="Calibration list the candidate used"),
    forbid_overlap: bool = typer.Option(False, "--forbid-overlap", help="Fail calibration_provenance when a calibration id is also in the accuracy set (MLPerf allows it)"),
    samples: Optional[int] = typer.Option(None, "--samples", help="Use the first N samples of --labels"),
    duration_ms: int = typer.Option(2000, "--duration-ms", help="LoadGen PerformanceOnly minimum duration"),
) -> None:
    from ..verify.equivalence import VerifyOptions, verify_equivalence as run
    from ..verify.loadgen_harness import LoadGenConfig, SCENARIOS

    if mode not in ("both", "extensional", "intensional"):
        raise UserInputError("--mode must be extensional, intensional or both")
    if target not in ("99", "99.9"):
        raise UserInputError("--target must be 99 or 99.9")
    if scenario not in SCENARIOS:
        raise UserInputError("--scenario must be Offline or SingleStream")
    if samples is not None and samples < 1:
        raise UserInputError("--samples must be positive")
    options = VerifyOptions(mode=mode, target=float(target), calib_list=calib_list, samples=samples,
                            forbid_overlap=forbid_overlap,
                            loadgen=LoadGenConfig(scenario=scenario, performance_duration_ms=duration_ms))
    reference_path = _reference(reference, reference_weights, inputs, out, options)
    verdict = run(reference_path, candidate, dataset, labels, out, options)
    _print(verdict)
    if not verdict["passed"]:
        raise typer.Exit(code=VerificationFailed.exit_code)  # the report's last line already says FAILED


def _reference(reference: str, weights: Optional[Path], inputs: list[str], out: Path, options) -> Path:
    """An ONNX reference as it is; a framework reference exported (and checked) first."""
    if reference.endswith(".onnx"):
        return Path(reference)
    from ..input_spec import parse_input_specs
    from ..verify.equivalence import export_framework_reference
    from .export_cmd import DEFAULT_OPSET

    specs = parse_input_specs(inputs)
    if weights is not None or ":" in reference and not Path(reference).exists():
        if weights is None or not specs:
            raise UserInputError("a torch reference needs --reference-weights and --input NAME:SHAPE")
        from ..importers.torch_export import import_torch

        imported = import_torch(reference, weights, specs, model_kwargs=None, output_names=None, opset=DEFAULT_OPSET,
                                dynamic_batch=True, exporter="dynamo")
    else:
        from ..importers.tf_export import import_tf

        imported = import_tf(Path(reference), specs, signature=None, output_names=None, opset=DEFAULT_OPSET,
                             dynamic_batch=True)
    from . import context

    result = export_framework_reference(imported, out, context.argv, DEFAULT_OPSET, True)
    Console().print(f"reference: {imported.framework} model exported to {result.output}; FP32 check "
                    + ", ".join(f"{c.name} max abs {c.max_abs_error:.2g}" for c in result.comparisons))
    options.reference_framework = imported
    return result.output


def _print(verdict: dict) -> None:
    console = Console()
    ext = verdict.get("extensional")
    if ext:
        console.print(f"extensional: reference {ext['reference']['accuracy_line']}; candidate "
                      f"{ext['candidate']['accuracy_line']}; threshold {ext['threshold']:.3f}% "
                      f"({ext['target']}%) -> {'PASS' if ext['passed'] else 'FAIL'}")
    intensional = verdict.get("intensional")
    if intensional:
        table = Table(title="intensional checks", show_edge=False)
        for column in ("check", "measured", "result", "detail"):
            table.add_column(column, overflow="fold")
        for check in intensional["checks"]:
            table.add_row(check["name"], check["measured"], "PASS" if check["passed"] else "FAIL", check["detail"])
        console.print(table)
    for path in verdict["report_files"]:
        console.print(f"report: {path}")
    console.print("PASSED" if verdict["passed"] else "FAILED")
