"""``qx verify-equivalence``: the extensional and intensional verdicts, PASSED or FAILED."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserInputError, VerificationFailed, VerificationInconclusive, missing
from ..verify.benchmarks import RULES
from ..verify.stall_watchdog import DEFAULT_STALL_S

HELP = ("Run reference and candidate under LoadGen, score them, audit the candidate; PASSED or FAILED. "
        f"Submission rules applied: {RULES}.")


def verify_equivalence(
    reference: str = typer.Option(..., "--reference", help="FP32 ONNX reference, or a framework reference: torch FILE.py:NAME (with --reference-weights) or a TF SavedModel/.keras"),
    reference_weights: Optional[Path] = typer.Option(None, "--reference-weights", help="torch reference: state_dict (.safetensors/.pt)"),
    inputs: list[str] = typer.Option([], "--input", help="framework reference: NAME:SHAPE[:dtype] per input"),
    candidate: Path = typer.Option(..., "--candidate", help="Candidate ONNX (e.g. the int8 model)"),
    dataset: Path = typer.Option(..., "--dataset", help="Folder of preprocessed .npy/.npz samples, or an .npz"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="classification: MLPerf val_map '<sample> <label>'; spans: '<sample> <start> <end>'; raw: not used"),
    sample_list: Optional[Path] = typer.Option(None, "--sample-list", help="Sample ids in QSL order when there are no --labels (default: every sample of --dataset)"),
    out: Path = typer.Option(..., "--out", help="Folder for LoadGen logs and the report"),
    mode: str = typer.Option("both", "--mode", help="extensional, intensional or both"),
    task: str = typer.Option("classification", "--task", help="classification (top-1 vs labels), raw (output agreement with the reference) or spans (start/end logits)"),
    outputs: list[str] = typer.Option([], "--output", help="Model output(s) the response is made from (default: classification the first, raw all, spans the first two)"),
    response_dtype: Optional[str] = typer.Option(None, "--response-dtype", help="classification response dtype: float32 (MLPerf reference, default), int32 or int64"),
    batch_axes: list[str] = typer.Option([], "--batch-axis", help="OUTPUT=AXIS: the output's batch axis when it is not the first and its shape does not declare it (e.g. a CTC recognizer's time x batch x classes: 387=1)"),
    label_offset: int = typer.Option(0, "--label-offset", help="Added to the argmax (-1 for 1001-class ResNet-50 profiles, as the reference)"),
    target: str = typer.Option("99", "--target", help="99 or 99.9 (% of the reference accuracy)"),
    scenario: str = typer.Option("Offline", "--scenario", help="Offline, Server, SingleStream or MultiStream"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="MLPerf v6.1 benchmark as the submission checker names it (resnet, bert-99, 3d-unet-99.9, yolo-99...): its results folder; its mlperf.conf key (resnet50, bert...) is applied"),
    user_conf: Optional[Path] = typer.Option(None, "--user-conf", help="LoadGen user.conf (target_qps / target_latency...)"),
    audit_config: Optional[Path] = typer.Option(None, "--audit-config", help="LoadGen audit config to apply (./audit.config is never applied silently)"),
    run_length: str = typer.Option("quick", "--run-length", help="quick (--duration-ms, not valid for submission) or official (mlperf.conf's duration and query count)"),
    duration_ms: Optional[int] = typer.Option(None, "--duration-ms", help="quick run: LoadGen PerformanceOnly minimum duration (default 2000)"),
    performance_runs: Optional[int] = typer.Option(None, "--performance-runs", help="LoadGen performance runs of each model, reference and candidate alternating; each model's median run is reported and submitted (default: 3 for a quick run, 1 for an official one)"),
    compliance: Optional[str] = typer.Option(None, "--compliance", help="Also run MLPerf compliance test TEST01 or TEST04 on the candidate"),
    submission_dir: Optional[Path] = typer.Option(None, "--submission-dir", help="Write the candidate's results in MLPerf's submission layout under DIR/<model>/<scenario>"),
    calib_list: Optional[Path] = typer.Option(None, "--calib-list", help="Calibration list the candidate used"),
    forbid_overlap: bool = typer.Option(False, "--forbid-overlap", help="Fail calibration_provenance when a calibration id is also in the accuracy set (MLPerf allows it)"),
    samples: Optional[int] = typer.Option(None, "--samples", help="Use the first N samples"),
    max_batchsize: int = typer.Option(32, "--max-batchsize", help="Most samples the SUT runs in one inference (MLPerf reference's --max-batchsize, default 32); models with a fixed batch dimension run one at a time"),
    stall_timeout: float = typer.Option(DEFAULT_STALL_S, "--stall-timeout", help="Seconds without any inference returning after which a LoadGen run is ended as a runtime hang (exit 3); at least 10x the slowest inference seen"),
    backend: str = typer.Option("onnxruntime", "--backend", help="Runtime of the LoadGen runs of reference and candidate: onnxruntime or openvino (the intensional audit always uses onnxruntime's exact numerics)"),
) -> None:
    from ..verify.backends import check_backend_name
    from ..verify.batch_axes import parse_batch_axes
    from ..verify.compliance import TESTS
    from ..verify.equivalence import VerifyOptions, verify_equivalence as run
    from ..verify.benchmarks import benchmark, check_compliance, check_scenario
    from ..verify.tasks import check_task_metric
    from ..verify.loadgen_settings import SCENARIOS, LoadGenConfig, QuickRun
    from ..verify.performance_runs import default_runs

    if mode not in ("both", "extensional", "intensional"):
        raise UserInputError("--mode must be extensional, intensional or both")
    if target not in ("99", "99.9"):
        raise UserInputError("--target must be 99 or 99.9")
    if scenario not in SCENARIOS:
        raise UserInputError(f"--scenario must be one of {', '.join(SCENARIOS)}")
    if model_name is not None:
        check_scenario(benchmark(model_name), scenario)
        check_compliance(benchmark(model_name), compliance)
        if submission_dir is not None:
            check_task_metric(benchmark(model_name), task)
    if samples is not None and samples < 1:
        raise UserInputError("--samples must be positive")
    if run_length not in ("quick", "official"):
        raise UserInputError("--run-length must be quick or official")
    if compliance is not None and compliance not in TESTS:
        raise UserInputError(f"--compliance must be one of {', '.join(TESTS)}")
    if (compliance or submission_dir) and mode == "intensional":
        raise UserInputError("--compliance and --submission-dir need LoadGen runs: use --mode both or extensional")
    if duration_ms is not None and duration_ms < 1:
        raise UserInputError("--duration-ms must be positive")
    _refuse_ignored_options(mode=mode, run_length=run_length, duration_ms=duration_ms, performance_runs=performance_runs,
                            labels=labels, sample_list=sample_list, forbid_overlap=forbid_overlap, calib_list=calib_list)
    duration_ms = 2000 if duration_ms is None else duration_ms
    if max_batchsize < 1:
        raise UserInputError("--max-batchsize must be positive")
    if performance_runs is not None and performance_runs < 1:
        raise UserInputError("--performance-runs must be positive")
    if not stall_timeout > 0:
        raise UserInputError("--stall-timeout must be a positive number of seconds")
    check_backend_name(backend)
    if audit_config is not None and not audit_config.is_file():
        raise UserInputError(f"--audit-config '{audit_config}': no such file")
    if reference.endswith(".onnx") and (reference_weights is not None or inputs):
        raise UserInputError(f"--{'reference-weights' if reference_weights is not None else 'input'} is for a "
                             f"framework reference; --reference '{reference}' is an ONNX file, which declares its inputs")
    from ..output_paths import check_destinations
    from ..user_code import source_file

    for flag, path in {"--reference-weights": reference_weights, "--labels": labels, "--sample-list": sample_list,
                       "--user-conf": user_conf, "--calib-list": calib_list, "--candidate": candidate}.items():
        if path is not None and not path.is_file():  # found now, not after the LoadGen runs
            raise UserInputError(f"{flag}: file '{path}' {missing(path)}")
    if not dataset.exists():
        raise UserInputError(f"--dataset '{dataset}': not found (a folder of .npy/.npz samples, or an .npz)")
    check_destinations({}, {"--reference": source_file(reference) or Path(reference),
                            "--reference-weights": reference_weights, "--candidate": candidate, "--dataset": dataset,
                            "--labels": labels, "--sample-list": sample_list, "--user-conf": user_conf,
                            "--audit-config": audit_config, "--calib-list": calib_list},
                       folders={"--out": out, "--submission-dir": submission_dir})
    loadgen = LoadGenConfig(scenario=scenario, model_name=model_name, user_conf=user_conf, audit_config=audit_config,
                            quick=QuickRun(min_duration_ms=duration_ms) if run_length == "quick" else None,
                            batch=max_batchsize, stall_timeout_s=stall_timeout,
                            performance_runs=performance_runs or default_runs(quick=run_length == "quick"))
    options = VerifyOptions(mode=mode, target=float(target), calib_list=calib_list, forbid_overlap=forbid_overlap,
                            samples=samples, sample_list=sample_list, loadgen=loadgen, task=task, outputs=outputs,
                            response_dtype=response_dtype, label_offset=label_offset, compliance=compliance,
                            submission_dir=submission_dir, backend=backend,
                            batch_axes=parse_batch_axes(batch_axes))
    reference_path = _reference(reference, reference_weights, inputs, out, options)
    result = run(reference_path, candidate, dataset, labels, out, options)
    _print(result)
    if result.verdict == "INCONCLUSIVE":
        raise typer.Exit(code=VerificationInconclusive.exit_code)  # the report's last line says why not PASSED
    if not result.passed:
        raise typer.Exit(code=VerificationFailed.exit_code)  # the report's last line already says FAILED


def _refuse_ignored_options(mode, run_length, duration_ms, performance_runs, labels, sample_list, forbid_overlap,
                            calib_list) -> None:
    """Options this run would not read: refused, rather than ignored without a word."""
    if mode == "intensional" and (duration_ms is not None or performance_runs is not None):
        raise UserInputError(f"--{'duration-ms' if duration_ms is not None else 'performance-runs'} sets the LoadGen "
                             "runs, and --mode intensional runs none: use --mode both or extensional")
    if run_length == "official" and duration_ms is not None:
        raise UserInputError("--duration-ms is for --run-length quick; an official run takes mlperf.conf's duration")
    if labels is not None and sample_list is not None:
        raise UserInputError("--sample-list orders the samples when there are no --labels; with --labels, the "
                             "labels file lists them: give one of the two")
    if forbid_overlap and calib_list is None:
        raise UserInputError("--forbid-overlap compares the accuracy set with --calib-list: give the calibration "
                             "list the candidate used")


def _figure(run) -> str:
    """A performance run's scored figure with its unit (see ``LoadGenRun.scored_figure``)."""
    return "-" if run.scored_figure is None else f"{run.scored_text} {run.scored_unit}"


