"""Pass framework: each pass rewrites an onnx_ir model in place and says whether it changed it.

A pipeline is a plain list of passes, run top to bottom; it records what each pass did so the
record can go into the model's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import onnx_ir as ir
import onnx_ir.passes


class QxPass(ir.passes.InPlacePass):
    """Base of every mlperf-qx pass.

    ``preserves_numerics`` is a promise checked by the pass tests with onnxruntime: the model's
    outputs may change only by float rounding. A pass that may change more must set it False.
    """

    preserves_numerics = True

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class PassRecord:
    name: str
    modified: bool


class Pipeline:
    """A readable, ordered list of passes."""

    def __init__(self, passes: Sequence[QxPass]):
        self.passes = list(passes)

    def __call__(self, model: ir.Model) -> tuple[ir.Model, list[PassRecord]]:
        records = []
        for step in self.passes:
            result = step(model)
            model = result.model
            records.append(PassRecord(step.name, bool(result.modified)))
        return model, records
