"""What a LoadGen run wrote: ``mlperf_log_summary.txt`` (``key : value`` lines, and a few
``key: value`` ones such as ``Samples per second: N``) and ``mlperf_log_detail.txt`` (one
``:::MLLOG {json}`` record per line, the file MLPerf's submission checker reads)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

MLLOG_PREFIX = ":::MLLOG "


def parse_summary(path: Path) -> dict[str, str]:
    """``key : value`` and ``key: value`` lines of mlperf_log_summary.txt (first colon splits)."""
    facts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            facts.setdefault(key.strip(), value.strip())
    return facts


@dataclass
class DetailLog:
    """The records of mlperf_log_detail.txt: the last value per key, and the errors and warnings
    LoadGen flagged."""

    values: dict[str, object] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default=None):
        return self.values.get(key, default)


def parse_detail(path: Path) -> DetailLog:
    log = DetailLog()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith(MLLOG_PREFIX):
            continue
        try:
            record = json.loads(line[len(MLLOG_PREFIX):])
        except json.JSONDecodeError:
            continue  # a truncated last line of an interrupted run
        key, value = record.get("key"), record.get("value")
        log.values[key] = value
        metadata = record.get("metadata") or {}
        if metadata.get("is_error"):
            log.errors.append(f"{key}: {value}")
        elif metadata.get("is_warning"):
            log.warnings.append(f"{key}: {value}")
    return log


def latencies_ms(summary: dict[str, str]) -> dict[str, float]:
    """``NN.NN percentile latency (ns)`` lines, in milliseconds, keyed by the percentile."""
    latencies = {}
    for key, value in summary.items():
        if key.endswith("percentile latency (ns)"):
            try:
                latencies[key.split()[0]] = float(value) / 1e6
            except ValueError:
                continue
    return latencies
