"""verify-equivalence: LoadGen accuracy + performance runs for reference and candidate, the
accuracy script on LoadGen's logs (extensional verdict), the structural and numerical audit
(intensional verdict), and the report."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ..calibration.model_inputs import model_inputs
from ..calibration.readers import open_all_samples, open_samples_by_id
from ..calibration.sample_ids import read_id_list
from ..errors import UserInputError
from ..onnx_io import load_model_proto
from ..progress import step
from ..quant.runtime_check import run_with_tensors
from ..layer_tolerance import MIN_LAYER_COSINE, MIN_LAYER_SQNR_DB
from .audit import audit, checks_as_dicts
from .compliance import run_compliance
from .labels import read_labelled
from .batch_axes import batch_axes_for, batch_first
from .loadgen_harness import framework_backend, onnx_backend, run_loadgen
from .loadgen_settings import LoadGenConfig, refuse_stray_audit_config
from .performance_runs import median_run, run_performance
from .report import write_report
from .runtime_agreement import runtime_agreement
from .results import ExtensionalResult, IntensionalResult, RoleResult, VerifyResult
from .submission import write_submission
from .tasks import make_task
from .validity import run_problem, submission_problems

AUDIT_SAMPLES = 32


@dataclass
class VerifyOptions:
    mode: str = "both"
    target: float = 99.0
    calib_list: Path | None = None
    forbid_overlap: bool = False
    samples: int | None = None
    sample_list: Path | None = None
    loadgen: LoadGenConfig = LoadGenConfig()
    task: str = "classification"
    outputs: list[str] = field(default_factory=list)
    response_dtype: str | None = None
    label_offset: int = 0
    compliance: str | None = None
    submission_dir: Path | None = None
    reference_framework: object | None = None  # an ImportedModel when REF is a torch/TF model
    backend: str = "onnxruntime"  # runtime of the LoadGen runs (the audit always uses onnxruntime's exact numerics)
    batch_axes: dict[str, int] = field(default_factory=dict)  # --batch-axis OUTPUT=AXIS


def verify_equivalence(reference: Path, candidate: Path, dataset: Path, labels: Path | None, out: Path,
                       options: VerifyOptions) -> VerifyResult:
    """``reference`` is an ONNX file; with ``options.reference_framework`` it is the path the
    framework reference was exported to (and checked against) by ``export_framework_reference``."""
    if options.mode != "intensional":
        refuse_stray_audit_config(options.loadgen)
    ref_proto, cand_proto = load_model_proto(reference), load_model_proto(candidate)
    inputs = _matching_inputs(reference, ref_proto, candidate, cand_proto)
    task = make_task(options.task, [o.name for o in ref_proto.graph.output], options.outputs,
                     options.response_dtype, options.label_offset)
    _check_candidate_outputs(candidate, cand_proto, task.response.outputs)
    samples = _samples(task, dataset, inputs, labels, options)
    result = VerifyResult(str(reference), str(candidate), str(dataset), str(labels) if labels else None,
                          len(samples), options.mode,
                          {"min_layer_sqnr_db": MIN_LAYER_SQNR_DB, "min_layer_cosine": MIN_LAYER_COSINE})
    if options.mode in ("both", "extensional"):
        result.extensional = _extensional(task, reference, candidate, samples, labels, out, options)
        if options.submission_dir is not None:
            with step(f"writing the submission layout to {options.submission_dir}"):
                write_submission(options.submission_dir, result.extensional, options.loadgen, cand_proto,
                                 reference.name)
    output_errors = None
    if options.mode in ("both", "intensional"):
        feeds = [samples.sample(i) for i in samples.ids[:AUDIT_SAMPLES]]
        with step(f"intensional audit (graph, weights, per-layer numerics on {len(feeds)} samples)"):
            checks, result.layers = audit(ref_proto, cand_proto, candidate, samples.ids, options.calib_list, feeds,
                                          options.forbid_overlap)
        result.intensional = IntensionalResult(all(c.passed for c in checks), checks_as_dicts(checks))
        output_errors = _output_errors(ref_proto, cand_proto, feeds, task.response.outputs[0])
    with step(f"writing the report to {out}"):
        result.report_files = write_report(out, result, output_errors)
    return result


def _samples(task, dataset: Path, inputs, labels: Path | None, options: VerifyOptions):
    """The QSL's samples in order: the ids of --labels, else of --sample-list, else the whole dataset."""
    if labels is not None and task.labels_form is None:
        raise UserInputError(f"--task {task.name} scores agreement with the reference and reads no --labels; "
                             "give the samples' order with --sample-list")
    if labels is None and task.needs_labels:
        raise UserInputError(f"--task {task.name} needs --labels ({task.labels_form} per line)")
    if labels is None and options.sample_list is None:
        everything = open_all_samples(dataset, inputs, "--dataset")
        return replace(everything, ids=everything.ids[: options.samples])
    if labels is not None:
        ids, _ = read_labelled(labels, task.labels_form)
        origin = labels
    else:
        ids, origin = read_id_list(options.sample_list, "--sample-list"), options.sample_list
    return open_samples_by_id(dataset, inputs, ids[: options.samples], origin)


def _check_candidate_outputs(candidate: Path, proto: onnx.ModelProto, names: tuple[str, ...]) -> None:
    available = [o.name for o in proto.graph.output]
    missing = [n for n in names if n not in available]
    if missing:
        raise UserInputError(f"{candidate.name} has no output '{missing[0]}' (its outputs: {', '.join(available)}); "
                             "reference and candidate must answer from the same outputs")


