"""Was a LoadGen run what was asked for, and would MLPerf's submission checker accept it? The
checks follow the checker's performance checks (seeds, minimum duration and query count, result
validity, LoadGen errors), measured against LoadGen's built-in mlperf.conf."""

from __future__ import annotations

from .loadgen_settings import LoadGenConfig, official_settings
from .results import LoadGenRun

SEEDS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")


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
    official = official_settings(config.conf_model, config.scenario)
    problems = []
    if config.model_name is None:
        problems.append("no --model-name: mlperf.conf's settings for an MLPerf benchmark were not applied")
    if config.quick is not None:
        problems.append(f"a quick check (--run-length quick): minimum duration {config.quick.min_duration_ms} ms "
                        f"and {config.quick.min_query_count} queries instead of mlperf.conf's "
                        f"{official.min_duration_ms} ms and {official.min_query_count}")
    else:
        if (run.detail.get("effective_min_duration_ms") or 0) < official.min_duration_ms:
            problems.append(f"effective_min_duration_ms {run.detail.get('effective_min_duration_ms')} < "
                            f"{official.min_duration_ms} required")
        if (run.detail.get("effective_min_query_count") or 0) < official.min_query_count:
            problems.append(f"effective_min_query_count {run.detail.get('effective_min_query_count')} < "
                            f"{official.min_query_count} required")
    for seed in SEEDS:
        found, expected = run.detail.get(f"effective_{seed}"), getattr(official, seed)
        if found != expected:
            problems.append(f"{seed} is {found}, mlperf.conf's is {expected}")
    if run.result_validity != "VALID":
        unmet = [key for key, value in run.summary.items() if key.endswith("satisfied") and value.upper() == "NO"]
        problems.append(f"LoadGen's result is {run.result_validity}" + (f" ({', '.join(unmet)}: NO)" if unmet else ""))
    if run.detail.errors:
        problems.append(f"LoadGen logged {len(run.detail.errors)} error(s), e.g. {run.detail.errors[0]}")
    if run.audit_config:
        problems.append(f"an audit config ({run.audit_config}) changed the run: a compliance run, not a result")
    return problems
