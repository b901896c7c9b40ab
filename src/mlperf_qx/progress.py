"""Progress for steps that take more than a moment: a transient spinner line on stderr naming
the step and its elapsed time, so no long step runs in silence. Disabled for --json output."""

from __future__ import annotations

import contextlib
import sys

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
