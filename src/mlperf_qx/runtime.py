"""onnxruntime sessions as qx opens them.

``session.x64quantprecision=1``: on x86-64 without VNNI (AVX2, AVX-512 without VNNI) onnxruntime's
fast U8S8 int8 GEMM sums pairs of products in saturating 16-bit registers (vpmaddubsw), which
silently corrupts int8 models whose activations use the full int8 range, as symmetric int8 does
(measured here: the digits classifier's output SQNR fell to 4 dB). The option selects the exact
U8U8 path; onnxruntime ignores it on CPUs that have VNNI. It is not set for QOperator models
(QLinearConv/QLinearMatMul on int8 activations): those run onnxruntime's S8S8 kernels, which do
not saturate, and the option's weight conversion to U8 leaves them without a kernel.

So the option depends on the model, and only on the model: ``open_session`` reads the model's
format and builds the options itself; no caller can pair a QOperator model with it. A model is
QOperator when it holds an op of onnxruntime's QLinear family (QLinearConv, QLinearMatMul,
QLinearAdd...): the rule is onnxruntime's naming, so this module, below the quantizer, needs none of
the quantizer's tables (a test checks every QOperator form qx writes is named so).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

PROVIDERS = ["CPUExecutionProvider"]
QOPERATOR_PREFIX = "QLinear"
PROTOBUF_SAFE_BYTES = 1_800_000_000


def _session_options(precise_u8s8: bool, optimization: ort.GraphOptimizationLevel | None, threads: int,
                     spin_between_runs: bool, optimized_model_path: Path | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if not spin_between_runs:
        # onnxruntime's worker threads spin after each run, waiting for the next; when qx's own
        # kernels run between calls (calibration) they would steal its cores. Spinning inside a
        # run stays on: without it every operator waits for its threads to wake up.
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 4  # qx reports failures itself, in one line
    if precise_u8s8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    if optimization is not None:
        options.graph_optimization_level = optimization
    if threads:
        options.intra_op_num_threads = threads
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return options


def is_qoperator(model: Path | bytes | onnx.ModelProto) -> bool:
    if isinstance(model, Path):
        model = onnx.load(str(model), load_external_data=False)
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    return any(node.op_type.startswith(QOPERATOR_PREFIX) for node in model.graph.node)


def _weight_bytes(model: onnx.ModelProto) -> int:
    # ByteSize() itself fails past 2 GB, so count the initializer payloads instead.
    return sum(len(t.raw_data) or 4 * len(t.float_data) for t in model.graph.initializer)


def open_session(model: Path | bytes | onnx.ModelProto, optimization: ort.GraphOptimizationLevel | None = None, *,
                 threads: int = 0, spin_between_runs: bool = True, optimized_model_path: Path | None = None,
                 saturating_u8s8: bool = False) -> ort.InferenceSession:
    """A CPU session with the options the model's format needs (see the module docstring).
    ``saturating_u8s8`` opts out of the exact path, for benchmarks of onnxruntime's default."""
    precise = not saturating_u8s8 and not is_qoperator(model)
    options = _session_options(precise, optimization, threads, spin_between_runs, optimized_model_path)
    staged = None
    if isinstance(model, onnx.ModelProto):
        if _weight_bytes(model) > PROTOBUF_SAFE_BYTES:
            # Past protobuf's 2 GB limit the model cannot be handed over as bytes: stage it with its
            # weights as external data and open it from there.
            staged = tempfile.TemporaryDirectory(prefix="qx-session-")
            path = Path(staged.name) / "model.onnx"
            onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx.data")
            model = path
        else:
            model = model.SerializeToString()
    source = str(model) if isinstance(model, Path) else model
    session = ort.InferenceSession(source, options, providers=PROVIDERS)
    session.qx_staged_folder = staged  # kept alive as long as the session
    return session
