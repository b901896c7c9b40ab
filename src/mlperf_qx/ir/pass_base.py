"""Pass framework: each pass rewrites an onnx_ir model in place and says whether it changed it.

A pipeline is a plain list of passes, run top to bottom; it records what each pass did so the
record can go into the model's provenance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
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
    """One pass's run: whether it changed the model and what: the node and initializer counts
    before and after, and the op types it removed (negative) or added (positive). verify replays
    the record on the FP32 reference and compares these figures, so they must be deterministic."""

    name: str
    modified: bool
    nodes: tuple[int, int] = (0, 0)
    initializers: tuple[int, int] = (0, 0)
    op_changes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "modified": self.modified, "nodes": list(self.nodes),
                "initializers": list(self.initializers), "op_changes": dict(sorted(self.op_changes.items()))}

    @classmethod
    def from_dict(cls, data: dict) -> PassRecord:
        return cls(str(data["name"]), bool(data["modified"]), tuple(data.get("nodes", (0, 0))),
                   tuple(data.get("initializers", (0, 0))), {str(k): int(v) for k, v in data.get("op_changes", {}).items()})


def _census(model: ir.Model) -> tuple[Counter, int]:
    """Op types of the main graph's nodes, and its initializer count."""
    return Counter(node.op_type for node in model.graph), len(model.graph.initializers)


class Pipeline:
    """A readable, ordered list of passes."""

    def __init__(self, passes: Sequence[QxPass]):
        self.passes = list(passes)

    def __call__(self, model: ir.Model) -> tuple[ir.Model, list[PassRecord]]:
        records = []
        ops, initializers = _census(model)
        for step in self.passes:
            result = step(model)
            model = result.model
            after_ops, after_initializers = _census(model)
            changes = {op: after_ops[op] - ops[op] for op in ops | after_ops if after_ops[op] != ops[op]}
            records.append(PassRecord(step.name, bool(result.modified), (sum(ops.values()), sum(after_ops.values())),
                                      (initializers, after_initializers), changes))
            ops, initializers = after_ops, after_initializers
        return model, records
