"""How far one layer's int8 output may be from FP32, on the reference's own inputs.

``qx verify-equivalence`` judges ``layer_numerics`` by these bounds; ``qx quantize`` chooses its
clips and factors to stay inside them (with a margin for the step from the calibration rows it
samples to the samples verify runs), so that what quantize writes is what verify accepts.
Pooled over every element of the layer's output, as verify measures it.
"""

from __future__ import annotations

MIN_LAYER_SQNR_DB = 12.0
MIN_LAYER_COSINE = 0.98

# quantize's margins over verify's bounds: its estimate comes from a few hundred sampled rows
CHOICE_SQNR_MARGIN_DB = 1.0
CHOICE_COSINE_MARGIN = 0.002


def within(sqnr_db: float, cosine: float, margin: bool = False) -> bool:
    sqnr_floor = MIN_LAYER_SQNR_DB + (CHOICE_SQNR_MARGIN_DB if margin else 0.0)
    cosine_floor = MIN_LAYER_COSINE + (CHOICE_COSINE_MARGIN if margin else 0.0)
    return sqnr_db >= sqnr_floor and cosine >= cosine_floor
