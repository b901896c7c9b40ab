"""What a verify task is: how the SUT encodes a response for LoadGen, which accuracy script scores
LoadGen's accuracy log, and what the extensional verdict compares. A new task is one module here
plus its script in ``mlperf_qx/accuracy`` (below verify and the quantizer, which both use them)."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import UserInputError
from ..labels import LabelsForm

ACCURACY_SCRIPTS = Path(__file__).resolve().parent.parent.parent / "accuracy"


@dataclass(frozen=True)
class ResponseFormat:
    """The bytes a response holds: made from ``outputs``, laid out as ``layout``, in ``dtype``."""

    outputs: tuple[str, ...]
    dtype: str
    layout: str
    label_offset: int = 0


@dataclass
class Score:
    """One role's figure from the accuracy script: ``value`` in percent (higher is better), the
    script's own output ``line``, the command that reproduces it, and the script's other figures."""

    value: float
    line: str
    command: list[str]
    figures: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # the script's other findings, in words


class Task(ABC):
    name: str
    metric: str  # what Score.value measures, for tables and plots
    # The submission checker's ACC_PATTERN key its accuracy line matches (constants.py:1804-1831);
    # None: the line is qx's own, no benchmark's (agreement with the reference).
    checker_metric: str | None = None
    labels_form: LabelsForm | None  # the line form of --labels (labels.VAL_MAP_FORM...), None: labels not used
    needs_labels: bool

    def __init__(self, response: ResponseFormat):
        self.response = response

    @abstractmethod
    def encode(self, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
        """The responses of a batch of ``count`` samples: uint8 rows, one per sample (``response_rows``)."""

    @abstractmethod
    def score(self, log: Path, reference_log: Path, labels: Path | None) -> Score:
        """Score an accuracy log; ``reference_log`` is the reference's (the truth where no labels exist)."""

    def problems(self, score: Score, target: float) -> list[str]:
        """Why the candidate's ``score`` fails beyond its value against the threshold (none by default)."""
        return []

    def threshold(self, target: float, reference: Score) -> float:
        """The candidate's score must reach ``target`` % of the reference's (MLPerf's 99 % / 99.9 %)."""
        return target / 100.0 * reference.value

    def script_command(self, script: str, *arguments: object) -> list[str]:
        return [sys.executable, str(ACCURACY_SCRIPTS / script), *map(str, arguments)]


def output_names(requested: list[str], available: list[str], default: list[str]) -> tuple[str, ...]:
    """``--output`` names checked against the model's outputs; ``default`` when none are given."""
    missing = [name for name in requested if name not in available]
    if missing:
        raise UserInputError(f"--output '{missing[0]}': the model's outputs are {', '.join(available)}")
    return tuple(requested or default)


def response_rows(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` (one row or one value per sample) in ``dtype`` as contiguous uint8 rows: the SUT
    points each sample's response into this one array (no per-sample bytes objects, which cost more
    than a small model's inference per sample)."""
    typed = np.ascontiguousarray(values.astype(dtype, copy=False))
    return typed.view(np.uint8).reshape(len(typed), -1)


def per_sample(array: np.ndarray, count: int, name: str) -> np.ndarray:
    """A batch output as (count, values per sample)."""
    if array.shape[:1] != (count,):
        raise UserInputError(f"output '{name}' has shape {array.shape}; a batch of {count} samples needs a leading "
                             f"batch axis of {count}")
    return array.reshape(count, -1)
