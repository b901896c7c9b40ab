"""onnxruntime sessions as qx opens them.

``session.x64quantprecision=1``: on x86-64 without VNNI (AVX2, AVX-512 without VNNI) onnxruntime's
fast U8S8 int8 GEMM sums pairs of products in saturating 16-bit registers (vpmaddubsw), which
silently corrupts int8 models whose activations use the full int8 range, as symmetric int8 does
(measured here: the digits classifier's output SQNR fell to 4 dB; ResNet-50's uint8-encoded
QOperator model to 13.7 dB instead of 38.2). The option selects the exact path, at a cost. CPUs
with VNNI (avx512_vnni, avx_vnni; every AMX CPU has it) accumulate in 32 bits (vpdpbusd) and are
exact without it, so there it is not set. It is never set for QOperator models with int8
activations (files written before qx stored them as uint8): those run onnxruntime's S8S8 kernels,
which do not saturate, and the option's weight conversion to U8 leaves them without a kernel.

So the option depends on the model and the CPU only: ``open_session`` decides it itself (no
caller can pair a model with the wrong setting) and leaves the decision and its reason on the
session as ``qx_int8_precision`` for the reports. A model is QOperator when it holds an op of
onnxruntime's QLinear family (QLinearConv, QLinearMatMul, QLinearAdd...): the rule is onnxruntime's
naming, so this module, below the quantizer, needs none of the quantizer's tables (a test checks
every QOperator form qx writes is named so).
"""

from __future__ import annotations

import functools
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

from .session_weights import payload_bytes, without_weights

PROVIDERS = ["CPUExecutionProvider"]
QOPERATOR_PREFIX = "QLinear"
# int8 ops outside the QLinear family (onnxruntime's names): QDQ models and integer GEMMs.
OTHER_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "QGemm",
                            "DynamicQuantizeLinear", "MatMulIntegerToFloat"})
# The int8 GEMM kernels whose activation zero point (input 2: x, x_scale, x_zero_point) picks
# onnxruntime's S8S8 or U8S8 path.
GEMM_QOPERATORS = ("QLinearConv", "QLinearMatMul")
PROTOBUF_SAFE_BYTES = 1_800_000_000
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # 32-bit int8 accumulation (vpdpbusd, AMX)
PRECISION_OPTION = "session.x64quantprecision"
OPTIMIZED_WEIGHTS_OPTION = "session.optimized_model_external_initializers_file_name"


@dataclass(frozen=True)
class Int8Precision:
    """Whether a session runs with ``session.x64quantprecision=1``, and why."""

    exact_option: bool
    reason: str

    def describe(self) -> str:
        return f"{PRECISION_OPTION}={'1' if self.exact_option else '0 (unset)'}: {self.reason}"


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells it), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is unreadable)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return frozenset()
    return frozenset(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))


def int8_dot_product(flags: frozenset[str] | None = None) -> str | None:
    """The CPU flag that gives onnxruntime exact, fast U8S8 int8 GEMM, or None."""
    flags = cpu_flags() if flags is None else flags
    return next((f for f in INT8_DOT_PRODUCT_FLAGS if f in flags), None)


def int8_precision(model: Path | bytes | onnx.ModelProto, flags: frozenset[str] | None = None,
                   machine: str | None = None) -> Int8Precision:
    """The ``session.x64quantprecision`` decision for ``model`` on this CPU (or on ``flags``/``machine``)."""
    proto = _proto(model)
    if not any(_is_int8_op(node.op_type) for node in proto.graph.node):
        return Int8Precision(False, "no int8 operators in the model")
    if has_int8_activation_kernels(proto):
        return Int8Precision(False, "QOperator model with int8 activations: onnxruntime's S8S8 kernels are exact "
                                    "(the option would leave them without a kernel)")
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return Int8Precision(False, f"{machine} CPU: onnxruntime's int8 kernels do not saturate there")
    vnni = int8_dot_product(flags)
    if vnni is not None:
        return Int8Precision(False, f"the CPU has {vnni}: onnxruntime's U8S8 kernels accumulate in 32 bits, exact "
                                    "and fastest without the option")
    return Int8Precision(True, "x86 CPU without VNNI: onnxruntime's fast U8S8 kernels saturate 16-bit pair sums "
                               "(vpmaddubsw) on symmetric int8; the option selects the exact path")


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
        options.add_session_config_entry(PRECISION_OPTION, "1")
    if optimization is not None:
        options.graph_optimization_level = optimization
    if threads:
        options.intra_op_num_threads = threads
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
        # Its weights in a file beside it (onnx.load finds them there): a caller that reads only
        # the optimized graph (quantize's fusion report) then parses kilobytes, not the model.
        options.add_session_config_entry(OPTIMIZED_WEIGHTS_OPTION, optimized_model_path.name + ".data")
    return options


