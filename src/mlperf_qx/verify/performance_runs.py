"""The LoadGen performance runs of reference and candidate: several per model, the two models
alternating, each model's result the run with the median figure.

WHY: a comparison of two throughputs measured one after the other compares two moments of the
machine as much as two models. On a 2-core VM, one model's 1-second Offline runs ranged over
+-15 % from one run to the next, and the digits candidate/reference ratio over single runs went
from 0.90 to 1.36 while the int8 model was the faster in every side-by-side timing. Alternating
(reference, candidate, candidate, reference, reference, candidate...) puts both models in every
stretch of time, and the median run is a real LoadGen run (its logs go to the submission) that one
lucky or unlucky second does not decide.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..progress import step
from .loadgen_harness import Backend, run_loadgen
from .loadgen_settings import LoadGenConfig
from .results import SCORED_PERCENTILE, LoadGenRun

QUICK_RUNS = 3  # default per model for a quick check; a full-length (600 s) run is run once


def default_runs(quick: bool) -> int:
    return QUICK_RUNS if quick else 1


def alternating_order(roles: list[str], runs: int) -> list[str]:
    """Round k runs ``roles`` in order when k is even and reversed when odd (A B, B A, A B...), so
    neither model always runs first and a drift of the machine falls on both alike."""
    order: list[str] = []
    for round_number in range(runs):
        order += roles if round_number % 2 == 0 else roles[::-1]
    return order


def run_performance(backends: dict[str, Backend], samples, encode, out: Path,
                    config: LoadGenConfig) -> dict[str, list[LoadGenRun]]:
    """``config.performance_runs`` LoadGen performance runs of each backend into
    ``out/<role>/performance/run_<n>``. A model's first run measures its speed for LoadGen's
    settings (and Offline's probe windows); its repeats reuse those settings as they were."""
    runs: dict[str, list[LoadGenRun]] = {role: [] for role in backends}
    count = config.performance_runs
    drop_stale_runs(out, list(backends), count)
    for role in alternating_order(list(backends), count):
        done = runs[role]
        number = len(done) + 1
        label = f" {number}/{count}" if count > 1 else ""
        with step(f"LoadGen performance run{label} of the {role} ({config.scenario})"):
            done.append(run_loadgen(backends[role], samples, encode, "performance",
                                    out / role / "performance" / f"run_{number}", config,
                                    settings=done[0].settings if done else None))
    return runs


def drop_stale_runs(out: Path, roles: list[str], count: int) -> None:
    """Removes ``<role>/performance/run_<n>`` for n > ``count``: a verify into the same --out with
    more runs left them, and the folder must show the runs the report lists."""
    for role in roles:
        for stale in (out / role / "performance").glob("run_*"):
            if stale.is_dir() and stale.name[4:].isdigit() and int(stale.name[4:]) > count:
                shutil.rmtree(stale)


def median_run(runs: list[LoadGenRun]) -> LoadGenRun:
    """The run with the median scored figure; of an even count, the worse of the two middle ones.
    A run without a figure counts as the worst."""

    def worse_first(run: LoadGenRun) -> tuple[int, float]:
        value = run.scored_figure
        if value is None:
            return (0, 0.0)
        return (1, -value if run.scenario in SCORED_PERCENTILE else value)

    ordered = sorted(runs, key=worse_first)
    return ordered[(len(ordered) - 1) // 2]
