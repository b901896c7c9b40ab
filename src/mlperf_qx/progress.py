"""Progress for steps that take more than a moment, so no long step runs in silence.

On a terminal: a transient spinner line naming the step, and a transient bar for counted loops.
When stderr is not a terminal (a CI log, ``2> run.log``, a job scheduler), the same progress is
written as plain lines instead, once a step has run QUIET_S seconds (short runs stay silent, so a
failing run still ends in its one ``error:`` line): a line naming the step and then one every
LOG_EVERY_S seconds; for counted loops one line per tenth of the work or per LOG_EVERY_S seconds,
with the elapsed time and an estimate of what is left. Disabled for --json output.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

_STDERR = Console(stderr=True)
QUIET_S = 10.0
LOG_EVERY_S = 30.0


def _log(line: str) -> None:
    print(f"qx: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(description: str, enabled: bool = True):
    if not enabled:
        yield
        return
    if not sys.stderr.isatty():
        with _StepLog(description):
            yield
        return
    with _STDERR.status(f"{description}…", spinner="dots"):
        yield


def progress_bar(enabled: bool = True):
    """A transient bar for a counted loop (samples, trials); log lines when stderr is not a terminal."""
    if enabled and not sys.stderr.isatty():
        return LogProgress()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=not enabled)


class _StepLog:
    """A step's log lines from a timer thread: after QUIET_S, then every LOG_EVERY_S, and a last
    line with its duration if it said anything at all."""

    def __init__(self, description: str):
        self.description, self.started, self.spoke = description, time.monotonic(), False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_StepLog":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        if self.spoke:
            _log(f"{self.description}: done in {time.monotonic() - self.started:.0f} s")

    def _run(self) -> None:
        wait = QUIET_S
        while not self.stopped.wait(wait):
            _log(f"{self.description}… ({time.monotonic() - self.started:.0f} s so far)")
            self.spoke, wait = True, LOG_EVERY_S


class LogProgress:
    """``rich.progress.Progress``'s add_task/advance, as log lines (see the module docstring)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        for task in self.tasks.values():
            if task["logged"] and task["done"] != task["logged"]:
                self._line(task)

    def add_task(self, description: str, total: float | None = None) -> int:
        task_id = len(self.tasks)
        now = self.clock()
        self.tasks[task_id] = {"description": description, "total": total, "done": 0, "logged": 0,
                               "started": now, "last": now}
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        task = self.tasks[task_id]
        task["done"] += advance
        total, now = task["total"], self.clock()
        if now - task["started"] < QUIET_S:
            return
        tenth = total / 10 if total else None
        if not task["logged"] or (tenth and task["done"] - task["logged"] >= tenth) or now - task["last"] >= LOG_EVERY_S:
            self._line(task)

    def _line(self, task: dict) -> None:
        now = self.clock()
        elapsed, done, total = now - task["started"], task["done"], task["total"]
        if total:
            left = elapsed / done * (total - done) if done else float("nan")
            _log(f"{task['description']}: {done:g}/{total:g} ({100 * done / total:.0f}%), {elapsed:.0f} s elapsed, "
                 f"about {left:.0f} s left")
        else:
            _log(f"{task['description']}: {done:g} done, {elapsed:.0f} s elapsed")
        task["logged"], task["last"] = done, now


class Stopwatch:
    """Wall seconds per named phase (a phase entered twice adds up), for the summary a user reads
    to see where a long run went. A phase entered inside another pauses the outer one, so the
    phases add up to the wall time."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._running: list[list] = []  # [name, started] of the open phases, innermost last

    @contextlib.contextmanager
    def phase(self, name: str):
        self._credit_innermost()
        self._running.append([name, time.perf_counter()])
        try:
            yield
        finally:
            self._credit_innermost()
            self._running.pop()
            if self._running:  # the outer phase resumes now
                self._running[-1][1] = time.perf_counter()

    def _credit_innermost(self) -> None:
        if self._running:
            now = time.perf_counter()
            name, started = self._running[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - started
            self._running[-1][1] = now

    def describe(self) -> str:
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        return f"{phases} (total {sum(self.seconds.values()):.1f} s)"
