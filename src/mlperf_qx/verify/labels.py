"""MLPerf val_map files: ``<sample> <label>`` per line; a sample's QSL index is its line number."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError


def read_val_map(path: Path) -> tuple[list[str], list[int]]:
    if not path.is_file():
        raise UserInputError(f"--labels: file '{path}' not found")
    ids, labels = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: a val_map must be UTF-8 text, '<sample> <label>' per line") from None
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise UserInputError(f"{path}:{number}: expected '<sample> <label>', got '{line.strip()[:80]}'")
        ids.append(parts[0])
        labels.append(int(parts[1]))
    if not ids:
        raise UserInputError(f"{path}: no samples listed")
    return ids, labels
