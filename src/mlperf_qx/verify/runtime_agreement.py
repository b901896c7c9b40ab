"""How far another runtime's answers are from onnxruntime's on the same ONNX file.

Under ``--backend openvino`` the extensional verdict is computed from OpenVINO's answers, and its
int8 arithmetic is its own (it folds Q/DQ pairs into its own int8 kernels, and on some graphs
computes something else: YOLOv8n's int8 head measured 0.96 output cosine against onnxruntime's).
So the report does not only say so: it measures it, on the first samples, for each ONNX role —
the same feeds through the backend that answered LoadGen and through an onnxruntime session of the
same file (the exact numerics the intensional audit uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..quant.runtime_check import cosine
from .loadgen_harness import Backend


@dataclass(frozen=True)
class Agreement:
    samples: int
    outputs: tuple[str, ...]
    min_cosine: float  # over the samples, of each sample's outputs flattened together
    mean_cosine: float
    max_abs_difference: float

    def describe(self) -> str:
        return (f"cosine min {self.min_cosine:.5f}, mean {self.mean_cosine:.5f}, max |difference| "
                f"{self.max_abs_difference:.4g} over {self.samples} samples")


def runtime_agreement(backend: Backend, model: Path, feeds: list[dict[str, np.ndarray]],
                      outputs: tuple[str, ...]) -> Agreement:
    """``backend``'s answers against onnxruntime's (qx's session options) on ``model``, sample by
    sample, over ``outputs`` (the ones the responses are made of)."""
    from ..runtime import open_session

    session = open_session(model, spin_between_runs=False)
    cosines, largest = [], 0.0
    for feed in feeds:
        theirs = backend.run({name: feed[name] for name in backend.input_names})
        exact = dict(zip(outputs, session.run(list(outputs), feed)))
        a = np.concatenate([np.ravel(theirs[name]).astype(np.float64) for name in outputs])
        b = np.concatenate([np.ravel(exact[name]).astype(np.float64) for name in outputs])
        cosines.append(cosine(a, b))
        largest = max(largest, float(np.max(np.abs(a - b))) if a.size else 0.0)
    return Agreement(len(feeds), outputs, min(cosines), float(np.mean(cosines)), largest)