def _reference(reference: str, weights: Optional[Path], inputs: list[str], out: Path, options) -> Path:
    """An ONNX reference as it is; a framework reference exported (and checked) first."""
    if reference.endswith(".onnx"):
        return Path(reference)
    from ..input_spec import parse_input_specs
    from ..verify.equivalence import export_framework_reference
    from .export_cmd import DEFAULT_OPSET

    if reference.endswith(".py"):
        raise UserInputError(f"--reference '{reference}': a torch reference is FILE.py:NAME (its nn.Module class or "
                             "factory), with --reference-weights and --input")
    specs = parse_input_specs(inputs)
    try:
        if weights is not None or ":" in reference and not Path(reference).exists():
            if weights is None:
                raise UserInputError(f"--reference '{reference}' (a torch reference) needs --reference-weights, "
                                     "its state_dict (.safetensors or .pt)")
            if not specs:
                raise UserInputError(f"--reference '{reference}' (a torch reference) needs --input NAME:SHAPE for "
                                     "each forward argument")
            from ..importers.torch_export import import_torch

            imported = import_torch(reference, weights, specs, model_kwargs=None, output_names=None,
                                    opset=DEFAULT_OPSET, dynamic_batch=True, exporter="dynamo")
        else:
            from ..importers.tf_export import import_tf

            imported = import_tf(Path(reference), specs, signature=None, output_names=None, opset=DEFAULT_OPSET,
                                 dynamic_batch=True)
    except UserInputError as problem:
        # The importers speak qx export's options; here the same things are --reference and
        # --reference-weights.
        problem.args = (_in_verify_terms(str(problem)),)
        raise
    from . import context

    result = export_framework_reference(imported, out, context.argv, DEFAULT_OPSET, True)
    Console().print(f"reference: {imported.framework} model exported to {result.output}; FP32 check "
                    + ", ".join(f"{c.name} max abs {c.max_abs_error:.2g}" for c in result.comparisons))
    options.reference_framework = imported
    return result.output


