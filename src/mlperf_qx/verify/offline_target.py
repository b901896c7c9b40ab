"""What LoadGen is told to expect in Offline, so a run lasts mlperf.conf's minimum and not much more.

LoadGen's arithmetic (loadgen/test_settings_internal.cc, LoadGen 6.0.17): an Offline performance
run is ONE query of ``max(min_query_count, kSlack x min_duration x offline_expected_qps)`` samples,
kSlack = 1.1; the run is VALID only if its last sample completes after min_duration
(results.cc, ``MinDurationMet``: ``max_latency >= min_duration``). So a run lasts
``1.1 x min_duration x expected / rate`` at the rate the SUT actually sustains: an expectation
below rate / 1.1 ends it before min_duration (INVALID, and ten minutes lost), one far above it runs
for as long again. Erring, qx errs on the long side: a run that is too long is only slow.

The rate is measured by LoadGen probe windows of the same SUT (batch, threads, LoadGen's own
threads), and a loaded machine only ever slows a window down, so the FASTEST window is the
closest to what the SUT can do; the run is planned to last ``overrun x min_duration`` at that
rate. The spread of the windows says how noisy the machine is, and widens the overrun: a machine
whose windows differ by 1.4x may well run the whole test 1.4x faster than its slowest window.
"""

from __future__ import annotations

# loadgen/test_settings_internal.cc, TestSettingsInternal: `constexpr double kSlack = 1.1;`.
LOADGEN_OFFLINE_SLACK = 1.1
# An official run is planned to last 1.2 x min_duration (720 s of 600) at the fastest probe window's
# rate: it still meets min_duration if the whole run is up to 20 % faster than that window.
OFFICIAL_OVERRUN = 1.2
# A windows spread beyond this does not widen the overrun further: a stall in one window (another
# process's burst) must not plan a run three times min_duration.
MAX_OVERRUN = 2.0
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


def planned_overrun(window_rates: list[float], least: float) -> float:
    """``least``, widened to the spread of the windows (fastest / slowest) up to MAX_OVERRUN."""
    return max(least, min(MAX_OVERRUN, max(window_rates) / min(window_rates)))


def offline_expected_qps(window_rates: list[float], least_overrun: float) -> float:
    """The ``offline_expected_qps`` whose run lasts ``planned_overrun`` x min_duration at the fastest
    window's rate (never less than min_duration at any rate up to that overrun x the fastest)."""
    if not window_rates or min(window_rates) <= 0:
        raise ValueError(f"probe rates must be positive, got {window_rates}")
    return max(window_rates) * planned_overrun(window_rates, least_overrun) / LOADGEN_OFFLINE_SLACK
