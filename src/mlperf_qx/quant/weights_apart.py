"""Models whose weights travel beside them: one copy of the weights per model, handed to each
onnxruntime session by reference, instead of serialized through protobuf for every session (the
layer check and the held-out check open five sessions of a model quantize just wrote), built side
by side (``background.together``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..background import in_background
from ..runtime import open_session
from ..session_weights import without_weights


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


class OpenedOnce:
    """The FP32 model quantize checks its candidates against, made apart once (``weights_apart``)
    for every session the writing phase opens of it: the layer check's, in each round, and the
    held-out check's. It is made in the background from the start (the candidate is written
    meanwhile); a failure surfaces where it is asked for. Building the sessions there too was
    measured and dropped: under load (4-7 on the 2 cores) the layer check then took longer by
    what publish gained."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        self._apart = in_background(weights_apart, proto, name="qx-fp32-apart")

    @property
    def apart(self) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
        return self._apart.result()

    def plain_session(self) -> ort.InferenceSession:
        return open_apart(*self.apart)
