"""Work started now on a thread of its own, its result (or its error) taken where it is needed."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_background(call: Callable[..., T], *args, name: str = "qx-background") -> Future[T]:
    """``call(*args)`` started on a new thread; ``.result()`` waits for it and raises what it raised.
    WHY: onnxruntime and numpy release the GIL, so a session built or a model copied here overlaps
    the caller's own work on another core."""
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    future = worker.submit(call, *args)
    worker.shutdown(wait=False)  # the submitted call still runs: nothing waits for it here
    return future


def released_in_background(held: list) -> None:
    """Empties ``held`` on a thread of its own, so that what only it still holds is freed there.
    The caller passes the last references it has (and keeps none). WHY: unmapping large buffers
    written in full is not free (three 67 MB calibration arenas: 33 ms), and the caller's next
    step need not wait for it."""
    in_background(held.clear, name="qx-release")


def together(*calls: Callable[[], T]) -> list[T]:
    """The calls' results in order, each call on a thread of its own. WHY: onnxruntime releases the
    GIL while it builds a session or runs, so the sessions a check needs are built at once; and a
    call that waits for work of its own (a sensitivity halving waiting for its trials) holds no
    worker a bounded pool would need for that work. Each call is independent: the same answers."""
    if len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]
