"""Calibration caches: qx's JSON (reused by ``--cache``) and TensorRT's calibration-cache text."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError

CACHE_FORMAT = "mlperf-qx calibration cache v1"
TRT_HEADER = "TRT-8600-EntropyCalibration2"


@dataclass
class TensorRange:
    amax: float
    scale: float
    count: int
    method: str = ""  # the statistic that chose amax, where it differs from the run's --method


@dataclass
class CalibrationCache:
    model_sha256: str
    calibration_list_sha256: str
    method: str
    percentile: float | None
    samples: int
    tensors: dict[str, TensorRange]
    calibration_ids_sha256: str = ""  # which samples in which order (sample_ids.ids_sha256)
    held_out: int = 0  # the list's last samples left out of the ranges (--holdout)

    def to_json(self) -> str:
        payload = {
            "format": CACHE_FORMAT,
            "model_sha256": self.model_sha256,
            "calibration_list_sha256": self.calibration_list_sha256,
            "calibration_ids_sha256": self.calibration_ids_sha256,
            "method": self.method,
            "percentile": self.percentile,
            "samples": self.samples,
            "held_out": self.held_out,
            "tensors": {name: vars(r) for name, r in sorted(self.tensors.items())},
        }
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def read_cache(path: Path) -> CalibrationCache:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != CACHE_FORMAT:
            raise ValueError(f"format is not '{CACHE_FORMAT}'")
        tensors = {}
        for name, entry in payload["tensors"].items():
            tensors[str(name)] = TensorRange(float(entry["amax"]), float(entry["scale"]), int(entry["count"]),
                                             str(entry.get("method", "")))
            if not (tensors[name].amax >= 0 and tensors[name].scale > 0):
                raise ValueError(f"tensor '{name}' has a negative range or a non-positive scale")
        return CalibrationCache(
            str(payload["model_sha256"]), str(payload["calibration_list_sha256"]), str(payload["method"]),
            payload.get("percentile"), int(payload["samples"]), tensors,
            str(payload.get("calibration_ids_sha256", "")), int(payload.get("held_out", 0)),
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserInputError(f"--cache '{path}': not a valid qx calibration cache ({exc}); delete it to recalibrate") from None


def trt_cache_text(scales: dict[str, float]) -> str:
    """TensorRT's format: a header, then ``tensor: <scale as big-endian float32 hex>`` per line."""
    lines = [TRT_HEADER]
    for name in sorted(scales):
        lines.append(f"{name}: {struct.pack('>f', scales[name]).hex()}")
    return "\n".join(lines) + "\n"


def parse_trt_cache(text: str) -> dict[str, float]:
    scales = {}
    for line in text.splitlines()[1:]:
        name, _, hex_value = line.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(hex_value))[0]
    return scales
