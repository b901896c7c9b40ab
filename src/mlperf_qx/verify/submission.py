"""The candidate's results in MLPerf's submission layout (tools/submission/submission_structure.md),
under ``DIR/<benchmark>/<scenario>/`` where DIR is a submission's ``results/<system_desc_id>``:

    accuracy/      mlperf_log_{accuracy.json,detail.txt,summary.txt}, accuracy.txt (+ hash= line)
    performance/run_1/  mlperf_log_{detail,summary}.txt (and its accuracy log)
    TEST01|TEST04/ the compliance run and its verify_*.txt, when --compliance ran
    measurements.json, user.conf, README.md (a template, see templates.py)

The accuracy log is truncated for packaging as MLPerf's truncate_accuracy_log.py does (first and
last 4 KiB when over 10 KiB), after its sha256 is written to accuracy.txt; the full log stays in
--out. Runs add to the tree: the parts a run wrote (accuracy/, performance/, TEST0X/,
measurements.json, user.conf) are built beside the scenario folder and each renamed into place,
replacing only the same part of an earlier run, so TEST01 and TEST04 run one after the other both
stay.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import onnx

from ..provenance import sha256_file
from .loadgen_settings import LoadGenConfig, user_conf_text
from .results import ExtensionalResult, LoadGenRun
from .templates import package_version, write_templates

MAX_ACCURACY_LOG_SIZE = 10 * 1024
VIEWABLE_SIZE = 4096
LOGS = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
_ONNX_TYPES = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.INT64: "int64",
               onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}


def write_submission(root: Path, result: ExtensionalResult, config: LoadGenConfig, candidate: onnx.ModelProto,
                     starting_weights: str) -> Path:
    final = root / config.folder_name / config.scenario
    staging = final.with_name(f".{final.name}.qx-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    accuracy_run, performance_run = result.candidate.accuracy_run, result.candidate.performance_run
    _copy_logs(accuracy_run, staging / "accuracy", truncate=True)
    full_log = accuracy_run.folder / "mlperf_log_accuracy.json"
    (staging / "accuracy" / "accuracy.txt").write_text(
        f"{result.candidate.score.line}\nhash={sha256_file(full_log)}\n", encoding="utf-8")
    if performance_run is not None:
        _copy_logs(performance_run, staging / "performance" / "run_1", truncate=False)
        if config.user_conf is not None:
            shutil.copyfile(config.user_conf, staging / "user.conf")
        elif performance_run.settings is not None:
            (staging / "user.conf").write_text(user_conf_text(config.conf_model, config.scenario,
                                                              performance_run.settings), encoding="utf-8")
    if result.compliance is not None:
        test = staging / result.compliance.test
        _copy_logs(result.compliance.run, test / "performance" / "run_1", truncate=False, names=LOGS[:2])
        _copy_logs(result.compliance.run, test / "accuracy", truncate=True, names=LOGS[2:])
        for name in result.compliance.lines:
            shutil.copyfile(result.compliance.run.folder.parent / name, test / name)
        if result.compliance.part_three:
            # TEST01 Part III: the checker wants exactly these four files in TEST01/accuracy
            # (constants.py REQUIRED_TEST01_ACC_FILES) when verify_accuracy.txt says no TEST PASS.
            for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):
                shutil.copyfile(result.compliance.run.folder.parent / "accuracy" / name, test / "accuracy" / name)
            (test / "accuracy" / "accuracy.txt").write_text(
                result.compliance.part_three["compliance_accuracy.txt"] + "\n", encoding="utf-8")
    (staging / "measurements.json").write_text(json.dumps(_measurements(candidate, starting_weights), indent=4) + "\n", encoding="utf-8")
    merge_parts(staging, final)
    write_templates(root, config.folder_name, config.scenario, f"onnxruntime {package_version('onnxruntime')}",
                    _command_line())
    return final


def _command_line() -> str:
    from ..cli import context  # the command line as typed (sys.argv is not qx's in tests)

    return shlex.join(["qx", *context.argv[1:]])


def merge_parts(staging: Path, final: Path) -> None:
    """Each part of ``staging`` replaces the same part of ``final``; other parts stay."""
    final.mkdir(parents=True, exist_ok=True)
    for part in sorted(staging.iterdir()):
        target = final / part.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        part.rename(target)
    staging.rmdir()


def _copy_logs(run: LoadGenRun, folder: Path, truncate: bool, names: tuple[str, ...] = LOGS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = run.folder / name
        if not source.exists():
            continue
        if truncate and name.endswith(".json") and source.stat().st_size > MAX_ACCURACY_LOG_SIZE:
            data = source.read_bytes()
            (folder / name).write_bytes(data[:VIEWABLE_SIZE] + b"\n\n...\n\n" + data[-VIEWABLE_SIZE:])
        else:
            shutil.copyfile(source, folder / name)


def _weight_types(candidate: onnx.ModelProto) -> list[str]:
    """Data types of the weights compute ops read: int8 behind a DequantizeLinear or inside a
    QOperator op, else the initializer's own type (an op kept in FP32 shows as fp32)."""
    initializers = {i.name: i for i in candidate.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in candidate.graph.node if n.op_type == "DequantizeLinear"}
    weight_positions = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (0, 1), "QLinearConv": (3,),
                        "QLinearMatMul": (0, 3), "MatMulInteger": (0, 1), "QGemm": (3,)}
    types = set()
    for node in candidate.graph.node:
        for position in weight_positions.get(node.op_type, ()):
            if position >= len(node.input):
                continue
            name = dequantized.get(node.input[position], node.input[position])
            if name in initializers:
                types.add(_ONNX_TYPES.get(initializers[name].data_type, "other"))
    return sorted(types)


def _measurements(candidate: onnx.ModelProto, starting_weights: str) -> dict[str, str]:
    """The fields the submission checker reads from measurements.json, from the candidate itself."""
    initializers = {i.name for i in candidate.graph.initializer}
    inputs = [i for i in candidate.graph.input if i.name not in initializers]
    input_types = sorted({_ONNX_TYPES.get(i.type.tensor_type.elem_type, "other") for i in inputs})
    props = {p.key: p.value for p in candidate.metadata_props}
    quantization = json.loads(props["qx.quantization"]) if "qx.quantization" in props else None
    transformations = ["quantization"] if quantization else []
    transformations += [p for p in (quantization or {}).get("transformations", [])]
    weights = ",".join(_weight_types(candidate)) or "none"
    return {"input_data_types": ",".join(input_types), "retraining": "No",
            "starting_weights_filename": starting_weights, "weight_data_types": weights,
            "weight_transformations": ", ".join(transformations) or "none"}
