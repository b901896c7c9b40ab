"""Observe activation ranges: one onnxruntime pass over the calibration set, batched, streaming.

The FP32 model is augmented so that every observed tensor is also a graph output; each batch's
outputs go straight into the observers and are dropped, so memory stays flat in N.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
import onnxruntime as ort
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..calibration.readers import CalibrationSet
from ..errors import UserInputError
from ..runtime import open_session
from .observers import MinMaxObserver, make_observer
from .spec import Method

_BATCH_DIM = "qx_batch"


def observe(model: ir.Model, tensors: list[str], calib: CalibrationSet, method: Method, batch: int,
            show_progress: bool = True) -> tuple[dict[str, MinMaxObserver], int]:
    """Returns the observers by tensor name and the batch size actually used."""
    session, batch = _calibration_session(model, tensors, calib, batch)
    observers = {name: make_observer(method) for name in tensors}
    with _progress(show_progress) as progress:
        task = progress.add_task("calibrating", total=len(calib))
        for ids, feeds in calib.batches(batch):
            try:
                outputs = session.run(tensors, feeds)
            except Exception as exc:
                raise UserInputError(f"onnxruntime failed on calibration sample(s) {ids[0]}..: {_first_line(exc)}") from None
            for name, array in zip(tensors, outputs):
                observers[name].update(array)
            progress.advance(task, len(ids))
    return observers, batch


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=not enabled)


def _calibration_session(model: ir.Model, tensors: list[str], calib: CalibrationSet, batch: int):
    if batch > 1:
        proto = _augmented(model, tensors, batch_dynamic=True)
        session = _session(proto)
        if _batching_works(session, calib, tensors):
            return session, batch
    return _session(_augmented(model, tensors, batch_dynamic=False)), 1


def _augmented(model: ir.Model, tensors: list[str], batch_dynamic: bool) -> onnx.ModelProto:
    proto = ir.serde.serialize_model(model)
    graph = proto.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    existing = {o.name for o in graph.output}
    for name in tensors:
        if name not in existing:
            graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    if batch_dynamic:
        # Batch the calibration run even for a model exported at batch 1: make dimension 0
        # symbolic and drop intermediate shapes (checked on a real batch before use).
        del graph.value_info[:]
        for value in graph.output:
            value.type.tensor_type.ClearField("shape")
        for value in graph.input:
            dims = value.type.tensor_type.shape.dim
            if len(dims) > 0:
                dims[0].Clear()
                dims[0].dim_param = _BATCH_DIM
    return proto


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return open_session(proto)


def _batching_works(session: ort.InferenceSession, calib: CalibrationSet, tensors: list[str]) -> bool:
    """A batch of two copies of one sample must give two copies of its batch-1 results."""
    import numpy as np

    first = calib.sample(calib.ids[0])
    doubled = {k: np.concatenate([v, v], axis=0) for k, v in first.items()}
    try:
        single = session.run(tensors, first)
        double = session.run(tensors, doubled)
    except Exception:
        return False
    return all(d.shape[:1] == (2,) and s.shape[:1] == (1,) and d.shape[1:] == s.shape[1:] for s, d in zip(single, double))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
