"""Batches measured on several threads at once and absorbed in their order.

Calibration runs onnxruntime on a batch and then reduces its outputs (bins them, or reads the
statistics the graph computed). One session run by several threads, each on a batch of its own
and on one core, keeps every core busy without onnxruntime's intra-op thread pool, whose threads
wait on each other at every operator of a batch-1 run (ResNet-50 on 2 cores: 92 ms of CPU per
sample on one thread, 139-153 ms on two). What the observers keep must still not depend on the
threads: each batch's result is absorbed in batch order, as one thread would have, and the first
failure in that order is the one raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

Batch = tuple[list[str], dict]


def run_in_order(batches: Iterator[Batch], workers: int, measure: Callable[[int, list[str], dict], Any],
                 absorb: Callable[[int, list[str], Any], None]) -> None:
    """``measure(worker, ids, feeds)`` on ``workers`` threads, then ``absorb(worker, ids, result)``
    in batch order, on the thread that measured the batch before it takes the next one (so what
    a worker's result points into, its output buffers, is still intact). An exception, from
    reading a batch, measuring or absorbing it, stops the pass at that batch and is raised here
    once the threads are done; the batches before it are absorbed, none after it."""
    order = _Order(batches)
    threads = [threading.Thread(target=order.work, args=(w, measure, absorb), name=f"qx-calibration-{w}", daemon=True)
               for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if order.failure is not None:
        raise order.failure


class _Order:
    def __init__(self, batches: Iterator[Batch]) -> None:
        self._batches = batches
        self._taken = 0  # batches handed out
        self._absorbed = 0  # batches absorbed: the next to absorb
        self._source = threading.Lock()
        self._turn = threading.Condition()
        self.failure: BaseException | None = None

    def _take(self) -> tuple[int, Batch | None, BaseException | None] | None:
        with self._source:
            if self.failure is not None:
                return None
            index = self._taken
            try:
                batch = next(self._batches)
            except StopIteration:
                return None
            except BaseException as exc:  # a sample that cannot be read: raised in its turn
                batch, error = None, exc
            else:
                error = None
            self._taken += 1
            return index, batch, error

    def work(self, worker: int, measure, absorb) -> None:
        while (taken := self._take()) is not None:
            index, batch, error = taken
            result = None
            if error is None:
                try:
                    result = measure(worker, *batch)
                except BaseException as exc:
                    error = exc
            with self._turn:
                self._turn.wait_for(lambda: self._absorbed == index or self.failure is not None)
                if self.failure is not None:
                    return
                try:
                    if error is not None:
                        raise error
                    absorb(worker, batch[0], result)
                except BaseException as exc:
                    self.failure = exc
                else:
                    self._absorbed += 1
                self._turn.notify_all()
            if error is not None:
                return
