"""LoadGen's settings as MLPerf's reference harnesses make them: ``TestSettings.FromConfig`` with
LoadGen's built-in mlperf.conf for the benchmark (official seeds, minimum duration and query count,
performance sample count), then the owner's user.conf, then the test mode.

Two departures from the reference's ``settings.FromConfig(user_conf, model, scenario)``, both
because qx runs several tests (reference and candidate, accuracy and performance) in one process:

- mlperf.conf is loaded with ``conf_type=0`` for every test: LoadGen loads it only on the first
  ``conf_type=1`` call of a process and logs ``error_invalid_config`` ("Multiple conf files") on
  later ones, which the submission checker counts as a LoadGen error.
- user.conf is then read with ``conf_type=2``, which applies the same keys without that counter.

The audit config is always an explicit path: LoadGen's default is ``audit.config`` in the working
folder, which would silently turn an accuracy run into a compliance run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlperf_loadgen as lg

from ..errors import UserInputError, missing
from .benchmarks import Benchmark, benchmark
from .stall_watchdog import DEFAULT_STALL_S

SCENARIOS = {"Offline": lg.TestScenario.Offline, "SingleStream": lg.TestScenario.SingleStream,
             "MultiStream": lg.TestScenario.MultiStream, "Server": lg.TestScenario.Server}
# The user.conf key that states a scenario's expectation. Server's target_latency is the latency
# bound of mlperf.conf, never the user's: its expectation is target_qps.
TARGET_KEYS = {"Offline": "target_qps", "Server": "target_qps", "SingleStream": "target_latency",
               "MultiStream": "target_latency"}
MODES = {"accuracy": lg.TestMode.AccuracyOnly, "performance": lg.TestMode.PerformanceOnly}
MODE_NAMES = {"accuracy": "AccuracyOnly", "performance": "PerformanceOnly"}
# The fewest queries with which early stopping can succeed at a 99th percentile with no query over
# the bound (mlperf.conf's *.MultiStream.min_query_count): a quick run of fewer is INVALID.
EARLY_STOPPING_QUERIES = {"MultiStream": 662, "Server": 662}
# A name no mlperf.conf line names: only its '*' entries (seeds, durations, percentiles) apply.
GENERIC_MODEL = "qx-model"
NO_AUDIT_CONFIG = "/nonexistent/qx-no-audit.config"


@dataclass(frozen=True)
class QuickRun:
    """A shortened performance run for a quick check: never valid for submission."""

    min_duration_ms: int = 2000
    min_query_count: int = 64


@dataclass(frozen=True)
class LoadGenConfig:
    scenario: str = "Offline"
    model_name: str | None = None  # an MLPerf benchmark as the submission checker names it (resnet, bert-99...)
    user_conf: Path | None = None
    audit_config: Path | None = None
    quick: QuickRun | None = QuickRun()  # None: mlperf.conf's full-length run
    batch: int = 32  # the SUT's most samples per inference (MLPerf reference: --max-batchsize, 32)
    stall_timeout_s: float = DEFAULT_STALL_S  # no inference returning for this long ends the run (stall_watchdog)
    performance_runs: int = 1  # per model, reference and candidate alternating (performance_runs.py)

    @property
    def benchmark(self) -> Benchmark | None:
        return benchmark(self.model_name) if self.model_name is not None else None

    @property
    def conf_model(self) -> str:
        """mlperf.conf's key for the benchmark (resnet50 for resnet, bert for bert-99...)."""
        return self.benchmark.conf_key if self.model_name is not None else GENERIC_MODEL

    @property
    def folder_name(self) -> str:
        """The benchmark's results folder as the checker names it."""
        return self.benchmark.name if self.model_name is not None else GENERIC_MODEL


def official_settings(model: str, scenario: str) -> lg.TestSettings:
    """LoadGen's built-in mlperf.conf alone, for ``model`` and ``scenario``."""
    settings = lg.TestSettings()
    settings.FromConfig("", model, scenario, 0)
    return settings


