"""max |x| computed by onnxruntime itself, inside the calibration graph (minmax calibration).

For minmax only a few scalars per observed tensor are needed. Reducing inside the graph reads each
activation right after the operator that wrote it, while it is still in cache, on onnxruntime's
own threads; nothing is copied out (the bound-arena path writes every activation to memory and
reads it back). Per tensor:

- ReduceMax and ReduceMin over all axes: max |x| = max(max, -min). On data without NaN both are
  exact, infinities included, so an inf shows as an infinite max |x|. But they skip a NaN at some
  positions (onnxruntime's vectorized max keeps the other operand), so
- ReduceSumSquare flags NaN: it is NaN exactly when the tensor holds a NaN. Every square of a
  non-NaN float is >= 0 or +inf, and a sum of those is never NaN (inf - inf cannot occur), while
  a NaN term makes the sum NaN. It can be +inf on finite data (3e19 squared overflows; Hugging
  Face's attention masks hold -3.4e38), which is why only its NaN counts. One read of the tensor,
  where the former flag, ReduceSum(x - x), wrote a whole tensor and read it back. And
- Size counts the elements.

A Relu's output is never below zero (NaN aside, which the sum flags), so for it max |x| is its
ReduceMax and no ReduceMin is added: one read of the tensor fewer (most of a CNN's activations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from .written_order import last_written_first


@dataclass(frozen=True)
class Reductions:
    """The fetched statistics of the observed tensors, in order: ``names`` are graph outputs, and
    ``slots[i]`` the positions in ``names`` of tensor i's max, min (-1: none, a Relu's output),
    NaN flag (its sum of squares) and size. ``read_out``: observed tensors that are not float32,
    fetched whole after the statistics."""

    tensors: list[str]
    names: list[str]
    slots: np.ndarray  # (tensors, 4) int64
    read_out: list[str] = field(default_factory=list)


def plan_reductions(tensors: list[str], nonnegative: set[str], read_out: list[str] | None = None) -> Reductions:
    names, slots = [], []
    for index, tensor in enumerate(tensors):
        stats = ("max", "nan", "size") if tensor in nonnegative else ("max", "min", "nan", "size")
        at = {stat: len(names) + k for k, stat in enumerate(stats)}
        names += [f"qx_calib::{index}::{stat}" for stat in stats]
        slots.append([at["max"], at.get("min", -1), at["nan"], at["size"]])
    return Reductions(list(tensors), names, np.array(slots, dtype=np.int64).reshape(-1, 4), list(read_out or []))


def add_reductions(graph: onnx.GraphProto, reductions: Reductions) -> None:
    """The planned statistics of each float32 tensor as new graph outputs, appended last-written
    tensor first: onnxruntime then runs each tensor's reductions right after the operator that
    wrote it (``written_order``)."""
    for index in last_written_first(graph, reductions.tensors):
        tensor = reductions.tensors[index]
        high, low, nan, size = (reductions.names[s] if s >= 0 else None for s in reductions.slots[index])
        nodes = [helper.make_node("ReduceMax", [tensor], [high], keepdims=0, name=f"{high}_node")]
        outputs = [helper.make_tensor_value_info(high, TensorProto.FLOAT, [])]
        if low is not None:
            nodes.append(helper.make_node("ReduceMin", [tensor], [low], keepdims=0, name=f"{low}_node"))
            outputs.append(helper.make_tensor_value_info(low, TensorProto.FLOAT, []))
        nodes += [helper.make_node("ReduceSumSquare", [tensor], [nan], keepdims=0, name=f"{nan}_node"),
                  helper.make_node("Size", [tensor], [size], name=f"{size}_node")]
        outputs += [helper.make_tensor_value_info(nan, TensorProto.FLOAT, []),
                    helper.make_tensor_value_info(size, TensorProto.INT64, [])]
        graph.node.extend(nodes)
        graph.output.extend(outputs)


def batch_statistics(outputs: list[np.ndarray], reductions: Reductions) -> tuple[np.ndarray, np.ndarray]:
    """max |x| (NaN where the tensor held NaN, inf where it held inf) and element count of each
    tensor, from the first ``len(reductions.names)`` fetched outputs."""
    values = np.array([float(o) for o in outputs[: len(reductions.names)]] + [0.0], dtype=np.float64)
    stats = values[reductions.slots]  # a missing min (slot -1) reads the appended 0.0: the Relu's floor
    amax = np.maximum(stats[:, 0], -stats[:, 1])
    amax[stats[:, 3] == 0] = 0.0  # an empty tensor reduces to -inf / +inf
    amax[np.isnan(stats[:, 2])] = np.nan  # an infinite sum of squares can be finite data: only NaN flags
    return amax, stats[:, 3].astype(np.int64)
