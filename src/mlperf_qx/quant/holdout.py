"""The held-out samples of a precision search: how many, which, and the search run on them.

The last ids of the calibration list are held out: they set no range, and the search and the
figures quantize prints about the written model are measured on them. By default as many as the
list allows up to HOLDOUT_DEFAULT (32: a bootstrap bound on 32 samples is a few times tighter
than on 8), keeping at least HOLDOUT_MIN_RANGES samples for the ranges.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from ..calibration.readers import CalibrationSet
from ..errors import UserInputError
from ..progress import step
from .annotate import QuantPlan

HOLDOUT_DEFAULT, HOLDOUT_MIN_RANGES = 32, 8


def split_holdout(calib: CalibrationSet, requested: int | None) -> tuple[CalibrationSet, list[str]]:
    """(the samples that set the ranges, the held-out ids): the last ``--holdout`` ids of the list
    (default: up to HOLDOUT_DEFAULT, at most half the list). Never the accuracy set."""
    count = requested if requested is not None else max(1, min(HOLDOUT_DEFAULT, len(calib) // 2,
                                                               len(calib) - HOLDOUT_MIN_RANGES))
    if count < 1 or len(calib) - count < min(HOLDOUT_MIN_RANGES, len(calib) - 1):
        raise UserInputError(f"--holdout {count}: the calibration list has {len(calib)} samples; keep at least "
                             f"{HOLDOUT_MIN_RANGES} for the ranges and 1 held out")
    return replace(calib, ids=calib.ids[:-count]), calib.ids[-count:]


def search_precision(fp32: onnx.ModelProto, plan: QuantPlan, scales: dict[str, np.float32],
                     feeds: list[dict], labels: list[int] | None, target, sensitivity: bool, shown: bool):
    """Sensitivity of every op on the held-out samples and, with a target, the ops to keep FP32."""
    from .flops import matmul_flops
    from .precision_search import measure_sensitivity, search
    from .switchboard import Switchboard

    with step(f"building the int8/FP32 switchboard on {len(feeds)} held-out samples", shown):
        board = Switchboard(fp32, plan, scales, feeds, labels)
        flops = matmul_flops(fp32, feeds[0])
    op_types = {n.name: n.op_type for n in fp32.graph.node}
    sensitivities = measure_sensitivity(board, op_types, flops, sensitivity, shown)
    result = search(board, sensitivities, target, flops, shown) if target is not None else None
    return result, sensitivities, flops


def held_out_labels(path: Path | None, holdout: list[str]) -> list[int]:
    """The label of every held-out id, from a "<sample> <label>" file (a val_map, or the
    calibration list itself in MLPerf's option-2 form)."""
    from ..calibration.sample_ids import sample_key
    from ..verify.labels import VAL_MAP_FORM, read_labelled

    if path is None:
        raise UserInputError("--target-accuracy needs --labels FILE naming the held-out ids with their labels")
    ids, rows = read_labelled(path, VAL_MAP_FORM)
    labels = {sample_key(i): row[0] for i, row in zip(ids, rows)}
    missing = [i for i in holdout if sample_key(i) not in labels]
    if missing:
        raise UserInputError(f"--labels {path}: no label for held-out id '{missing[0]}' (+{len(missing) - 1} more)")
    return [labels[sample_key(i)] for i in holdout]
