"""Was a LoadGen run what was asked for, and would MLPerf's submission checker accept it? The
checks are the checker's performance checks for the round qx targets
(``tools/submission/submission_checker/checks/performance_check.py``: loadgen_errors_check,
performance_sample_count_check, seeds_check, latency_check, min_query_count_check,
min_duration_check), with the benchmark's values from ``benchmarks.py``, plus LoadGen's own verdict.

In particular the checker's rules are not mlperf.conf's settings: an Offline run always logs
``effective_min_query_count`` 1 (one query), and the checker asks its *samples per query* to reach
the benchmark's figure (24576 for resnet); SingleStream, MultiStream and Server use early stopping,
so the checker asks ``early_stopping_met`` instead of a query count, and for Server the latency
bound early stopping used (``effective_target_latency_ns``) must be within the benchmark's.
"""

from __future__ import annotations

from .benchmarks import Benchmark
from .loadgen_settings import LoadGenConfig, official_settings
from .results import LoadGenRun

SEEDS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")
EARLY_STOPPING_SCENARIOS = ("Server", "SingleStream", "MultiStream")  # configuration.py:230-231
TEST_DURATION_MS = 600000  # constants.py:1495


def run_problem(run: LoadGenRun, role: str) -> str | None:
    """A run whose effective mode is not the requested one measured something else: fail loudly."""
    if run.effective_mode is None:
        return f"the {role} {run.mode} run left no effective_test_mode in {run.folder / 'mlperf_log_detail.txt'}"
    if run.effective_mode != run.requested_mode:
        cause = f" (audit config {run.audit_config})" if run.audit_config else ""
        return (f"the {role} {run.mode} run was asked for {run.requested_mode} but LoadGen ran "
                f"{run.effective_mode}{cause}")
    return None


def submission_problems(run: LoadGenRun, config: LoadGenConfig) -> list[str]:
    """Why a performance run is not valid for submission; empty when it is."""
    problems = []
    bench = config.benchmark
    if bench is None:
        problems.append("no --model-name: mlperf.conf's settings for an MLPerf benchmark were not applied")
    if config.quick is not None:
        official = official_settings(config.conf_model, config.scenario)
        quick, conf = _query_floors(config.scenario, run.detail, official.min_query_count)
        problems.append(f"a quick check (--run-length quick): minimum duration {config.quick.min_duration_ms} ms{quick} "
                        f"instead of mlperf.conf's {official.min_duration_ms} ms{conf}")
    problems += checker_problems(run, bench, config.scenario)
    if run.result_validity != "VALID":
        unmet = [key for key, value in run.summary.items() if key.endswith("satisfied") and value.upper() == "NO"]
        # Each unmet constraint with its own NO: "(A, B: NO)" read as if A were met.
        problems.append(f"LoadGen's result is {run.result_validity}" + (f" ({'; '.join(f'{k}: NO' for k in unmet)})"
                                                                         if unmet else ""))
    if run.audit_config:
        problems.append(f"an audit config ({run.audit_config}) changed the run: a compliance run, not a result")
    return problems


def _query_floors(scenario: str, detail: dict, official: int) -> tuple[str, str]:
    """The quick run's query floor as LoadGen applied it (its detail log's effective values) and
    mlperf.conf's, as text. An Offline run is one query (LoadGen's floor there is 1): its size is
    what the shortened run changed."""
    if scenario == "Offline":
        samples = detail.get("effective_samples_per_query")
        return (f" (one query of {samples} samples)" if samples is not None else ""), ""
    quick = detail.get("effective_min_query_count")
    return (f" and at least {quick} queries", f" and {official}") if quick is not None else ("", "")


def checker_problems(run: LoadGenRun, bench: Benchmark | None, scenario: str) -> list[str]:
    """The submission checker's performance checks, in its order, on one run's detail log."""
    log, problems = run.detail, []
    if log.errors:
        problems.append(f"LoadGen logged {len(log.errors)} error(s), e.g. {log.errors[0]}")
    if bench is not None and (log.get("effective_performance_sample_count") or 0) < bench.performance_sample_count:
        problems.append(f"performance_sample_count {log.get('effective_performance_sample_count')} < "
                        f"{bench.performance_sample_count} required for {bench.name}")
    official = official_settings("*", scenario)
    for seed in SEEDS:
        found, expected = log.get(f"effective_{seed}"), getattr(official, seed)
        if found != expected:
            problems.append(f"{seed} is {found}, mlperf.conf's is {expected}")
    if scenario in EARLY_STOPPING_SCENARIOS:
        if not log.get("early_stopping_met"):
            problems.append(f"early stopping condition not met ({log.get('early_stopping_result')})")
        bound = bench.server_latency_ns if bench is not None and scenario == "Server" else None
        if bound is not None and (log.get("effective_target_latency_ns") or 0) > bound:
            problems.append(f"target latency {log.get('effective_target_latency_ns')} ns > {bound} ns allowed")
    elif bench is not None:
        required = bench.min_queries.get(scenario)
        if required and (log.get("effective_min_query_count") or 0) < required:
            problems.append(f"effective_min_query_count {log.get('effective_min_query_count')} < {required} required")
        spq = bench.offline_samples_per_query
        if scenario == "Offline" and spq and (log.get("effective_samples_per_query") or 0) < spq:
            problems.append(f"samples per query {log.get('effective_samples_per_query')} < {spq} required "
                            f"for {bench.name} Offline")
    if (log.get("effective_min_duration_ms") or 0) < TEST_DURATION_MS:
        problems.append(f"effective_min_duration_ms {log.get('effective_min_duration_ms')} < {TEST_DURATION_MS} "
                        "required")
    return problems
