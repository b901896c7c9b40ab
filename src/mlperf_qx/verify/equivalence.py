"""verify-equivalence: LoadGen accuracy + performance runs for reference and candidate, the
accuracy script on LoadGen's logs (extensional verdict), the structural and numerical audit
(intensional verdict), and the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..calibration.model_inputs import model_inputs
from ..calibration.readers import open_samples_by_id
from ..errors import UserInputError
from ..onnx_io import load_model_proto
from ..progress import step
from ..quant.runtime_check import run_with_tensors
from .accuracy import classification
from .audit import MIN_LAYER_COSINE, MIN_LAYER_SQNR_DB, audit, checks_as_dicts
from .labels import read_val_map
from .loadgen_harness import LoadGenConfig, framework_backend, onnx_backend, parse_summary, run_loadgen
from .report import write_report

AUDIT_SAMPLES = 32


@dataclass
class VerifyOptions:
    mode: str = "both"
    target: float = 99.0
    calib_list: Path | None = None
    forbid_overlap: bool = False
    samples: int | None = None
    loadgen: LoadGenConfig = LoadGenConfig()
    reference_framework: object | None = None  # an ImportedModel when REF is a torch/TF model


def verify_equivalence(reference: Path, candidate: Path, dataset: Path, labels: Path, out: Path,
                       options: VerifyOptions) -> dict:
    """``reference`` is an ONNX file; with ``options.reference_framework`` it is the path the
    framework reference was exported to (and checked against) by ``export_framework_reference``."""
    ref_proto, cand_proto = load_model_proto(reference), load_model_proto(candidate)
    inputs = _matching_inputs(reference, ref_proto, candidate, cand_proto)
    ids, truth = read_val_map(labels)
    if options.samples is not None:
        ids, truth = ids[: options.samples], truth[: options.samples]
    samples = open_samples_by_id(dataset, inputs, ids, labels)
    verdict: dict = {"reference": str(reference), "candidate": str(candidate), "dataset": str(dataset),
                     "labels": str(labels), "samples": len(ids), "mode": options.mode,
                     "tolerances": {"min_layer_sqnr_db": MIN_LAYER_SQNR_DB, "min_layer_cosine": MIN_LAYER_COSINE}}
    passed = True
    if options.mode in ("both", "extensional"):
        verdict["extensional"] = _extensional(reference, candidate, samples, labels, out, options)
        passed &= verdict["extensional"]["passed"]
    layers, output_errors = [], None
    if options.mode in ("both", "intensional"):
        feeds = [samples.sample(i) for i in samples.ids[:AUDIT_SAMPLES]]
        with step(f"intensional audit (graph, weights, per-layer numerics on {len(feeds)} samples)"):
            checks, layers = audit(ref_proto, cand_proto, candidate, ids, options.calib_list, feeds,
                                   options.forbid_overlap)
        verdict["intensional"] = {"passed": all(c.passed for c in checks), "checks": checks_as_dicts(checks)}
        passed &= verdict["intensional"]["passed"]
        output_errors = _output_errors(ref_proto, cand_proto, feeds)
    verdict["passed"] = bool(passed)
    with step(f"writing the report to {out}"):
        verdict["report_files"] = [str(p) for p in write_report(out, verdict, layers, output_errors)]
    return verdict


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


def _extensional(reference: Path, candidate: Path, samples, labels: Path, out: Path, options: VerifyOptions) -> dict:
    result: dict = {"target": options.target}
    reference_backend = (framework_backend(options.reference_framework, options.loadgen.batch)
                         if options.reference_framework is not None else onnx_backend(reference, options.loadgen.batch))
    for role, backend in (("reference", reference_backend), ("candidate", onnx_backend(candidate, options.loadgen.batch))):
        folder = out / role
        with step(f"LoadGen accuracy run of the {role} ({len(samples)} samples, {backend.name})"):
            accuracy_dir = run_loadgen(backend, samples, "accuracy", folder / "accuracy", options.loadgen)
        log = accuracy_dir / "mlperf_log_accuracy.json"
        try:
            predictions = classification.read_predictions(str(log), np.dtype("int32"))
        except (OSError, ValueError, KeyError) as exc:
            raise UserInputError(f"{log}: unreadable LoadGen accuracy log ({exc})") from None
        good, total = classification.score(predictions, classification.read_labels(str(labels)))
        accuracy = 100.0 * good / total if total else 0.0
        line = f"accuracy={accuracy:.3f}%, good={good}, total={total}"
        (folder / "accuracy.txt").write_text(line + "\n")
        with step(f"LoadGen performance run of the {role} ({options.loadgen.scenario})"):
            performance_dir = run_loadgen(backend, samples, "performance", folder / "performance", options.loadgen)
        summary = parse_summary(performance_dir / "mlperf_log_summary.txt")
        result[role] = {"backend": backend.name, "accuracy": accuracy, "good": good, "total": total, "accuracy_line": line,
                        "samples_per_second": summary.get("Samples per second"),
                        "loadgen_result": summary.get("Result is"),
                        "latency_ms": _latencies(summary)}
    result["threshold"] = options.target / 100.0 * result["reference"]["accuracy"]
    result["passed"] = result["candidate"]["accuracy"] >= result["threshold"]
    return result


def _latencies(summary: dict[str, str]) -> dict[str, float]:
    latencies = {}
    for key, value in summary.items():
        if key.endswith("percentile latency (ns)"):
            latencies[key.split()[0]] = float(value) / 1e6
    return latencies


def _output_errors(ref_proto, cand_proto, feeds) -> np.ndarray | None:
    if not feeds:
        return None
    name = ref_proto.graph.output[0].name
    if name not in {o.name for o in cand_proto.graph.output}:
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
