"""Ends verify with one line when the runtime stops answering.

A LoadGen test cannot be cancelled from Python: ``StartTest`` returns only when every query issued
has been completed, so a runtime that never returns from one inference (OpenVINO 2026.4 once
deadlocked two of its Offline workers; see ``backends._bridge_numpy_once``) leaves ``qx
verify-equivalence`` asleep for good, and a user's CI with it. The watchdog counts the time a run
has been inside the runtime without any run returning; past the limit it prints what hung and
ends the process (exit 3, an internal error, never a failed verification). Time with nothing in
the runtime (a Server run waiting for its next arrival) does not count, and a model shown to be
slow gets more: the limit is at least SLOWEST_MARGIN times the longest inference seen to return.
"""

from __future__ import annotations

import os
import sys
import threading
import time

DEFAULT_STALL_S = 600.0  # no inference returning for this long is a hang, not a slow model
EXIT_INTERNAL = 3  # errors.InternalError's code; the process ends from the watchdog's thread
SLOWEST_MARGIN = 10.0


class StallWatchdog:
    def __init__(self, what: str, limit_s: float = DEFAULT_STALL_S):
        self.what, self.limit_s = what, limit_s
        self.lock, self.inside, self.since, self.slowest = threading.Lock(), 0, time.monotonic(), 0.0
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    # Around each inference (called by the runtime's callers, on any thread)
    def entering(self) -> float:
        """Returns the token ``left`` takes: when this inference started."""
        with self.lock:
            now = time.monotonic()
            if self.inside == 0:
                self.since = now
            self.inside += 1
            return now

    def left(self, entered: float) -> None:
        with self.lock:
            now = time.monotonic()
            self.inside -= 1
            self.since = now
            self.slowest = max(self.slowest, now - entered)

    def stalled_for(self) -> float:
        with self.lock:
            return time.monotonic() - self.since if self.inside else 0.0

    def limit(self) -> float:
        with self.lock:
            return max(self.limit_s, SLOWEST_MARGIN * self.slowest)

    def __enter__(self) -> StallWatchdog:
        self.thread = threading.Thread(target=self._watch, name="qx-stall-watchdog", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stopped.wait(min(1.0, self.limit_s / 4)):
            limit = self.limit()
            if self.stalled_for() > limit:
                print(f"error: internal error: {self.what}: the runtime returned no answer for {limit:.0f} s "
                      "(a hang inside it, not a problem with your input); rerun, or use the other --backend, "
                      "or raise --stall-timeout for a model this slow", file=sys.stderr, flush=True)
                os._exit(EXIT_INTERNAL)  # StartTest cannot be interrupted; nothing else can end the run