def _in_verify_terms(message: str) -> str:
    message = re.sub(r"--model\b(?!-)", "--reference", message)
    return re.sub(r"(?<![\w-])--weights\b", "--reference-weights", message)


def _print(result) -> None:
    from ..verify.report import accuracy_status

    console = Console()
    ext = result.extensional
    if ext is not None:
        console.print(f"extensional ({ext.task}): reference {ext.reference.score.line}; candidate "
                      f"{ext.candidate.score.line}; threshold {ext.threshold:.3f} ({ext.target}% of the reference) "
                      f"-> {accuracy_status(ext)}")
        for problem in ext.score_problems:
            console.print(f"{ext.task}: FAIL: {problem}")
        for problem in ext.run_problems:
            console.print(f"run not as asked: {problem}")
        if ext.compliance is not None:
            console.print(f"{ext.compliance.test}: " + "; ".join(f"{k} {v}" for k, v in ext.compliance.lines.items()))
        run = ext.candidate.performance_run
        if run is not None and run.scored_figure is not None and ext.reference.performance_run is not None:
            console.print(f"performance: {_figure(ext.reference.performance_run)} reference, "
                          f"{_figure(run)} candidate" + (f" (each model's median run of {len(ext.candidate.performance_repeats)}, "
                          "alternating)" if ext.candidate.performance_repeats else ""))
        if run is not None:
            console.print(f"performance run: VALID for submission ({ext.rules})" if not run.submission_problems
                          else f"performance run: not valid for submission ({ext.rules}): "
                          + "; ".join(run.submission_problems))
    if result.intensional is not None:
        table = Table(title="intensional checks", show_edge=False)
        for column in ("check", "measured", "result", "detail"):
            table.add_column(column, overflow="fold")
        for check in result.intensional.checks:
            table.add_row(check["name"], check["measured"], check["status"], check["detail"])
        console.print(table)
    for path in result.report_files:
        console.print(f"report: {path}")
    console.print(result.verdict)
