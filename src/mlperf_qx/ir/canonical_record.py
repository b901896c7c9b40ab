"""The canonicalization a quantized model was made from, recorded in the model and replayed.

``qx quantize`` canonicalizes the FP32 file it is given (constants lifted, BatchNorm folded, shape
arithmetic folded...) before it quantizes, so the candidate is the canonical graph, not the file.
It records which passes ran and what each changed (``qx.canonicalization``); verify replays
exactly those passes on the user's FP32 file and compares the candidate with the result, after
checking that the replay changed the same counts the record says. Verify never guesses which
transformations were applied.
"""

from __future__ import annotations

import json

import onnx_ir as ir

from ..errors import UserInputError
from .canonicalize import canonicalization_pipeline
from .pass_base import PassRecord, Pipeline

RECORD_KEY = "qx.canonicalization"
RECORD_VERSION = 1


def record_canonicalization(model: ir.Model, records: list[PassRecord]) -> None:
    """Write the pipeline's records into ``model``'s metadata."""
    text = json.dumps({"version": RECORD_VERSION, "passes": [r.as_dict() for r in records]}, sort_keys=True)
    model.metadata_props[RECORD_KEY] = text


def read_canonicalization(props: dict[str, str]) -> list[PassRecord] | None:
    """The recorded passes, None when the model records none (another tool's, or an older qx's)."""
    text = props.get(RECORD_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"record version {data.get('version')}, this qx reads {RECORD_VERSION}")
        return [PassRecord.from_dict(entry) for entry in data["passes"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserInputError(f"metadata '{RECORD_KEY}' is malformed ({exc}); the candidate was not written by "
                             "this qx or was edited") from None


def replay(model: ir.Model, records: list[PassRecord]) -> tuple[ir.Model, list[PassRecord]]:
    """Run the recorded passes, in the recorded order, on ``model`` (in place)."""
    known = {step.name: type(step) for step in canonicalization_pipeline().passes}
    unknown = [r.name for r in records if r.name not in known]
    if unknown:
        raise UserInputError(f"the candidate records canonicalization pass '{unknown[0]}', which this qx does not "
                             "have; verify with the qx version that quantized it (see qx.quantize_versions)")
    return Pipeline([known[r.name]() for r in records])(model)


def describe(records: list[PassRecord]) -> str:
    """What the passes changed, in a line: '33 Shape, 66 Unsqueeze removed by FoldConstants; ...'."""
    parts = []
    for record in records:
        removed = [f"{-n} {op}" for op, n in sorted(record.op_changes.items()) if n < 0]
        added = [f"{n} {op}" for op, n in sorted(record.op_changes.items()) if n > 0]
        lifted = record.initializers[1] - record.initializers[0]
        what = (["-" + ", -".join(removed)] if removed else []) + (["+" + ", +".join(added)] if added else [])
        if lifted:
            what.append(f"{lifted:+d} initializers")
        if what:
            parts.append(f"{record.name} {' '.join(what)}")
    return "; ".join(parts) or "no change"
