"""max |x| computed by onnxruntime itself, inside the calibration graph (minmax calibration).

For minmax only four scalars per observed tensor are needed. Reducing inside the graph reads each
activation right after the operator that wrote it, while it is still in cache, on onnxruntime's
own threads; nothing is copied out (the bound-arena path writes every activation to memory and
reads it back). Per tensor:

- ReduceMax and ReduceMin over all axes: max |x| = max(max, -min). Both skip NaN in onnxruntime,
  so
- ReduceSum(x - x) flags non-finite data: x - x is 0 for every finite x and NaN for NaN and
  inf, so the sum is NaN exactly when the tensor holds a non-finite value. (A plain ReduceSum(x)
  overflows on finite data: Hugging Face's attention masks hold -3.4e38.) And
- Size counts the elements.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

_STATS = ("max", "min", "finite", "size")


def stat_names(tensors: list[str]) -> list[str]:
    """The fetched names, four per tensor in ``_STATS`` order."""
    return [f"qx_calib::{index}::{stat}" for index in range(len(tensors)) for stat in _STATS]


def add_reductions(graph: onnx.GraphProto, tensors: list[str]) -> None:
    """Four scalar statistics per float32 tensor as new graph outputs (names: ``stat_names``)."""
    names = stat_names(tensors)
    for index, tensor in enumerate(tensors):
        high, low, finite, size = names[4 * index: 4 * index + 4]
        graph.node.extend([
            helper.make_node("ReduceMax", [tensor], [high], keepdims=0, name=f"{high}_node"),
            helper.make_node("ReduceMin", [tensor], [low], keepdims=0, name=f"{low}_node"),
            helper.make_node("Sub", [tensor, tensor], [f"{finite}_zeros"], name=f"{finite}_zeros_node"),
            helper.make_node("ReduceSum", [f"{finite}_zeros"], [finite], keepdims=0, name=f"{finite}_node"),
            helper.make_node("Size", [tensor], [size], name=f"{size}_node"),
        ])
        graph.output.extend([helper.make_tensor_value_info(high, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(low, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(finite, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(size, TensorProto.INT64, [])])


def batch_statistics(outputs: list[np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """max |x| (NaN where the tensor held NaN or inf) and element count of each of ``count``
    tensors, from the first ``4 * count`` fetched outputs."""
    stats = np.array([float(o) for o in outputs[: 4 * count]], dtype=np.float64).reshape(count, 4)
    amax = np.maximum(stats[:, 0], -stats[:, 1])
    amax[stats[:, 3] == 0] = 0.0  # an empty tensor reduces to -inf / +inf
    amax[~np.isfinite(stats[:, 2])] = np.nan
    return amax, stats[:, 3].astype(np.int64)
