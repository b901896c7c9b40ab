"""onnxruntime sessions as qx opens them.

``session.x64quantprecision=1``: on x86-64 without VNNI (AVX2, AVX-512 without VNNI) onnxruntime's
fast U8S8 int8 GEMM sums pairs of products in saturating 16-bit registers (vpmaddubsw), which
silently corrupts int8 models whose activations use the full int8 range, as symmetric int8 does
(measured here: the digits classifier's output SQNR fell to 4 dB). The option selects the exact
U8U8 path; onnxruntime ignores it on CPUs that have VNNI.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort

PROVIDERS = ["CPUExecutionProvider"]


def session_options(optimization: ort.GraphOptimizationLevel | None = None, threads: int = 0) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # qx reports failures itself, in one line
    options.add_session_config_entry("session.x64quantprecision", "1")
    if optimization is not None:
        options.graph_optimization_level = optimization
    if threads:
        options.intra_op_num_threads = threads
    return options


def open_session(model: Path | bytes | onnx.ModelProto, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options or session_options(), providers=PROVIDERS)
