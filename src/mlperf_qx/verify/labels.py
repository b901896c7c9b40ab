"""Labels files: MLPerf's val_map (``<sample> <label>`` per line) and spans files (``<sample> <start>
<end>``); a sample's QSL index is its line number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    values = form.values
    if not path.is_file():
        raise UserInputError(f"--labels: file '{path}' not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: a labels file must be UTF-8 text, '{form}' per line") from None
    ids, rows = [], []
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != values + 1 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
            raise UserInputError(f"{path}:{number}: expected '{form}', got '{line.strip()[:80]}'")
        ids.append(parts[0])
        rows.append(tuple(int(p) for p in parts[1:]))
    if not ids:
        raise UserInputError(f"{path}: no samples listed")
    return ids, rows


def read_val_map(path: Path) -> tuple[list[str], list[int]]:
    ids, rows = read_labelled(path, VAL_MAP_FORM)
    return ids, [row[0] for row in rows]
