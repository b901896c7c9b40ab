"""Progress for steps that take more than a moment: a transient spinner line on stderr naming
the step and its elapsed time, so no long step runs in silence. Disabled for --json output."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console

_STDERR = Console(stderr=True)


@contextlib.contextmanager
def step(description: str, enabled: bool = True):
    if not enabled or not sys.stderr.isatty():
        yield
        return
    with _STDERR.status(f"{description}…", spinner="dots"):
        yield
