"""max |x| computed by onnxruntime itself, inside the calibration graph (minmax calibration).

For minmax only a few scalars per observed tensor are needed. Reducing inside the graph reads each
activation right after the operator that wrote it, while it is still in cache, on onnxruntime's
own threads; nothing is copied out (the bound-arena path writes every activation to memory and
reads it back). Per tensor:

- ReduceMax and ReduceMin over all axes: max |x| = max(max, -min). Both skip NaN in onnxruntime,
  so
- ReduceSum(x - x) flags non-finite data: x - x is 0 for every finite x and NaN for NaN and
  inf, so the sum is NaN exactly when the tensor holds a non-finite value. (A plain ReduceSum(x)
  overflows on finite data: Hugging Face's attention masks hold -3.4e38.) And
- Size counts the elements.

A Relu's output is never below zero (NaN aside, which the sum flags), so for it max |x| is its
ReduceMax and no ReduceMin is added: one read of the tensor fewer (most of a CNN's activations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper


@dataclass(frozen=True)
class Reductions:
    """The fetched statistics of the observed tensors, in order: ``names`` are graph outputs, and
    ``slots[i]`` the positions in ``names`` of tensor i's max, min (-1: none, a Relu's output),
    non-finite flag and size."""

    tensors: list[str]
    names: list[str]
    slots: np.ndarray  # (tensors, 4) int64


def plan_reductions(tensors: list[str], nonnegative: set[str]) -> Reductions:
    names, slots = [], []
    for index, tensor in enumerate(tensors):
        stats = ("max", "finite", "size") if tensor in nonnegative else ("max", "min", "finite", "size")
        at = {stat: len(names) + k for k, stat in enumerate(stats)}
        names += [f"qx_calib::{index}::{stat}" for stat in stats]
        slots.append([at["max"], at.get("min", -1), at["finite"], at["size"]])
    return Reductions(list(tensors), names, np.array(slots, dtype=np.int64).reshape(-1, 4))


def add_reductions(graph: onnx.GraphProto, reductions: Reductions) -> None:
    """The planned statistics of each float32 tensor as new graph outputs."""
    for index, tensor in enumerate(reductions.tensors):
        high, low, finite, size = (reductions.names[s] if s >= 0 else None for s in reductions.slots[index])
        nodes = [helper.make_node("ReduceMax", [tensor], [high], keepdims=0, name=f"{high}_node")]
        outputs = [helper.make_tensor_value_info(high, TensorProto.FLOAT, [])]
        if low is not None:
            nodes.append(helper.make_node("ReduceMin", [tensor], [low], keepdims=0, name=f"{low}_node"))
            outputs.append(helper.make_tensor_value_info(low, TensorProto.FLOAT, []))
        nodes += [helper.make_node("Sub", [tensor, tensor], [f"{finite}_zeros"], name=f"{finite}_zeros_node"),
                  helper.make_node("ReduceSum", [f"{finite}_zeros"], [finite], keepdims=0, name=f"{finite}_node"),
                  helper.make_node("Size", [tensor], [size], name=f"{size}_node")]
        outputs += [helper.make_tensor_value_info(finite, TensorProto.FLOAT, []),
                    helper.make_tensor_value_info(size, TensorProto.INT64, [])]
        graph.node.extend(nodes)
        graph.output.extend(outputs)


def batch_statistics(outputs: list[np.ndarray], reductions: Reductions) -> tuple[np.ndarray, np.ndarray]:
    """max |x| (NaN where the tensor held NaN or inf) and element count of each tensor, from the
    first ``len(reductions.names)`` fetched outputs."""
    values = np.array([float(o) for o in outputs[: len(reductions.names)]] + [0.0], dtype=np.float64)
    stats = values[reductions.slots]  # a missing min (slot -1) reads the appended 0.0: the Relu's floor
    amax = np.maximum(stats[:, 0], -stats[:, 1])
    amax[stats[:, 3] == 0] = 0.0  # an empty tensor reduces to -inf / +inf
    amax[~np.isfinite(stats[:, 2])] = np.nan
    return amax, stats[:, 3].astype(np.int64)
