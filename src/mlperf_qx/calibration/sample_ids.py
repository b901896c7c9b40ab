"""Sample ids as MLPerf's lists write them, and the preprocessed file each one names.

MLPerf's published lists name the *raw* data, not an owner's preprocessed copy of it:
``ILSVRC2012_val_00027145.JPEG`` (ImageNet option 1), ``ILSVRC2012_val_00031333.JPEG 0`` (option 2:
name and label), ``train-clean-100-wav/103/1240/103-1240-0010.wav`` (LibriSpeech: a nested path),
``4547`` (SQuAD feature indices). A preprocessed sample is an ``.npy``/``.npz`` file in the data
folder, found as ``<id>.npy``, ``<id minus its extension>.npy`` or ``<id>`` itself, and never
outside that folder.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path, PurePosixPath

from ..errors import UserInputError, missing

ARRAY_SUFFIXES = (".npy", ".npz")
# The extension of the raw file a list names (.JPEG, .wav, .png...): dropped to find "<stem>.npy".
_RAW_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{1,4}$")


def numbered_lines(path: Path, flag: str, form: str) -> list[tuple[int, str, list[str]]]:
    """The non-blank lines of a UTF-8 sample list or labels file: (line number, line, fields)."""
    if not path.is_file():
        raise UserInputError(f"{flag}: file '{path}' {missing(path)}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: must be UTF-8 text, '{form}' per line") from None
    return [(number, line, line.split()) for number, line in enumerate(lines, 1) if line.split()]


def is_integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def read_id_list(path: Path, flag: str) -> list[str]:
    """Ids of an MLPerf list: one per line, optionally followed by an integer label (as in
    ``cal_image_list_option_2.txt``); ``#`` comments and blank lines skipped.

    A repeated id is kept where it stands, with a warning: MLPerf publishes lists with repeats
    (calibration/CNNDailyMail/calibration-list.txt names two articles twice) and its own
    preparation scripts use every line (language/gpt-j/prepare-calibration.py:39-49), so the
    sample counts twice. ``ids_sha256`` covers the list with its repeats, so the fingerprint of the
    calibration records them."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line, parts in numbered_lines(path, flag, "<sample id>"):
        if parts[0].startswith("#"):
            continue
        if len(parts) > 2 or (len(parts) == 2 and not is_integer(parts[1])):
            raise UserInputError(f"{path}:{number}: expected '<sample id>' or '<sample id> <label>', "
                                 f"got '{line.strip()[:80]}'")
        if parts[0] in first_line:
            print(f"warning: {path}:{number}: sample id '{parts[0]}' repeats line {first_line[parts[0]]}; kept, as "
                  "MLPerf's scripts use every line of a list (it counts twice)", file=sys.stderr)
        first_line.setdefault(parts[0], number)
        ids.append(parts[0])
    if not ids:
        raise UserInputError(f"{path}: the list names no samples")
    return ids


def sample_key(sample_id: str) -> str:
    """What two lists mean by the same sample: the id without its array suffix and without the raw
    file's extension, so ``X.JPEG``, ``X.JPEG.npy`` and ``X.npy`` are one sample."""
    for suffix in ARRAY_SUFFIXES:
        if sample_id.endswith(suffix):
            sample_id = sample_id[: -len(suffix)]
            break
    return _RAW_SUFFIX.sub("", sample_id)


def ids_sha256(ids: list[str]) -> str:
    """A fingerprint of which samples, in which order, repeats included: independent of how the list
    file is laid out (with or without labels, extensions, comments)."""
    return hashlib.sha256("\n".join(sample_key(i) for i in ids).encode()).hexdigest()


def safe_relative(sample_id: str, listed_in: Path) -> PurePosixPath:
    """The id as a path inside the data folder; absolute paths and ``..`` are refused."""
    path = PurePosixPath(sample_id.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise UserInputError(f"{listed_in}: sample id '{sample_id}' is not a relative path inside the data folder; "
                             "list ids relative to the folder, without '..'")
    return path


def candidate_files(relative: PurePosixPath) -> list[PurePosixPath]:
    """Files a listed id may name, most specific first."""
    name = relative.name
    if name.endswith(ARRAY_SUFFIXES):
        return [relative]
    candidates = [relative.with_name(name + suffix) for suffix in ARRAY_SUFFIXES]
    stem = _RAW_SUFFIX.sub("", name)
    if stem != name and stem:
        candidates += [relative.with_name(stem + suffix) for suffix in ARRAY_SUFFIXES]
    return candidates
