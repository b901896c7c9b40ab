"""Choosing a clipping threshold from a histogram of |x|: percentile, entropy (KL) and MSE.

Each search returns the number of leading bins kept, ``i``; the threshold is ``i * width``.
The numba kernels evaluate every candidate in parallel; each candidate is computed by the same
sequential arithmetic as the numpy reference, so the chosen bin is the same (the divergence
values agree to float rounding; exact ties resolve to the smallest candidate in both).
"""

from __future__ import annotations

import numba
import numpy as np

QUANT_LEVELS = 128  # positive int8 levels, 0..127, as in TensorRT's entropy calibration
_EPS = 1e-10


# ---- percentile ------------------------------------------------------------------------------

@numba.njit(cache=True)
def _percentile_bins(hist: np.ndarray, fraction: float) -> int:
    total = 0
    for k in range(hist.size):
        total += hist[k]
    target = fraction * total
    running = 0
    for k in range(hist.size):
        running += hist[k]
        if running >= target:
            return k + 1
    return hist.size


def percentile_bins(hist: np.ndarray, percentile: float) -> int:
    return int(_percentile_bins(hist, percentile / 100.0))


def percentile_bins_reference(hist: np.ndarray, percentile: float) -> int:
    cumulative = np.cumsum(hist)
    return int(np.searchsorted(cumulative, (percentile / 100.0) * cumulative[-1], side="left")) + 1


# ---- entropy (KL divergence) ----------------------------------------------------------------

@numba.njit(cache=True)
def _kl_for(hist: np.ndarray, kept: int) -> float:
    """KL(P || Q): P = first ``kept`` bins with outliers folded into the last; Q = P squeezed
    into 128 levels and expanded back over the non-empty bins."""
    outliers = 0.0
    for k in range(kept, hist.size):
        outliers += hist[k]
    p = np.empty(kept)
    p_total = 0.0
    for k in range(kept):
        p[k] = hist[k]
    p[kept - 1] += outliers
    for k in range(kept):
        p_total += p[k]
    q = np.zeros(kept)
    per_level = kept // QUANT_LEVELS
    for level in range(QUANT_LEVELS):
        start = level * per_level
        stop = kept if level == QUANT_LEVELS - 1 else start + per_level
        mass = 0.0
        nonzero = 0
        for k in range(start, stop):
            mass += hist[k]
            if hist[k] != 0:
                nonzero += 1
        if nonzero:
            share = mass / nonzero
            for k in range(start, stop):
                if hist[k] != 0:
                    q[k] = share
    q_total = 0.0
    for k in range(kept):
        q_total += q[k]
    if p_total == 0.0 or q_total == 0.0:
        return np.inf
    divergence = 0.0
    for k in range(kept):
        if p[k] > 0.0:
            pk = p[k] / p_total
            qk = q[k] / q_total if q[k] > 0.0 else _EPS
            divergence += pk * np.log(pk / qk)
    return divergence


@numba.njit(parallel=True, cache=True)
def _kl_all(hist: np.ndarray, first: int) -> np.ndarray:
    count = hist.size - first + 1
    out = np.empty(count)
    for j in numba.prange(count):
        out[j] = _kl_for(hist, first + j)
    return out


def entropy_divergences(hist: np.ndarray) -> tuple[int, np.ndarray]:
    first = min(QUANT_LEVELS, hist.size)
    return first, _kl_all(hist, first)


def entropy_bins(hist: np.ndarray) -> int:
    first, divergences = entropy_divergences(hist)
    return first + int(np.argmin(divergences))


def entropy_divergences_reference(hist: np.ndarray) -> tuple[int, np.ndarray]:
    first = min(QUANT_LEVELS, hist.size)
    hist = hist.astype(np.float64)
    values = []
    for kept in range(first, hist.size + 1):
        p = hist[:kept].copy()
        p[-1] += hist[kept:].sum()
        q = np.zeros(kept)
        per_level = kept // QUANT_LEVELS
        for level in range(QUANT_LEVELS):
            start = level * per_level
            stop = kept if level == QUANT_LEVELS - 1 else start + per_level
            chunk = hist[start:stop]
            nonzero = chunk != 0
            if nonzero.any():
                q[start:stop][nonzero] = chunk.sum() / nonzero.sum()
        if p.sum() == 0 or q.sum() == 0:
            values.append(np.inf)
            continue
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        qn = np.where(q > 0, qn, _EPS)
        values.append(float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask]))))
    return first, np.array(values)


def entropy_bins_reference(hist: np.ndarray) -> int:
    first, divergences = entropy_divergences_reference(hist)
    return first + int(np.argmin(divergences))


# ---- mean squared error ----------------------------------------------------------------------

@numba.njit(cache=True)
def _mse_for(hist: np.ndarray, kept: int) -> float:
    """Expected squared error of int8 quantization at threshold kept*w, in units of w^2:
    every value is placed at its bin centre."""
    step = kept / 127.0
    error = 0.0
    for k in range(hist.size):
        if hist[k] == 0:
            continue
        centre = k + 0.5
        level = np.rint(centre / step)
        if level > 127.0:
            level = 127.0
        diff = centre - level * step
        error += hist[k] * diff * diff
    return error


@numba.njit(parallel=True, cache=True)
def _mse_all(hist: np.ndarray) -> np.ndarray:
    out = np.empty(hist.size)
    for j in numba.prange(hist.size):
        out[j] = _mse_for(hist, j + 1)
    return out


def mse_errors(hist: np.ndarray) -> np.ndarray:
    return _mse_all(hist)


def mse_bins(hist: np.ndarray) -> int:
    return 1 + int(np.argmin(_mse_all(hist)))


def mse_errors_reference(hist: np.ndarray) -> np.ndarray:
    centres = np.arange(hist.size) + 0.5
    counts = hist.astype(np.float64)
    errors = []
    for kept in range(1, hist.size + 1):
        step = kept / 127.0
        levels = np.minimum(np.rint(centres / step), 127.0)
        errors.append(float(np.sum(counts * (centres - levels * step) ** 2)))
    return np.array(errors)


def mse_bins_reference(hist: np.ndarray) -> int:
    return 1 + int(np.argmin(mse_errors_reference(hist)))
