"""What ``qx quantize`` was asked to do: the options every phase of the pipeline reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .precision_search import Target
from .spec import Format, Method


@dataclass
class QuantizeOptions:
    calib: Path
    calib_list: Path | None = None
    preprocess: object | None = None
    method: Method = Method.MINMAX
    percentile: float = 99.99
    samples: int | None = None
    batch: int | None = None  # None: chosen from the activation volume per sample
    exclude: set[str] = field(default_factory=set)
    equalize: list[str] = field(default_factory=list)  # "smoothquant", "cle"
    alpha: float | None = None  # smoothquant's migration strength; None: chosen per layer by measured error
    target: Target | None = None  # accuracy-aware precision: keep the fewest ops FP32 that reach it
    sensitivity: bool = False  # measure and report every op's sensitivity (both directions)
    holdout: int | None = None  # last N ids of the list: search samples, not used for ranges
    labels: Path | None = None  # "<sample> <label>" lines naming the held-out ids, for an accuracy target
    fmt: Format = Format.QDQ
    cache: Path | None = None
    trt_cache: Path | None = None
    report: Path | None = None
    show_progress: bool = True
