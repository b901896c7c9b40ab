"""Labels files: MLPerf's val_map (``<sample> <label>`` per line) and spans files (``<sample> <start>
<end>``); a sample's QSL index is its line number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..calibration.sample_ids import is_integer, numbered_lines
from ..errors import UserInputError


@dataclass(frozen=True)
class LabelsForm:
    text: str  # how a line reads
    values: int  # integers after the sample id

    def __str__(self) -> str:
        return self.text


VAL_MAP_FORM = LabelsForm("<sample> <label>", 1)
SPANS_FORM = LabelsForm("<sample> <start> <end>", 2)


def read_labelled(path: Path, form: LabelsForm) -> tuple[list[str], list[tuple[int, ...]]]:
    """Ids and their integers, one sample per line."""
    ids, rows = [], []
    for number, line, parts in numbered_lines(path, "--labels", form.text):
        if len(parts) != form.values + 1 or not all(is_integer(p) for p in parts[1:]):
            raise UserInputError(f"{path}:{number}: expected '{form}', got '{line.strip()[:80]}'")
        ids.append(parts[0])
        rows.append(tuple(int(p) for p in parts[1:]))
    if not ids:
        raise UserInputError(f"{path}: no samples listed")
    return ids, rows