def user_conf_keys(path: Path) -> dict[str, str]:
    """``model.scenario.key = value`` lines of a user.conf; malformed lines are a user error (LoadGen
    would only log them and run with its defaults)."""
    if not path.is_file():
        raise UserInputError(f"--user-conf: file '{path}' {missing(path)}")
    keys = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        key, sep, value = text.partition("=")
        if not sep or len(key.strip().split(".")) != 3 or not value.strip():
            raise UserInputError(f"{path}:{number}: expected 'model.scenario.key = value', got '{line.strip()[:80]}'")
        keys[key.strip()] = value.strip()
    return keys


def sets_target(keys: dict[str, str], model: str, scenario: str) -> bool:
    """Whether the user.conf gives this model and scenario its expected QPS or latency."""
    wanted = TARGET_KEYS[scenario]
    return any(k.split(".")[0] in (model, "*") and k.split(".")[1] in (scenario, "*") and k.split(".")[2] == wanted
               for k in keys)


def user_sets_target(config: LoadGenConfig) -> bool:
    """Whether the user.conf states the run's expected QPS or latency (qx then measures nothing)."""
    return config.user_conf is not None and sets_target(user_conf_keys(config.user_conf), config.conf_model,
                                                        config.scenario)


def build_settings(config: LoadGenConfig, mode: str, expected_qps: float, expected_latency_s: float) -> lg.TestSettings:
    """mlperf.conf, user.conf, the mode; the measured speed where user.conf gives none (mlperf.conf's
    placeholder of 1 QPS would make an Offline run issue too few samples for its minimum duration);
    the quick-check shortening last."""
    model, scenario = config.conf_model, config.scenario
    settings = official_settings(model, scenario)
    user_keys = {}
    if config.user_conf is not None:
        user_keys = user_conf_keys(config.user_conf)
        if settings.FromConfig(str(config.user_conf), model, scenario, 2) != 0:
            raise UserInputError(f"--user-conf '{config.user_conf}': LoadGen could not read it")
    settings.scenario = SCENARIOS[scenario]
    settings.mode = MODES[mode]
    if not sets_target(user_keys, model, scenario):
        settings.offline_expected_qps = settings.server_target_qps = max(1.0, expected_qps)
        settings.single_stream_expected_latency_ns = max(1000, int(expected_latency_s * 1e9))
        # A MultiStream query is samples_per_query samples answered together.
        settings.multi_stream_expected_latency_ns = max(1000, int(expected_latency_s * 1e9))
    # Also in accuracy mode, where LoadGen ignores both (it issues every loaded sample once): an
    # audit config can turn an accuracy run into a performance run (the verdict then fails, naming
    # the run), and a quick check must not become a 600 s one on the way.
    if config.quick is not None:
        settings.min_duration_ms = config.quick.min_duration_ms
        settings.min_query_count = max(config.quick.min_query_count, EARLY_STOPPING_QUERIES.get(scenario, 0))
    return settings


def audit_config_path(config: LoadGenConfig) -> str:
    """The audit config LoadGen is given: the one asked for, else a path that does not exist."""
    return str(config.audit_config) if config.audit_config is not None else NO_AUDIT_CONFIG


def refuse_stray_audit_config(config: LoadGenConfig, folder: Path | None = None) -> None:
    """MLPerf's harnesses apply ./audit.config to every run; qx never does so silently."""
    stray = (folder or Path.cwd()) / "audit.config"
    if config.audit_config is None and stray.exists():
        raise UserInputError(
            f"{stray} is a LoadGen audit config: MLPerf's harnesses apply it to every run, turning accuracy runs "
            "into compliance runs. Move it away, or run the compliance test with --compliance TEST01|TEST04 "
            "(or --audit-config FILE)")


def user_conf_text(model: str, scenario: str, settings: lg.TestSettings) -> str:
    """The user.conf that states the target the run used (for the submission folder)."""
    value = {"Offline": settings.offline_expected_qps, "Server": settings.server_target_qps,
             "SingleStream": settings.single_stream_expected_latency_ns / 1e6,
             "MultiStream": settings.multi_stream_expected_latency_ns / 1e6}[scenario]
    return f"{model}.{scenario}.{TARGET_KEYS[scenario]} = {value:.6g}\n"
