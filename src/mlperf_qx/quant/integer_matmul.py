"""An exact int8 MatMul for smoothquant's scorer: onnxruntime's MatMulInteger on unsigned codes.

x_q @ W_q of two int8 grids is s_x * s_w * (X @ W) with integer X and W; summed in int32 the
product is exact, where a float32 GEMM of the fake-quantized values rounds (and runs slower:
onnxruntime's U8U8 kernel measured 1.3-1.5x numpy's float32 GEMM on one thread, mpnet's shapes).
U8U8 because its AVX2 kernel widens to 16 bits and sums pairs in 32 (vpmaddwd): exact over the
whole range, while the U8S8 one saturates 16-bit pair sums (vpmaddubsw) and is not, even with
``session.x64quantprecision`` (and measured no faster here); S8S8 is exact but 4x slower. int32
cannot overflow: |X @ W| <= K * 128 * 128 < 2**31 for every K below 131072 (deeper products are
summed over slices in int64). One session with symbolic dims serves every shape; onnxruntime's
``run`` is thread-safe, and with one intra-op thread it runs on the caller's (the groups' pool).
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..kernels.quantize import OFFSET
from ..runtime import open_session

MAX_DEPTH = 131071  # K beyond it could overflow int32 (K * 128 * 128 >= 2**31)

_lock = threading.Lock()
_session = None


def _model() -> onnx.ModelProto:
    codes = TensorProto.UINT8
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "zero", "zero"], ["y"])], "qx_integer_matmul",
        [helper.make_tensor_value_info("a", codes, ["M", "K"]), helper.make_tensor_value_info("b", codes, ["K", "N"])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["M", "N"])],
        initializer=[helper.make_tensor("zero", codes, [], [OFFSET])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _matmul_session():
    global _session
    with _lock:
        if _session is None:
            _session = open_session(_model(), threads=1, spin_between_runs=False)
        return _session


def integer_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - 128) @ (b - 128) exactly: ``a`` uint8 (M x K), ``b`` uint8 (K x N) offset codes; int32
    (int64 summed over slices of MAX_DEPTH channels past it)."""
    session = _matmul_session()
    if a.shape[1] <= MAX_DEPTH:
        return session.run(None, {"a": np.ascontiguousarray(a), "b": np.ascontiguousarray(b)})[0]
    total = np.zeros((a.shape[0], b.shape[1]), np.int64)
    for start in range(0, a.shape[1], MAX_DEPTH):
        part = slice(start, start + MAX_DEPTH)
        total += session.run(None, {"a": np.ascontiguousarray(a[:, part]), "b": np.ascontiguousarray(b[part])})[0]
    return total


def integer_matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.int64) - OFFSET) @ (b.astype(np.int64) - OFFSET)).astype(np.int32)
