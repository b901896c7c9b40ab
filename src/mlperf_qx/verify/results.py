"""Typed results of verify-equivalence, as ``ExportResult`` is for export: the CLI, the report and
the submission layout read these, and ``to_json`` is report.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path

from .benchmarks import RULES
from .loadgen_log import DetailLog, latencies_ms
from .tasks import ResponseFormat, Score


# The detail-log field a run is scored by, per scenario, as the submission checker and
# TEST01/verify_performance.py read it: samples/s, or for a stream scenario its early-stopping
# estimate of the 90th (SingleStream) or 99th (MultiStream) percentile latency, in ns.
RESULT_FIELDS = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss",
                 "MultiStream": "early_stopping_latency_ms", "Server": "result_completed_samples_per_sec"}
# The percentile those estimates bound, read from the summary where the estimate is missing.
SCORED_PERCENTILE = {"SingleStream": "90.00", "MultiStream": "99.00"}


@dataclass
class LoadGenRun:
    """One LoadGen test and what its logs say."""

    mode: str  # accuracy / performance / TEST01 / TEST04
    folder: Path
    requested_mode: str  # LoadGen's name: AccuracyOnly / PerformanceOnly
    summary: dict[str, str]
    detail: DetailLog
    audit_config: str | None = None
    submission_problems: list[str] = field(default_factory=list)  # empty: valid for submission
    settings: object | None = field(default=None, repr=False)  # the lg.TestSettings asked for
    offline_probe_rates: list[float] = field(default_factory=list)  # samples/s of the windows that set its target

    @property
    def effective_mode(self) -> str | None:
        return self.detail.get("effective_test_mode")

    @property
    def result_validity(self) -> str | None:
        return self.detail.get("result_validity") or self.summary.get("Result is")

    @property
    def samples_per_second(self) -> float | None:
        value = self.detail.get("result_samples_per_second", self.summary.get("Samples per second"))
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    @property
    def latency_ms(self) -> dict[str, float]:
        return latencies_ms(self.summary)

    @property
    def scenario(self) -> str | None:
        return self.detail.get("effective_scenario")

    @property
    def scored_figure(self) -> float | None:
        """What the run is scored by (``RESULT_FIELDS``): samples/s (Offline; Server's completed
        samples/s), or for a stream scenario its early-stopping latency estimate in ms (else the
        percentile it bounds, ``SCORED_PERCENTILE``)."""
        value = self.detail.get(RESULT_FIELDS.get(self.scenario, ""))
        try:
            value = float(value) if value is not None else None
        except (TypeError, ValueError):
            value = None
        if self.scenario in SCORED_PERCENTILE:
            return value / 1e6 if value else self.latency_ms.get(SCORED_PERCENTILE[self.scenario])
        return value if value is not None else self.samples_per_second

    @property
    def scored_text(self) -> str:
        """``scored_figure`` as shown: "-" without one; a latency to 4 digits (often under 0.1 ms)."""
        value = self.scored_figure
        if value is None:
            return "-"
        return f"{value:.4g}" if self.scenario in SCORED_PERCENTILE else f"{value:.1f}"

    @property
    def scored_unit(self) -> str:
        if self.scenario in SCORED_PERCENTILE:
            return f"ms (early-stopping p{SCORED_PERCENTILE[self.scenario][:2]} latency)"
        return "completed samples/s" if self.scenario == "Server" else "samples/s"

    def as_dict(self) -> dict:
        keys = ("effective_scenario", "effective_qsl_rng_seed", "effective_sample_index_rng_seed",
                "effective_schedule_rng_seed", "effective_min_duration_ms", "effective_min_query_count",
                "effective_performance_sample_count", "requested_offline_expected_qps",
                "effective_samples_per_query", "loadgen_version")
        return {"mode": self.mode, "folder": str(self.folder), "requested_mode": self.requested_mode,
                "effective_mode": self.effective_mode, "result_validity": self.result_validity,
                "samples_per_second": self.samples_per_second, "latency_ms": self.latency_ms,
                "audit_config": self.audit_config, "loadgen_errors": self.detail.errors,
                "offline_probe_samples_per_second": self.offline_probe_rates,
                "settings": {k: self.detail.get(k) for k in keys},
                "valid_for_submission": not self.submission_problems,
                "submission_problems": self.submission_problems}


@dataclass
class RoleResult:
    backend: str
    score: Score
    accuracy_run: LoadGenRun
    performance_run: LoadGenRun | None = None
    # With several performance runs (performance_runs.py): all of them, in the order run; the one
    # above is their median. Empty when there was one.
    performance_repeats: list[LoadGenRun] = field(default_factory=list)


@dataclass
class ComplianceResult:
    test: str
    passed: bool
    run: LoadGenRun
    lines: dict[str, str]  # verify_accuracy.txt / verify_performance.txt -> its verdict line
    # TEST01 Part III when Part I found differing responses: {baseline,compliance}_accuracy.txt lines, delta_percent
    part_three: dict = field(default_factory=dict)


@dataclass
class ExtensionalResult:
    task: str
    metric: str
    response: ResponseFormat
    target: float
    threshold: float
    reference: RoleResult
    candidate: RoleResult
    run_problems: list[str]  # runs that were not what was asked for: the verdict fails
    compliance: ComplianceResult | None = None
    score_problems: list[str] = field(default_factory=list)  # the task's judgement beyond the threshold
    rules: str = RULES  # the round whose submission rules judged the performance run
    # role -> runtime_agreement.Agreement, under a runtime other than onnxruntime: how far its
    # answers are from onnxruntime's on the same file
    runtime_agreement: dict = field(default_factory=dict)

    @property
    def accuracy_passed(self) -> bool:
        return self.candidate.score.value >= self.threshold and not self.score_problems

    @property
    def not_checked(self) -> str | None:
        """Why the accuracy comparison checked nothing, else None: a reference that scored 0 puts
        the threshold at 0, which no candidate can miss (wrong --labels or --label-offset)."""
        if self.reference.score.value <= 0:
            return (f"the reference scored 0 ({self.reference.score.line}), so {self.target}% of it cannot be "
                    "missed; check --labels and --label-offset")
        return None

    @property
    def passed(self) -> bool:
        compliant = self.compliance is None or self.compliance.passed
        return self.accuracy_passed and not self.run_problems and compliant

    @property
    def valid_for_submission(self) -> bool:
        run = self.candidate.performance_run
        return run is not None and not run.submission_problems


@dataclass
class IntensionalResult:
    passed: bool
    checks: list[dict]

    @property
    def verdict(self) -> str:
        """FAILED if a check failed; INCONCLUSIVE if none failed but one could not check (its
        status NOT CHECKED: nothing to check, and why); else PASSED."""
        statuses = {c.get("status", "PASS" if c["passed"] else "FAIL") for c in self.checks}
        return "FAILED" if "FAIL" in statuses else ("INCONCLUSIVE" if "NOT CHECKED" in statuses else "PASSED")


@dataclass
class VerifyResult:
    reference: str
    candidate: str
    dataset: str
    labels: str | None
    samples: int
    mode: str
    tolerances: dict[str, float]
    extensional: ExtensionalResult | None = None
    intensional: IntensionalResult | None = None
    layers: list = field(default_factory=list)
    report_files: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(part.passed for part in (self.extensional, self.intensional) if part is not None)

    @property
    def verdict(self) -> str:
        """PASSED, FAILED (a check or the extensional verdict failed: exit 1) or INCONCLUSIVE
        (nothing failed, but a check could not check: an intensional one, or the accuracy
        comparison against a reference that scored 0: exit 4)."""
        if self.extensional is not None and not self.extensional.passed:
            return "FAILED"
        verdict = self.intensional.verdict if self.intensional is not None else "PASSED"
        if verdict == "PASSED" and self.extensional is not None and self.extensional.not_checked:
            return "INCONCLUSIVE"
        return verdict

    def to_json(self) -> str:
        return json.dumps(_plain(self), indent=2, sort_keys=True) + "\n"


def _plain(value):
    """Dataclasses (with their verdict properties), paths and numpy scalars as JSON values."""
    if isinstance(value, LoadGenRun):
        return _plain(value.as_dict())
    if is_dataclass(value):
        plain = {f: _plain(getattr(value, f)) for f in value.__dataclass_fields__}
        for name in ("passed", "accuracy_passed", "not_checked", "valid_for_submission", "verdict"):
            if isinstance(getattr(type(value), name, None), property):
                plain[name] = getattr(value, name)
        return plain
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value
