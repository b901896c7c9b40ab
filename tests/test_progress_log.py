"""Progress reaches a log when stderr is not a terminal (a CI job, ``2> run.log``)."""

from __future__ import annotations

import time

from mlperf_qx import progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_counted_loop_logs_tenths_with_an_estimate_once_it_runs_long(capsys, monkeypatch):
    clock = _Clock()
    with progress.LogProgress(clock) as bar:
        task = bar.add_task("measuring per-op sensitivity", total=20)
        for _ in range(20):
            clock.now += 1.0
            bar.advance(task)
    lines = capsys.readouterr().err.splitlines()
    # Silent for the first QUIET_S (10 s), then a line per tenth of the work (2 of 20 trials).
    assert lines[0] == "qx: measuring per-op sensitivity: 10/20 (50%), 10 s elapsed, about 10 s left"
    assert lines[-1] == "qx: measuring per-op sensitivity: 20/20 (100%), 20 s elapsed, about 0 s left"
    assert len(lines) == 6


def test_an_open_ended_loop_logs_every_interval(capsys, monkeypatch):
    clock = _Clock()
    with progress.LogProgress(clock) as bar:
        task = bar.add_task("searching", total=None)
        for _ in range(8):
            clock.now += 10.0
            bar.advance(task)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "qx: searching: 1 done, 10 s elapsed"
    assert lines[1] == "qx: searching: 4 done, 40 s elapsed"


def test_a_short_run_stays_silent_and_a_long_step_speaks(capsys, monkeypatch):
    with progress.step("loading"):
        pass
    assert capsys.readouterr().err == ""  # captured stderr is not a terminal; a short step says nothing
    monkeypatch.setattr(progress, "QUIET_S", 0.05)
    with progress.step("calibrating"):
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("qx: calibrating… (0 s so far)"), lines
    assert lines[-1] == "qx: calibrating: done in 0 s"


def test_nested_phases_add_up_to_the_wall_time():
    watch = progress.Stopwatch()
    started = time.perf_counter()
    with watch.phase("writing and checking"):
        time.sleep(0.05)
        with watch.phase("report"):
            time.sleep(0.05)
    wall = time.perf_counter() - started
    assert watch.seconds["report"] >= 0.05 and watch.seconds["writing and checking"] >= 0.05
    assert abs(sum(watch.seconds.values()) - wall) < 0.005  # nothing counted twice