def _proto(model: Path | bytes | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, Path):
        return onnx.load(str(model), load_external_data=False)
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return model


def _is_int8_op(op_type: str) -> bool:
    return op_type.startswith(QOPERATOR_PREFIX) or op_type in OTHER_INT8_OPS


def is_qoperator(model: Path | bytes | onnx.ModelProto) -> bool:
    return any(node.op_type.startswith(QOPERATOR_PREFIX) for node in _proto(model).graph.node)


def has_int8_activation_kernels(model: Path | bytes | onnx.ModelProto) -> bool:
    """A QLinearConv/QLinearMatMul whose activation zero point is int8 (qx writes uint8, zero point 128)."""
    proto = _proto(model)
    zero_points = {t.name: t.data_type for t in proto.graph.initializer}
    return any(node.op_type in GEMM_QOPERATORS and len(node.input) > 2
               and zero_points.get(node.input[2]) == onnx.TensorProto.INT8 for node in proto.graph.node)


def open_session(model: Path | bytes | onnx.ModelProto, optimization: ort.GraphOptimizationLevel | None = None, *,
                 threads: int = 0, spin_between_runs: bool = True, optimized_model_path: Path | None = None,
                 x64quantprecision: bool | None = None, external_weights: dict | None = None) -> ort.InferenceSession:
    """A CPU session with the options the model's format needs (see the module docstring).
    ``x64quantprecision`` overrides qx's decision (True: set the option, False: leave it unset),
    for benchmarks that measure what the decision gains or costs; None (everyone else) decides.
    ``external_weights``: name -> array for the model's initializers stored as external-data
    references (``quant.weights_by_reference``), handed over without a copy through protobuf.
    A proto's own large weights go over the same way (``session_weights``)."""
    precision = int8_precision(model)
    if x64quantprecision is not None and x64quantprecision != precision.exact_option:
        precision = Int8Precision(x64quantprecision, f"asked for; qx's own decision is the opposite ({precision.reason})")
    # A factory: the fallback in _session_by_reference needs fresh options.
    options = functools.partial(_session_options, precision.exact_option, optimization, threads, spin_between_runs,
                                optimized_model_path)
    weights = dict(external_weights or {})
    staged = None
    if isinstance(model, onnx.ModelProto) and payload_bytes(model) > PROTOBUF_SAFE_BYTES:
        staged, model = _staged(model)
    if isinstance(model, onnx.ModelProto):
        session = _session_by_reference(model, options, weights)
    else:
        session = _inference_session(str(model) if isinstance(model, Path) else model, options(), weights)
    session.qx_staged_folder = staged  # kept alive as long as the session
    session.qx_int8_precision = precision
    return session


def _staged(model: onnx.ModelProto) -> tuple[tempfile.TemporaryDirectory, Path]:
    """Past protobuf's 2 GB limit the model cannot be handed over as bytes: stage it with its
    weights as external data, to open it from there. onnx moves the weights out of the proto it
    saves, so it saves a copy: the caller's model keeps them."""
    staged = tempfile.TemporaryDirectory(prefix="qx-session-")
    path = Path(staged.name) / "model.onnx"
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, str(path), save_as_external_data=True, location="model.onnx.data")
    return staged, path


def _session_by_reference(model: onnx.ModelProto, options: Callable[[], ort.SessionOptions],
                          weights: dict) -> ort.InferenceSession:
    light, lifted = without_weights(model)
    try:
        return _inference_session(light.SerializeToString(), options(), {**weights, **lifted})
    except Exception:
        if light is model:
            raise
    # onnxruntime refused what session_weights did not foresee (as it refuses a reference to an
    # unread weight): the whole proto then, as before, which gives the same session, or for a
    # model onnxruntime cannot load at all its own error.
    return _inference_session(model.SerializeToString(), options(), weights)


def _inference_session(source: str | bytes, options: ort.SessionOptions, weights: dict) -> ort.InferenceSession:
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
    if weights:
        options.add_external_initializers(list(weights), values)
    session = ort.InferenceSession(source, options, providers=PROVIDERS)
    # onnxruntime copies the values into the session as it is created (a test holds it to that),
    # so they are not kept: holding them would add the model's size to every session's memory.
    session.qx_by_reference = tuple(weights)
    return session