def _matching_inputs(reference: Path, ref_proto: onnx.ModelProto, candidate: Path, cand_proto: onnx.ModelProto):
    import onnx_ir as ir

    ref_inputs = model_inputs(ir.serde.deserialize_model(ref_proto))
    cand_inputs = model_inputs(ir.serde.deserialize_model(cand_proto))
    describe = lambda items: ", ".join(i.describe() for i in items)  # noqa: E731
    same = len(ref_inputs) == len(cand_inputs) and all(
        a.name == b.name and a.dtype == b.dtype and a.sample_shape == b.sample_shape for a, b in zip(ref_inputs, cand_inputs))
    if not same:
        raise UserInputError(f"{candidate.name} takes {describe(cand_inputs)} but {reference.name} takes "
                             f"{describe(ref_inputs)}; they are not the same model's interface")
    return ref_inputs


def _extensional(task, reference: Path, candidate: Path, samples, labels: Path | None, out: Path,
                 options: VerifyOptions) -> ExtensionalResult:
    config = options.loadgen
    reference_backend = (framework_backend(options.reference_framework, config.batch)
                         if options.reference_framework is not None
                         else onnx_backend(reference, config.batch, options.backend, config.scenario))
    backends = {"reference": reference_backend,
                "candidate": onnx_backend(candidate, config.batch, options.backend, config.scenario)}
    agreement = _runtime_agreement(backends, {"reference": reference, "candidate": candidate}, samples, task, options)
    axes = batch_axes_for(onnx.load(str(reference), load_external_data=False), options.batch_axes)  # not batch-first
    backends = {role: batch_first(backend, axes) for role, backend in backends.items()}
    accuracy_runs, problems = {}, []
    for role, backend in backends.items():
        with step(f"LoadGen accuracy run of the {role} ({len(samples)} samples, {backend.name})"):
            accuracy_runs[role] = run_loadgen(backend, samples, task.encode, "accuracy", out / role / "accuracy", config)
        problems += [p for p in [run_problem(accuracy_runs[role], role)] if p]
    performance_runs = run_performance(backends, samples, task.encode, out, config)
    for role, repeats in performance_runs.items():
        for performance in repeats:
            performance.submission_problems = submission_problems(performance, config)
            problems += [p for p in [run_problem(performance, role)] if p]
    reference_log = accuracy_runs["reference"].folder / "mlperf_log_accuracy.json"
    roles = {}
    for role, accuracy in accuracy_runs.items():
        log = accuracy.folder / "mlperf_log_accuracy.json"
        try:
            score = task.score(log, reference_log, labels)
        except (OSError, ValueError, KeyError) as exc:
            raise UserInputError(f"{log}: the {task.name} accuracy script cannot score it ({exc})") from None
        (out / role / "accuracy.txt").write_text(score.line + "\n", encoding="utf-8")
        repeats = performance_runs[role]
        roles[role] = RoleResult(backends[role].name, score, accuracy, median_run(repeats),
                                 repeats if len(repeats) > 1 else [])
    compliance = None
    if options.compliance is not None:
        backend, accuracy, performance = (backends["candidate"], roles["candidate"].accuracy_run,
                                          roles["candidate"].performance_run)
        with step(f"LoadGen {options.compliance} compliance run of the candidate"):
            compliance = run_compliance(options.compliance, backend, samples, task, labels,
                                        out / "candidate" / options.compliance, config, (accuracy, performance),
                                        reference_log)
        problem = run_problem(compliance.run, "candidate")
        problems += [problem] if problem else []
    return ExtensionalResult(task.name, task.metric, task.response, options.target,
                             task.threshold(options.target, roles["reference"].score), roles["reference"],
                             roles["candidate"], problems, compliance,
                             task.problems(roles["candidate"].score, options.target), runtime_agreement=agreement)


def _runtime_agreement(backends, files: dict[str, Path], samples, task, options: VerifyOptions) -> dict:
    """Under another runtime than onnxruntime: each ONNX role's answers there against onnxruntime's
    on the same file, on the first AUDIT_SAMPLES samples (a framework reference is left out)."""
    if options.backend == "onnxruntime":
        return {}
    feeds = [samples.sample(i) for i in samples.ids[:AUDIT_SAMPLES]]
    roles = [r for r in backends if not (r == "reference" and options.reference_framework is not None)]
    with step(f"{options.backend}'s answers against onnxruntime's on the same files ({len(feeds)} samples)"):
        return {role: runtime_agreement(backends[role], files[role], feeds, task.response.outputs) for role in roles}


def _output_errors(ref_proto, cand_proto, feeds, name: str) -> np.ndarray | None:
    if not feeds:
        return None
    a = run_with_tensors(ref_proto, feeds, [name])[name]
    b = run_with_tensors(cand_proto, feeds, [name])[name]
    return (b.astype(np.float64) - a) if a.shape == b.shape else None


def export_framework_reference(imported, out: Path, argv: list[str], opset: int, dynamic_batch: bool):
    """Export a torch/TF reference with qx export's pipeline (FP32 check against the framework
    included: beyond tolerance it raises VerificationFailed) into ``out/reference_export.onnx``."""
    from ..export import export_model
    from ..numeric_check import Tolerance

    return export_model(imported, out / "reference_export.onnx", argv=argv, opset=opset, dynamic_batch=dynamic_batch,
                        tolerance=Tolerance())
