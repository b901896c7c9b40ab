"""quantize never writes a file that claims to be the int8 model while it holds no int8 op.

Such a file is the FP32 model under an int8 name: verify could attest nothing about its
quantization (``qdq_symmetric_int8`` has nothing to check), and a submitter would take it for the
int8 model. quantize refuses it instead, in one line that names the file, why no op is int8 and
what to do, and writes nothing. Two moments, two exit codes (README, CLI reference):

- before anything is measured, the plan has no int8 op: the model or the flags leave nothing qx
  quantizes (all compute inside If/Loop bodies, as in silero VAD; ``--exclude`` covering every
  op; only ops without a symmetric int8 rule). That is the input: exit 2.
- the plan had int8 ops, and measurement kept every one FP32 (a precision target no int8 op can
  meet, verify's layer tolerance, ranges a shared grid cannot hold): a check ran and failed, the
  target or the tolerance: exit 1, with the measured reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx_ir as ir

from ..errors import UserInputError, VerificationFailed
from .annotate import QuantPlan
from .op_specs import QUANTIZED_OP_TYPES
from .precision_search import SearchResult
from .subgraph_nodes import INSIDE, subgraph_decisions

NOT_WRITTEN = "no file written (it would be the FP32 model under an int8 name)"


class Int8Guard:
    """Made from the first plan (refused at once if it has no int8 op); ``check_written`` then
    refuses a written candidate that holds none."""

    def __init__(self, model_path: Path, model: ir.Model, plan: QuantPlan) -> None:
        self.model_path = model_path
        self.planned_int8 = {d.name for d in plan.decisions if d.quantized}
        if not self.planned_int8:
            _refuse_nothing_to_quantize(model_path, model, plan)

    def check_written(self, candidate: ir.Model, plan: QuantPlan, search: SearchResult | None) -> None:
        if not any(node.op_type in QUANTIZED_OP_TYPES for node in candidate.graph):
            _refuse_all_kept_fp32(self.model_path, plan, self.planned_int8, search)


def _refuse_nothing_to_quantize(model_path: Path, model: ir.Model, plan: QuantPlan) -> None:
    """Exit 2: the plan, before any measurement, quantizes no op."""
    inside = Counter(d.op_type for d in subgraph_decisions(model.graph) if d.reason.startswith(INSIDE))
    main_ops = ", ".join(sorted({d.op_type for d in plan.decisions})) or "none"
    if inside:
        holders = sorted({n.op_type for n in model.graph if n.op_type in ("If", "Loop", "Scan")})
        raise UserInputError(
            f"{model_path}: nothing to quantize, {NOT_WRITTEN}: its compute "
            f"({', '.join(f'{op}×{n}' for op, n in sorted(inside.items()))}) is inside {'/'.join(holders)} bodies, "
            f"which qx keeps FP32 (it quantizes the main graph only), and no main-graph op ({main_ops}) has an "
            "int8 form; export the model without the control flow (e.g. the branch your inputs take) and quantize that")
    reasons = Counter(d.reason for d in plan.decisions)
    why = "; ".join(f"{reason} (×{n})" if n > 1 else reason for reason, n in reasons.most_common(2))
    raise UserInputError(f"{model_path}: nothing to quantize, {NOT_WRITTEN}: no op of the model can be int8 "
                         f"({len(plan.decisions)} ops: {main_ops}); {why}. qx quantizes MatMul/Conv/Gemm-like "
                         "compute in the main graph: --exclude fewer ops where it names them")


def _refuse_all_kept_fp32(model_path: Path, plan: QuantPlan, planned_int8: set[str],
                          search: SearchResult | None) -> None:
    """Exit 1: the written candidate holds no int8 op although the first plan had ``planned_int8``:
    measurement kept every one FP32."""
    reasons = {d.name: d.reason for d in plan.decisions if d.name in planned_int8 and not d.quantized}
    by_search = set(search.fp32) & set(reasons) if search is not None else set()
    head = f"{model_path}: every candidate op was kept FP32, {NOT_WRITTEN}: "
    if by_search and by_search == set(reasons):
        start, final = search.start, search.final
        unreachable = "" if search.met else (f"; the target is not met even with every op FP32: mean cosine "
                                             f"{final.mean_cosine:.7f}, SQNR {final.sqnr_db:.1f} dB")
        raise VerificationFailed(
            f"{head}the precision search for {search.target.describe()} kept all {len(by_search)} ops FP32 (all int8 "
            f"it measured mean cosine {start.mean_cosine:.5f}, SQNR {start.sqnr_db:.1f} dB on the held-out samples"
            f"{unreachable}); loosen the target, or drop it to write the all-int8 model")
    other = [reason for name, reason in reasons.items() if name not in by_search]
    searched = f"{len(by_search)} by the precision search and " if by_search else ""
    raise VerificationFailed(
        f"{head}of the ops planned int8, {searched}{len(other)} by measurement (first: {other[0] if other else '?'}). "
        "Calibrate on more samples or another --method (mse, entropy), or --exclude the op that breaks and keep "
        "the rest int8")
