"""Observe activation ranges: one onnxruntime pass over the calibration set, batched, streaming.

The FP32 model is augmented so that every observed tensor is also a graph output; each batch's
outputs go straight into the observers and are dropped, so memory stays flat in N.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import onnx
import onnx_ir as ir
import onnxruntime as ort
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..calibration.readers import CalibrationSet
from ..errors import UserInputError, first_line
from ..runtime import open_session, session_options
from .observers import MinMaxObserver, make_observer
from .runtime_check import expose_tensors
from .spec import Method

_BATCH_DIM = "qx_batch"
AUTO_BATCH_BYTES = 32 << 20
MAX_AUTO_BATCH = 64


def observe(model: ir.Model, tensors: list[str], calib: CalibrationSet, method: Method, batch: int | None,
            show_progress: bool = True) -> tuple[dict[str, MinMaxObserver], int]:
    """Returns the observers by tensor name and the batch size actually used."""
    session, batch = _calibration_session(model, tensors, calib, batch)
    observers = {name: make_observer(method) for name in tensors}
    def run(ids: list[str], feeds: dict) -> list:
        try:
            return session.run(tensors, feeds)
        except Exception as exc:
            raise UserInputError(f"onnxruntime failed on calibration sample(s) {ids[0]}..: {first_line(exc)}") from None

    # Two-stage pipeline: onnxruntime runs batch k+1 (it releases the GIL) while the observers
    # bin batch k. Observers still see batches in order, so results do not depend on timing.
    with _progress(show_progress) as progress, ThreadPoolExecutor(max_workers=1) as runner:
        task = progress.add_task("calibrating", total=len(calib))
        batches = calib.batches(batch)
        pending = None
        for ids, feeds in batches:
            future = runner.submit(run, ids, feeds)
            if pending is not None:
                _update(observers, tensors, pending[1].result())
                progress.advance(task, len(pending[0]))
            pending = (ids, future)
        if pending is not None:
            _update(observers, tensors, pending[1].result())
            progress.advance(task, len(pending[0]))
    return observers, batch


def _update(observers: dict[str, MinMaxObserver], tensors: list[str], outputs: list) -> None:
    for name, array in zip(tensors, outputs):
        observers[name].update(array)


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=not enabled)


def _calibration_session(model: ir.Model, tensors: list[str], calib: CalibrationSet, batch: int | None):
    """The session and batch size to calibrate with. ``batch=None`` picks one: as many samples as
    keep a batch's observed activations near AUTO_BATCH_BYTES (measured here: for ResNet-50,
    176 MB of activations per sample, batch 1 beat batch 4 and 16 on 2 cores; tiny models gain
    from large batches)."""
    static = None  # the batch-1 session, built once: the probe's is reused for calibration
    if batch is None:
        static = _session(_augmented(model, tensors, batch_dynamic=False))
        batch = _auto_batch(static, tensors, calib)
    if batch > 1:
        session = _session(_augmented(model, tensors, batch_dynamic=True))
        if _batching_works(session, calib, tensors):
            return session, batch
    if static is None:
        static = _session(_augmented(model, tensors, batch_dynamic=False))
    return static, 1


def _auto_batch(probe: ort.InferenceSession, tensors: list[str], calib: CalibrationSet) -> int:
    per_sample = sum(a.nbytes for a in probe.run(tensors, calib.sample(calib.ids[0])))
    return int(max(1, min(MAX_AUTO_BATCH, AUTO_BATCH_BYTES // max(per_sample, 1), len(calib))))


def _augmented(model: ir.Model, tensors: list[str], batch_dynamic: bool) -> onnx.ModelProto:
    proto = ir.serde.serialize_model(model)
    graph = proto.graph
    expose_tensors(graph, tensors)
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
    return open_session(proto, session_options(spinning=False))


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
