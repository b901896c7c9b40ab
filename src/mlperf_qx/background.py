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
