"""Work split shared by the parallel kernels: fixed work items keep every result independent of
thread scheduling (each item is reduced alone, then items are combined in order).

Imported before any parallel kernel runs (``kernels/__init__``): it starts numba's threads with
OpenMP's passive wait policy. GNU OpenMP (numba's threading layer here) otherwise keeps its
threads spinning after every parallel region, and waiting for a thread spins too: after each
calibration batch a spinning thread took a core from onnxruntime's next run, and on a loaded
machine a parallel region whose other thread was descheduled cost 20-70 ms of spinning where the
work took under 1 ms (measured here: an empty 16-value histogram call, 70 ms wall and 47 ms CPU
with 2 threads against 0.13 ms passive). A sleeping thread is woken in microseconds, and each
kernel call here is one or two parallel regions of milliseconds of work.
"""

import os

import numba
import numpy as np

CHUNK = 1 << 18  # elements per work item (1 MiB of float32)
# Below this many values (16 MiB of float32) a one-pass kernel (absmax) runs on the calling
# thread. `python benchmarks/bench_kernels.py --parallel-threshold` on this 2-core machine under
# load (passive waits): the calling thread took 0.19 ms for 1 M values, 0.5 ms for 2 M and 1.1 ms
# for 4 M, the parallel region 0.8, 7.5 and 19 ms (its second thread must first be scheduled).
# Every weight tensor of ResNet-50 and mpnet (at most 2.4 M values) is below it; larger
# tensors are memory-bound, where a second thread can add bandwidth on a quiet machine.
PARALLEL_MIN_VALUES = 1 << 22


def _start_threads_with_passive_waits() -> None:
    """Starts numba's thread pool (loading libgomp, which reads its settings then) with
    OMP_WAIT_POLICY=PASSIVE unless the user set a policy; the variable is removed again at once,
    so that subprocesses and other OpenMP runtimes (torch ships its own) keep their defaults."""
    if "OMP_WAIT_POLICY" in os.environ:
        numba.get_num_threads()
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        numba.get_num_threads()  # launches the threads: the threading layer's libraries load now
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


_start_threads_with_passive_waits()


def work_items(offsets: np.ndarray, lengths: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, owner segment) of each fixed-size work item, in segment order. Fixed items
    keep every result independent of how threads are scheduled. (``chunk``: smaller in tests, so
    that small segments span several items.)"""
    offsets, lengths = np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)
    pieces = np.maximum(1, -(-lengths // chunk))
    owners = np.repeat(np.arange(lengths.size), pieces)
    within = np.arange(owners.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    starts = offsets[owners] + within * chunk
    stops = np.minimum(starts + chunk, offsets[owners] + lengths[owners])
    return starts.astype(np.int64), stops.astype(np.int64), owners.astype(np.int64)


def thread_shares(starts: np.ndarray, stops: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The work items of each thread: ``order[bounds[t]:bounds[t + 1]]`` for thread t (a kernel runs
    a prange over the threads), about the same number of values each. numba splits a prange into
    equal counts of iterations, but items are not equal (a small tensor is one short item): split
    by count, ResNet-50's 105 items gave one thread 57 % of the values. Items are dealt largest
    first, each to the least loaded thread. Only which thread bins an item changes: every item is
    still reduced alone and items are combined in order, so results do not depend on it. (Not
    computed inside the kernels: numba cannot cache a kernel that asks for its thread count.)"""
    threads = max(1, min(threads or numba.get_num_threads(), starts.size))
    sizes = stops - starts
    load = [0] * threads
    owner = np.empty(sizes.size, dtype=np.int64)
    for j in np.argsort(-sizes, kind="stable").tolist():
        t = load.index(min(load))
        owner[j] = t
        load[t] += int(sizes[j])
    order = np.argsort(owner, kind="stable").astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=threads))]).astype(np.int64)
    return order, bounds


@numba.njit(inline="always")
def nan_aware_max(m, v):
    return v if (v > m or v != v) else m  # v != v keeps a NaN visible (callers reject it by name)
