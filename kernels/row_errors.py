"""Per-row error sums of an approximate layer output against the exact one (smoothquant's scorer).

For each row r: sum_j (a - e)**2, sum_j a*e and sum_j a*a, added into ``noise``, ``dot`` and
``power``, where a is float64(products) * scale (+ side): the products are the int8 MatMul's
exact int32 sums (or any float32 output, scale 1), the scale s_x * s_w (exact in float64), the
side the split-off channels' FP32 side path. One pass over the two matrices instead of numpy's
six (each through a fresh float64 temporary of the whole matrix), and no temporaries at all.

The sums are taken in exactly numpy's pairwise order (``np.add.reduce`` over a contiguous row:
eight interleaved partial sums in blocks of up to 128, halves above that), so the figures equal
the numpy reference's bit for bit and smoothquant's choices -- comparisons of these sums -- do not
depend on which of the two computed them. Without the GIL: smoothquant scores groups on several
threads.
"""

from __future__ import annotations

import numba
import numpy as np

PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE
UNROLL = 8


@numba.njit(cache=True, nogil=True, inline="always")
def _value(a, k, scale, side):
    """The approximate output's element k in float64: product times scale, plus the side path
    (``side`` None: none; numba compiles that case without the branch)."""
    x = np.float64(a[k]) * scale
    if side is not None:
        x += side[k]
    return x


@numba.njit(cache=True, nogil=True)
def _block(a, e, start, n, r, scale, side):
    """(sum (a-e)**2, sum a*e, sum a*a) over a[start:start + n], n <= PAIRWISE_BLOCK, in numpy's
    order; ``r`` (3 x UNROLL) is scratch for the interleaved partial sums (24 locals instead
    measured 3.6x slower: LLVM spills them)."""
    if n < UNROLL:
        return _sequential(a, e, start, start + n, 0.0, 0.0, 0.0, scale, side)
    for j in range(UNROLL):
        x = _value(a, start + j, scale, side)
        d = x - e[start + j]
        r[0, j], r[1, j], r[2, j] = d * d, x * e[start + j], x * x
    i = UNROLL
    while i < n - n % UNROLL:
        for j in range(UNROLL):
            x = _value(a, start + i + j, scale, side)
            d = x - e[start + i + j]
            r[0, j] += d * d
            r[1, j] += x * e[start + i + j]
            r[2, j] += x * x
        i += UNROLL
    s0 = ((r[0, 0] + r[0, 1]) + (r[0, 2] + r[0, 3])) + ((r[0, 4] + r[0, 5]) + (r[0, 6] + r[0, 7]))
    s1 = ((r[1, 0] + r[1, 1]) + (r[1, 2] + r[1, 3])) + ((r[1, 4] + r[1, 5]) + (r[1, 6] + r[1, 7]))
    s2 = ((r[2, 0] + r[2, 1]) + (r[2, 2] + r[2, 3])) + ((r[2, 4] + r[2, 5]) + (r[2, 6] + r[2, 7]))
    return _sequential(a, e, start + i, start + n, s0, s1, s2, scale, side)


@numba.njit(cache=True, nogil=True)
def _sequential(a, e, begin, end, s0, s1, s2, scale, side):
    """The three sums continued one element at a time over a[begin:end] (numpy's short blocks and
    the tail after its unrolled loop)."""
    for k in range(begin, end):
        x = _value(a, k, scale, side)
        d = x - e[k]
        s0 += d * d
        s1 += x * e[k]
        s2 += x * x
    return s0, s1, s2


MAX_DEPTH = 64  # halving from any int64 length reaches a block long before this


@numba.njit(cache=True, nogil=True)
def _pairwise(a, e, first, n, r, frames, sums, scale, side):
    """numpy's pairwise recursion over a[first:first + n] (halves, split at a multiple of UNROLL,
    left + right), run on an explicit stack: numba cannot load a recursive function back from its
    on-disk cache."""
    depth, values = 0, 0
    frames[0, 0], frames[0, 1], frames[0, 2] = first, n, 0  # (start, length, children visited)
    while depth >= 0:
        start, length, visited = frames[depth, 0], frames[depth, 1], frames[depth, 2]
        half = length // 2
        half -= half % UNROLL
        if length <= PAIRWISE_BLOCK:
            sums[values, 0], sums[values, 1], sums[values, 2] = _block(a, e, start, length, r, scale, side)
            values += 1
            depth -= 1
        elif visited < 2:
            frames[depth, 2] = visited + 1
            depth += 1
            frames[depth, 0] = start if visited == 0 else start + half
            frames[depth, 1] = half if visited == 0 else length - half
            frames[depth, 2] = 0
        else:
            values -= 1
            for k in range(3):
                sums[values - 1, k] = sums[values - 1, k] + sums[values, k]
            depth -= 1
    return sums[0, 0], sums[0, 1], sums[0, 2]


@numba.njit(cache=True, nogil=True)
def _accumulate(approximate, exact, noise, dot, power, scale, side, first, count):
    scratch = np.empty((3, UNROLL))
    frames = np.empty((MAX_DEPTH, 3), np.int64)
    partial = np.empty((MAX_DEPTH + 1, 3))
    for row in range(approximate.shape[0]):
        if side is None:  # pruned where numba compiles for no side path
            sums = _pairwise(approximate[row], exact[row], first, count, scratch, frames, partial, scale, None)
        else:
            sums = _pairwise(approximate[row], exact[row], first, count, scratch, frames, partial, scale, side[row])
        noise[row] += sums[0]
        dot[row] += sums[1]
        power[row] += sums[2]


def accumulate_row_errors(approximate: np.ndarray, exact: np.ndarray, noise: np.ndarray, dot: np.ndarray,
                          power: np.ndarray, scale: float = 1.0, side: np.ndarray | None = None,
                          columns: slice = slice(None)) -> None:
    """``approximate``: float32 or int32 products (R x N), ``exact`` and ``side``: float64 (R x N),
    all C-contiguous; adds each row's sums of a = approximate * scale (+ side) against ``exact``
    over ``columns`` (a unit-step slice: one weight of a group's MatMul, whose weights lie side by
    side) into the float64 vectors ``noise``, ``dot``, ``power`` (length R) in place. The matrices
    whole, not column views: numba compiles a strided view's loop several times slower."""
    first, stop, step = columns.indices(approximate.shape[1])
    if step != 1 or not all(m.flags.c_contiguous for m in (approximate, exact, exact if side is None else side)):
        raise ValueError("accumulate_row_errors: C-contiguous matrices and a unit-step column slice")
    _accumulate(approximate, exact, noise, dot, power, np.float64(scale), side, first, max(stop - first, 0))


def accumulate_row_errors_reference(approximate: np.ndarray, exact: np.ndarray, noise: np.ndarray,
                                    dot: np.ndarray, power: np.ndarray, scale: float = 1.0,
                                    side: np.ndarray | None = None, columns: slice = slice(None)) -> None:
    wide = approximate[:, columns].astype(np.float64) * np.float64(scale)
    exact = np.ascontiguousarray(exact[:, columns])
    if side is not None:
        wide += side[:, columns]
    noise += np.sum((wide - exact) ** 2, axis=1)
    dot += np.sum(wide * exact, axis=1)
    power += np.sum(wide * wide, axis=1)
