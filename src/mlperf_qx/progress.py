"""Progress for steps that take more than a moment: a transient spinner line on stderr naming
the step and its elapsed time, so no long step runs in silence. Disabled for --json output."""

from __future__ import annotations

import contextlib
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

_STDERR = Console(stderr=True)


@contextlib.contextmanager
def step(description: str, enabled: bool = True):
    if not enabled or not sys.stderr.isatty():
        yield
        return
    with _STDERR.status(f"{description}…", spinner="dots"):
        yield


def progress_bar(enabled: bool = True) -> Progress:
    """A transient bar for a counted loop (samples, trials)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=not enabled)


class Stopwatch:
    """Wall seconds per named phase (a phase entered twice adds up), for the summary a user reads
    to see where a long run went."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def describe(self) -> str:
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        return f"{phases} (total {sum(self.seconds.values()):.1f} s)"
