"""The quantization vocabulary: data, not behaviour. MLPerf's lowest common denominator is
symmetric, per-tensor, int8, zero point 0."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class QuantSpec:
    dtype: str = "int8"
    symmetric: bool = True
    zero_point: int = 0
    per_tensor: bool = True
    narrow_range: bool = False  # [-127, 127] instead of [-128, 127]

    @property
    def qmin(self) -> int:
        return -127 if self.narrow_range else -128

    @property
    def qmax(self) -> int:
        return 127


ACTIVATION = QuantSpec()
WEIGHT = QuantSpec(narrow_range=True)  # symmetric grid: w and -w quantize to opposite values
BIAS_DTYPE = "int32"  # scale = s_input * s_weight, zero point 0


class Method(str, Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"

    @property
    def needs_histogram(self) -> bool:
        return self is not Method.MINMAX


class Format(str, Enum):
    QDQ = "qdq"
    QOPERATOR = "qoperator"
