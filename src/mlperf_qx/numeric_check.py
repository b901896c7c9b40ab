"""Compare two sets of outputs, Polygraphy-style: errors, and the tolerance that would pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import UserInputError


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3

    def __str__(self) -> str:
        return f"{self.atol:g},{self.rtol:g}"


def parse_tolerance(text: str) -> Tolerance:
    try:
        atol, rtol = (float(part) for part in text.split(","))
    except ValueError:
        raise UserInputError(f"--tolerance '{text}' must be ATOL,RTOL (example: 1e-4,1e-3)") from None
    if atol < 0 or rtol < 0 or not np.isfinite(atol) or not np.isfinite(rtol):
        raise UserInputError(f"--tolerance '{text}': both values must be finite and non-negative")
    return Tolerance(atol, rtol)


@dataclass(frozen=True)
class OutputComparison:
    name: str
    max_abs_error: float
    max_rel_error: float
    mean_abs_error: float
    atol_needed: float  # smallest atol that passes at the requested rtol
    passed: bool


def compare_outputs(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tolerance: Tolerance
) -> list[OutputComparison]:
    results = []
    for name, reference in expected.items():
        candidate = actual[name]
        if candidate.shape != reference.shape:
            raise UserInputError(
                f"output '{name}': ONNX gives shape {candidate.shape}, the framework {reference.shape}"
            )
        ref = reference.astype(np.float64)
        diff = np.abs(candidate.astype(np.float64) - ref)
        if diff.size == 0:
            results.append(OutputComparison(name, 0.0, 0.0, 0.0, 0.0, True))
            continue
        finite = np.isfinite(diff)
        if not finite.all():
            results.append(OutputComparison(name, float("inf"), float("inf"), float("inf"), float("inf"), False))
            continue
        rel = diff / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
        needed = float(np.max(diff - tolerance.rtol * np.abs(ref)).clip(min=0.0))
        results.append(
            OutputComparison(
                name,
                float(diff.max()),
                float(rel.max()),
                float(diff.mean()),
                needed,
                needed <= tolerance.atol,
            )
        )
    return results


def comparisons_as_dict(results: list[OutputComparison]) -> list[dict]:
    return [asdict(r) for r in results]
