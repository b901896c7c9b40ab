"""What quantize claims about the model it wrote, measured on that model, on held-out samples.

The precision search chooses on the switchboard; this module measures the written file itself
against the FP32 model on the held-out samples (never calibration samples) and gives every figure
a lower confidence bound: the 5th percentile of a fixed-seed bootstrap over the held-out samples
(one-sided 95 %). A target is "met" only when the written model meets it on the held-out mean;
the bound says how far that is from chance, and the count says on how much data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .precision_search import Target

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
# Fewer held-out samples than this and the bound is too wide to mean much: quantize says so.
MIN_SAMPLES_FOR_BOUND = 16


@dataclass
class HeldOutFigures:
    samples: int
    mean_cosine: float
    min_cosine: float
    sqnr_db: float
    accuracy: float | None  # top-1 of the written model against the held-out labels, in %
    fp32_accuracy: float | None
    cosine_lower: float  # one-sided 95 % lower bounds (bootstrap over the samples)
    sqnr_lower_db: float
    accuracy_lower: float | None
    # The FP32 model's median batch-1 run over these samples: the unit quantize's phases are
    # reported in (one FP32 pass over the list). Timing, not a figure of the model: not in as_dict.
    fp32_seconds_per_sample: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "fp32_seconds_per_sample"}


@dataclass
class Claim:
    """A target against the written model's held-out figures."""

    target: Target
    figures: HeldOutFigures

    @property
    def met(self) -> bool:
        return self.target.met(self)

    @property
    def certain(self) -> bool:
        """The target holds even at the lower confidence bound."""
        f = self.figures
        lower = _Figures(f.cosine_lower, f.sqnr_lower_db, f.accuracy_lower)
        return self.target.met(lower)

    # Target.met reads these three
    @property
    def mean_cosine(self) -> float:
        return self.figures.mean_cosine

    @property
    def sqnr_db(self) -> float:
        return self.figures.sqnr_db

    @property
    def accuracy(self) -> float | None:
        return self.figures.accuracy

    def describe(self) -> str:
        f, bound = self.figures, f"{int(CONFIDENCE * 100)}% lower bound"
        parts = []
        if self.target.cosine is not None:
            parts.append(f"mean cosine {f.mean_cosine:.5f} (min {f.min_cosine:.5f}; {bound} {f.cosine_lower:.5f})")
        if self.target.sqnr_db is not None:
            parts.append(f"SQNR {f.sqnr_db:.1f} dB ({bound} {f.sqnr_lower_db:.1f} dB)")
        if self.target.accuracy is not None and f.accuracy is not None:
            parts.append(f"top-1 {f.accuracy:.2f}% vs FP32 {f.fp32_accuracy:.2f}% ({bound} {f.accuracy_lower:.2f}%)")
        verdict = "met" if self.met else "NOT met"
        if self.met and not self.certain:
            verdict += " on the mean, but not at the lower bound"
        return f"{self.target.describe()}: {verdict} by the written model on {f.samples} held-out samples: " + \
            ", ".join(parts)


@dataclass
class _Figures:
    mean_cosine: float
    sqnr_db: float
    accuracy: float | None


def held_out_figures(references: list[list[np.ndarray]], outputs: list[list[np.ndarray]],
                     labels: list[int] | None) -> HeldOutFigures:
    """Figures of ``outputs`` (per sample, the model's outputs) against ``references`` (FP32)."""
    # Per sample, not stacked: a model with dynamic sizes gives each sample outputs of its own size.
    pairs = [(_flat(r), _flat(o)) for r, o in zip(references, outputs)]
    dots = np.array([np.sum(a * b) for a, b in pairs], np.float64)
    signal = np.array([np.sum(a * a) for a, _ in pairs], np.float64)
    noise = np.array([np.sum((a - b) ** 2) for a, b in pairs], np.float64)
    norms = np.sqrt(signal * np.array([np.sum(b * b) for _, b in pairs], np.float64))
    cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)
    right = fp32_right = None
    if labels is not None:
        right = np.array([int(np.argmax(o[0])) == y for o, y in zip(outputs, labels)], np.float64)
        fp32_right = np.array([int(np.argmax(r[0])) == y for r, y in zip(references, labels)], np.float64)
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(pairs), (BOOTSTRAP_RESAMPLES, len(pairs)))
    low = 100 * (1 - CONFIDENCE)
    return HeldOutFigures(
        len(pairs), float(cosines.mean()), float(cosines.min()), _sqnr(signal.sum(), noise.sum()),
        None if right is None else 100 * float(right.mean()), None if fp32_right is None else 100 * float(fp32_right.mean()),
        float(np.percentile(cosines[picks].mean(axis=1), low)),
        float(np.percentile([_sqnr(s, n) for s, n in zip(signal[picks].sum(axis=1), noise[picks].sum(axis=1))], low)),
        None if right is None else 100 * float(np.percentile(right[picks].mean(axis=1), low)))


def run_both(reference, candidate, names: list[str], feeds: list[dict], between: Callable[[], object] = lambda: None
             ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]], float | None]:
    """The FP32 model's and the written model's outputs (sessions of each) on each held-out sample,
    one by one, and the FP32 model's median seconds per sample (None without samples). The written
    model runs first, maybe beside other work, which ``between`` waits for: the FP32 model then runs
    alone, its time the unit quantize reports its phases in."""
    outputs = [candidate.run(names, feed) for feed in feeds]
    between()
    references, seconds = [], []
    for feed in feeds:
        started = time.perf_counter()
        references.append(reference.run(names, feed))
        seconds.append(time.perf_counter() - started)
    return references, outputs, float(np.median(seconds)) if seconds else None


def _flat(outputs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(o, np.float64).reshape(-1) for o in outputs if np.asarray(o).dtype.kind == "f"])


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def claim_warning(claim: Claim | None) -> str | None:
    """The warning a claim needs: missed by the written model, or checked on too few samples."""
    if claim is None:
        return None
    if not claim.met:
        return (f"the written model does not meet {claim.target.describe()} on the {claim.figures.samples} held-out "
                "samples (see above); --exclude more ops, or a lower target")
    if claim.figures.samples < MIN_SAMPLES_FOR_BOUND:
        return (f"the target was checked on {claim.figures.samples} held-out samples only: the lower bound is wide; "
                f"--holdout {MIN_SAMPLES_FOR_BOUND} or more (a longer calibration list) makes the claim mean more")
    return None
