"""Models whose weights travel beside them: one copy of the weights per model, handed to each
onnxruntime session by reference, instead of serialized through protobuf for every session (the
layer check and the held-out check open five sessions of a model quantize just wrote), and
sessions built side by side."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from ..runtime import open_session
from ..session_weights import without_weights

T = TypeVar("T")


def weights_apart(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``proto`` whose large weights are external-data references, and their values
    (``session_weights.without_weights``; initializers nothing reads are left out). ``open_apart``
    opens it, or a copy with more outputs or with inputs rewired, as onnxruntime opens ``proto``,
    and shape inference reads it in milliseconds instead of copying the weights twice. ``proto``
    is left unchanged."""
    return without_weights(proto, copy=True)


def open_apart(skeleton: onnx.ModelProto, weights: dict[str, np.ndarray], optimization=None,
               optimized_model_path: Path | None = None, spin_between_runs: bool = True) -> ort.InferenceSession:
    """A session of a model from ``weights_apart`` (or a copy of it): its weights handed over in
    place. ``spin_between_runs``: as ``runtime.open_session``'s (off where numpy works between runs)."""
    # onnxruntime copies the arrays as it builds the session (runtime._inference_session): the
    # session need not keep them.
    return open_session(skeleton, optimization, optimized_model_path=optimized_model_path, external_weights=weights,
                        spin_between_runs=spin_between_runs)


def load_apart(path: Path) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A written model read once, for several sessions (``open_apart``) without reading it again."""
    return weights_apart(onnx.load(str(path)))


def together(*calls: Callable[[], T]) -> list[T]:
    """The calls' results, the calls made side by side: onnxruntime releases the GIL while it builds
    a session, so on two cores or more the sessions a check needs are built at once (each session
    is independent: the same sessions, the same answers)."""
    if len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


class OpenedOnce:
    """The FP32 model quantize checks its candidates against, made apart once (``weights_apart``)
    for every session the writing phase opens of it: the layer check's, in each round, and the
    held-out check's. The work starts in the background when it is made (onnxruntime builds a
    session without the GIL while the candidate is written in Python), one session after the
    other: the layer check's session exposing ``exposed(skeleton)`` (the tensors it will most
    likely ask for; built as the layer check builds its sessions), then the plain session when
    ``plain`` (the held-out check's). Each is the session ``open_apart`` builds of the same graph
    later; a failure surfaces where it is asked for."""

    def __init__(self, proto: onnx.ModelProto, plain: bool,
                 exposed: Callable[[onnx.ModelProto], list[str]] | None = None) -> None:
        self.proto = proto
        worker = ThreadPoolExecutor(max_workers=1)
        self._apart = worker.submit(weights_apart, proto)
        self._exposed = worker.submit(self._open_exposing, exposed) if exposed is not None else None
        self._plain = worker.submit(lambda: open_apart(*self.apart)) if plain else None
        worker.shutdown(wait=False)  # the submitted calls still run: nothing waits for them here

    @property
    def apart(self) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
        return self._apart.result()

    def plain_session(self) -> ort.InferenceSession:
        return self._plain.result() if self._plain is not None else open_apart(*self.apart)

    def session_exposing(self, names: list[str]) -> ort.InferenceSession | None:
        """The session of the model with ``names`` as outputs too, when it was opened for exactly those."""
        if self._exposed is None:
            return None
        exposed, session = self._exposed.result()
        return session if exposed == names else None

    def _open_exposing(self, exposed: Callable[[onnx.ModelProto], list[str]]):
        from .runtime_check import with_outputs

        skeleton, weights = self.apart
        names = exposed(skeleton)
        return names, open_apart(with_outputs(skeleton, names), weights, spin_between_runs=False)
