"""What LoadGen is told to expect in Offline, so a run lasts mlperf.conf's minimum and not much more.

LoadGen's arithmetic (loadgen/test_settings_internal.cc, LoadGen 6.0.17): an Offline performance
run is ONE query of ``max(min_query_count, kSlack x min_duration x offline_expected_qps)`` samples,
kSlack = 1.1; the run is VALID only if its last sample completes after min_duration
(results.cc, ``MinDurationMet``: ``max_latency >= min_duration``). So a run lasts
``1.1 x min_duration x expected / rate`` at the rate the SUT actually sustains: an expectation
below rate / 1.1 ends it before min_duration (INVALID, and ten minutes lost), one far above it runs
for as long again. Erring, qx errs on the long side: a run that is too long is only slow.

The rate is measured by LoadGen probe windows of the same SUT (batch, threads, LoadGen's own
threads). The run is planned so that it still lasts min_duration if the whole of it goes as fast as
the fastest window, or 20 % faster than the median window, whichever is faster: on a steady machine
(windows within a few %) it lasts about 1.2 x min_duration; on a loaded one, whose windows differ
because other processes come and go, it errs long. A fastest window more than twice
the median (one window in a lull) counts as twice the median, so a lull does not plan a run of
several times min_duration. (The fastest window times the spread, tried first, planned a 39-minute
run on this machine: both grow with the same lull.)
"""

from __future__ import annotations

from statistics import median

# loadgen/test_settings_internal.cc, TestSettingsInternal: `constexpr double kSlack = 1.1;`.
LOADGEN_OFFLINE_SLACK = 1.1
# An official run is planned to last min_duration at 1.2 x the median window's rate (720 s of 600
# at the median rate itself), or at the fastest window's rate if that is higher.
OFFICIAL_OVERRUN = 1.2
# The fastest window counts at most as this multiple of the median (a lull, not the SUT's speed).
MAX_FASTEST_OVER_MEDIAN = 2.0
# A quick run of about a second varies far more than a 600 s one (2x between runs of a tiny model on
# a loaded machine), and running past its minimum costs little: 2.2 x min_duration at the probe rate.
QUICK_OVERRUN = 2.2
# Probe windows: one for a quick run (it costs as much as the run), five for an official one (five
# seconds before a ten-minute run).
QUICK_WINDOWS, OFFICIAL_WINDOWS = 1, 5


def offline_sample_count(expected_qps: float, min_duration_s: float, min_query_count: int = 1) -> int:
    """The samples LoadGen puts in an Offline run's one query (``effective_samples_per_query``)."""
    return max(min_query_count, int(LOADGEN_OFFLINE_SLACK * min_duration_s * expected_qps))


def offline_run_seconds(expected_qps: float, rate: float, min_duration_s: float, min_query_count: int = 1) -> float:
    """How long an Offline run lasts when the SUT answers ``rate`` samples/s throughout."""
    return offline_sample_count(expected_qps, min_duration_s, min_query_count) / rate


def fastest_planned_rate(window_rates: list[float], least_overrun: float) -> float:
    """The fastest whole-run rate at which the run still lasts min_duration: ``least_overrun`` x the
    median window, or the fastest window (at most MAX_FASTEST_OVER_MEDIAN x the median) if that is faster."""
    if not window_rates or min(window_rates) <= 0:
        raise ValueError(f"probe rates must be positive, got {window_rates}")
    middle = median(window_rates)
    return max(least_overrun * middle, min(MAX_FASTEST_OVER_MEDIAN * middle, max(window_rates)))


def offline_expected_qps(window_rates: list[float], least_overrun: float) -> float:
    """The ``offline_expected_qps`` whose run lasts exactly min_duration at ``fastest_planned_rate``
    (LoadGen's kSlack is taken out: it is part of the plan, not extra margin)."""
    return fastest_planned_rate(window_rates, least_overrun) / LOADGEN_OFFLINE_SLACK
