"""The ``canonicalization_replayed`` check: the reference the candidate is compared with is the
user's FP32 file after exactly the canonicalization passes the candidate records (``qx quantize``
canonicalizes before it quantizes: constants lifted, BatchNorm folded, shape arithmetic folded),
and the replay changed what the record says it changed."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from ..ir.canonical_record import describe, read_canonicalization, replay
from ..ir.pass_base import PassRecord
from ..onnx_io import private_model

NAME = "canonicalization_replayed"


def canonical_reference(reference: onnx.ModelProto, candidate: onnx.ModelProto):
    """(the reference to compare with, the check or None): the reference as given when the
    candidate records no canonicalization (another tool's, an older qx's), else the replay."""
    from .audit import Check

    records = read_canonicalization({p.key: p.value for p in candidate.metadata_props})
    if records is None:
        return reference, None
    model, replayed = replay(private_model(reference), records)
    difference = _first_difference(records, replayed)
    measured = f"{len(records)} passes replayed on the reference: {describe(replayed)}"
    if difference:
        return ir.serde.serialize_model(model), Check(
            NAME, False, measured, f"{difference}: the reference is not the FP32 file the candidate was made from, "
                                   "or another qx version canonicalized it")
    return ir.serde.serialize_model(model), Check(NAME, True, measured, "the candidate is compared with this replay")


def _first_difference(recorded: list[PassRecord], replayed: list[PassRecord]) -> str:
    if recorded and replayed and (recorded[0].nodes[0], recorded[0].initializers[0]) != (
            replayed[0].nodes[0], replayed[0].initializers[0]):
        return (f"the reference has {replayed[0].nodes[0]} nodes and {replayed[0].initializers[0]} initializers; the "
                f"candidate was made from a file with {recorded[0].nodes[0]} and {recorded[0].initializers[0]}")
    for want, got in zip(recorded, replayed):
        if want != got:
            return (f"{want.name}: the candidate records {describe([want])} ({want.nodes[0]}->{want.nodes[1]} nodes), "
                    f"the replay did {describe([got])} ({got.nodes[0]}->{got.nodes[1]} nodes)")
    return ""
