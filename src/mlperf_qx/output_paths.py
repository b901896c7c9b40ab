"""Where a command will write, checked before it does any work.

A bad destination found only when the result is published costs the whole run and used to end in
an internal error (a folder where the file goes, a file where a folder is needed, a place nothing
can be created in). Worse, an output that is also one of the command's inputs (``--trt-cache``
naming the model or the calibration list) was overwritten without a word. So every command names
its outputs and its inputs here first, and gets one line for the first problem:

- an output file path that is a folder, or an output folder that is a file;
- a path under a file (``x.onnx/q.onnx``), or a place where no file can be created;
- an output that is also an input, or an existing file inside an input folder (a calibration
  sample), or two outputs that are one file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserInputError

Named = dict[str, "Path | None"]


def check_destinations(files: Named, inputs: Named, folders: Named | None = None) -> None:
    """``files``: option -> output file; ``folders``: option -> output folder (written into);
    ``inputs``: option -> a file or folder the command reads and must leave as it is. Options
    given None are not used by this run."""
    folders = folders or {}
    readers = {flag: _resolved(path) for flag, path in inputs.items() if path is not None}
    seen: dict[Path, str] = {}
    for flag, path in [*files.items(), *folders.items()]:
        if path is None:
            continue
        is_folder = flag in folders
        _check_kind(flag, path, is_folder)
        where = _resolved(path)
        for reader, read in readers.items():
            if where == read:
                raise UserInputError(f"{flag} '{path}' is also given as {reader}: qx would overwrite it; "
                                     "choose another path")
            if where.exists() and read.is_dir() and where.is_relative_to(read):
                raise UserInputError(f"{flag} '{path}' is a file of {reader} '{inputs[reader]}': qx would "
                                     "overwrite it; choose a path outside it")
        if where in seen:
            raise UserInputError(f"{seen[where]} and {flag} are the same path '{path}'; give each its own")
        seen[where] = flag
        _check_writable(flag, path, path if is_folder else path.parent)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _check_kind(flag: str, path: Path, is_folder: bool) -> None:
    if is_folder and path.exists() and not path.is_dir():
        raise UserInputError(f"{flag} '{path}' is a file; give a folder")
    if not is_folder and path.is_dir():
        raise UserInputError(f"{flag} '{path}' is a folder; give a file path inside it or elsewhere")


def _check_writable(flag: str, path: Path, folder: Path) -> None:
    """``folder`` (created later if missing) must be creatable and hold new files: probed with a
    temporary file in its nearest existing ancestor, removed at once (permission bits do not tell,
    e.g. for root on a read-only or virtual file system)."""
    ancestor = folder
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise UserInputError(f"{flag} '{path}': '{ancestor}' is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise UserInputError(f"{flag} '{path}': cannot write in '{ancestor}' ({exc.strerror or exc}); "
                             "choose a writable place") from None
