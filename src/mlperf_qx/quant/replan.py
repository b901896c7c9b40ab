"""Plan again after the ranges are known, with more ops kept FP32, and without recalibrating."""

from __future__ import annotations

from dataclasses import replace

import onnx_ir as ir

from ..calibration.cache import TensorRange
from .annotate import QuantPlan, plan_quantization


def replan(model: ir.Model, exclude: set[str], kept: dict[str, str], ranges: dict[str, TensorRange],
           previous: QuantPlan) -> QuantPlan:
    """Plan again with more ops FP32. A tensor that had no range (a Linear's output, read only by
    its bias Add while the Linear was int8) keeps its readers FP32 too: no recalibration. A tensor
    that shared a grid keeps that grid's range (a Reshape kept FP32: its output's readers stay on
    the grid they had, as the switchboard measured them)."""
    inherit_group_ranges(previous, ranges)
    while True:
        plan = plan_quantization(model, exclude, kept)
        missing = [t for t in plan.observed_tensors() if t not in ranges]
        if not missing:
            return plan
        for tensor in missing:
            for node, _ in plan.activation_uses.get(tensor, []):
                kept[node] = f"reads '{tensor}', produced by an op kept FP32 (not calibrated); kept FP32"
            for member in plan.group_members(plan.group_of(tensor)):
                for node, _ in plan.activation_uses.get(member, []):
                    kept[node] = f"shares a scale with '{tensor}', produced by an op kept FP32; kept FP32"


def inherit_group_ranges(plan: QuantPlan, ranges: dict[str, TensorRange]) -> None:
    """Every member of a scale group without a range of its own takes the group's."""
    for tensor in plan.groups:
        if tensor in ranges:
            continue
        group = plan.group_of(tensor)
        members = [ranges[m] for m in plan.group_stats.get(group, {group}) if m in ranges]
        if members:
            widest = max(members, key=lambda r: r.amax)
            ranges[tensor] = replace(widest, method=f"the shared grid of '{group}'")
