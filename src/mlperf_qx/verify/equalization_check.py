"""The ``equalization_exact`` check: an equalized candidate is compared with the equalized
reference, which verify rebuilds itself from the FP32 reference and the exponents recorded in the
candidate; it proves the rebuild is the same FP32 mathematics. A candidate that records no
equalization but whose weights are the reference's rescaled per channel fails the check: the
matching inverse is unproven (and usually absent)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir

from ..errors import QxError, first_line
from ..ir.canonicalize import canonicalization_pipeline
from ..quant.equalization import EqualizationRecord, apply_equalization
from ..quant.equalize import EXACTNESS_RTOL, fp32_difference
from ..onnx_io import private_model

NAME = "equalization_exact"
RESCALE_MIN_SPREAD = 0.05  # per-channel ratios further than this from each other: not rounding


def equalized_reference(reference: onnx.ModelProto, candidate: onnx.ModelProto, feeds: list[dict],
                        canonical: bool = False):
    """(the reference the candidate is to be audited against, the check, the record it was rebuilt
    with). No record: the reference itself, no check (the audit then looks for unrecorded
    rescales itself) and no record; an unusable record: the reference, a failed check, no record.
    ``canonical``: the reference is already the replay of the candidate's canonicalization (else,
    a candidate of an older qx, it is canonicalized here as quantize did before equalizing)."""
    props = {p.key: p.value for p in candidate.metadata_props}
    text = props.get("qx.equalization")
    if text is None:
        return reference, None, None
    try:
        record = EqualizationRecord.from_json(text)
        summary = json.loads(props.get("qx.quantization", "{}")).get("equalization") or {}
        if summary.get("sha256") != record.sha256():
            return (reference, _fail("the equalization record does not match the sha256 recorded with the quantization"),
                    None)
        model = private_model(reference)
        if not canonical:
            model, _ = canonicalization_pipeline()(model)
        apply_equalization(model, record)
        rebuilt = ir.serde.serialize_model(model)
    except QxError as exc:
        return reference, _fail(first_line(exc, 300)), None
    abs_error, rel_error = fp32_difference(reference, rebuilt, feeds) if feeds else (0.0, 0.0)
    exponents = [e for g in record.smoothquant for e in g.exponents] + [e for p in record.cle for e in p.exponents]
    measured = (f"{len(record.smoothquant)} smoothquant groups, {len(record.cle)} CLE pairs, {len(exponents)} factors "
                f"(powers of two 2^{min(exponents, default=0)}..2^{max(exponents, default=0)}); rebuilt equalized "
                f"reference vs reference: max abs {abs_error:.2e}, max rel {rel_error:.2e} on {len(feeds)} samples")
    passed = rel_error <= EXACTNESS_RTOL
    from .audit import Check

    return rebuilt, Check(NAME, passed, measured,
                          "weights are audited against the rebuilt equalized reference" if passed
                          else f"the recorded rescaling is not an identity (tolerance {EXACTNESS_RTOL:g})"), record


def split_layer_partials(reference: onnx.ModelProto, record: EqualizationRecord | None) -> dict[str, str]:
    """The tensors of the equalized reference (rebuilt with ``record``) that are partial sums of a
    split linear layer: the int8 MatMul's output (and its bias Add's) before the FP32 outlier
    channels are added back, each mapped to the layer's whole output.
    A partial sum is not a layer's output (its reference lacks the outlier channels' share), so
    layer_numerics compares such a layer where it is whole, after ``<MatMul>_outlier_add``."""
    if record is None:
        return {}
    nodes = {node.name: node for node in reference.graph.node}
    partials = {}
    for group in record.smoothquant:
        for consumer in group.consumers if group.split else ():
            matmul, add = nodes.get(consumer), nodes.get(f"{consumer}_outlier_add")
            if matmul is not None and add is not None:
                partials.update({matmul.output[0]: add.output[0], add.input[0]: add.output[0]})
    return partials


def _fail(detail: str):
    from .audit import Check

    return Check(NAME, False, "equalization record unusable", detail)


def rescaled_channels(reference: np.ndarray, candidate: np.ndarray,
                      step: float | None = None) -> tuple[int, float, float] | None:
    """(axis, smallest, largest per-channel factor) if ``candidate`` is ``reference`` rescaled
    channel by channel along axis 0 or 1 beyond rounding, else None.

    With ``step`` (the candidate's int8 step), rounding is judged against it: a channel whose every
    element lies within half a step of the reference is rounded, not rescaled (its ratio to the
    reference may be anything from 0.98 to 1.1 when it holds one small element); a rescaled channel
    is one beyond half a step whose rescaled reference explains it within a step (the factor's own
    fit error). Without a step, channels whose factors spread less than RESCALE_MIN_SPREAD are
    taken for rounding."""
    if reference.ndim < 2 or reference.shape != candidate.shape:
        return None
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    for axis in (0, 1):
        moved_ref = np.moveaxis(ref, axis, 0).reshape(ref.shape[axis], -1)
        moved_cand = np.moveaxis(cand, axis, 0).reshape(ref.shape[axis], -1)
        found = (_rescaled_beyond_rounding(moved_ref, moved_cand, step) if step
                 else _rescaled_beyond_spread(moved_ref, moved_cand))
        if found is not None:
            return (axis, *found)
    return None


def _channel_ratios(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(least-squares factor per channel, channels with a non-zero reference)."""
    denominator = np.sum(ref * ref, axis=1)
    usable = denominator > 0
    ratios = np.ones(len(ref))
    ratios[usable] = np.sum(ref * cand, axis=1)[usable] / denominator[usable]
    return ratios, usable


def _rescaled_beyond_rounding(ref: np.ndarray, cand: np.ndarray, step: float) -> tuple[float, float] | None:
    half = step / 2 * (1 + 1e-5)  # float32 rounding of q*s
    beyond = np.any(np.abs(cand - ref) > half, axis=1)
    ratios, usable = _channel_ratios(ref, cand)
    moved = beyond & usable
    if not moved.any() or len(ref) < 2:
        return None
    ratios = np.where(moved, ratios, 1.0)
    if ratios.min() <= 0 or ratios.max() / ratios.min() < 1 + 1e-3:
        return None  # one factor for the whole tensor is a replaced scale, not a per-channel rescale
    explained = np.abs(cand[moved] - ratios[moved, None] * ref[moved]) <= 2 * half
    if not explained.all():
        return None
    return float(ratios[moved].min()), float(ratios[moved].max())


def _rescaled_beyond_spread(ref: np.ndarray, cand: np.ndarray) -> tuple[float, float] | None:
    ratios, usable = _channel_ratios(ref, cand)
    if usable.sum() < 2:
        return None
    ratios, ref, cand = ratios[usable], ref[usable], cand[usable]
    if ratios.min() <= 0 or ratios.max() / ratios.min() < 1 + RESCALE_MIN_SPREAD:
        return None
    fitted = ref * ratios[:, None]
    if np.linalg.norm(cand - fitted) < 0.25 * np.linalg.norm(cand - ref):
        return float(ratios.min()), float(ratios.max())
    return None
