"""Atomic outputs: a failure or a kill never leaves a torn or partial file behind.

Everything is written into a private staging folder beside the destination (same filesystem),
then moved into place with ``os.replace``, which is atomic per file on POSIX. A killed run cannot
remove its staging folder; the folder names its owner (host and process id), and the next run
writing the same destination removes the folders whose owner on this host is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator


class Staging:
    """A folder beside the destination where outputs are built before being published."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._published: list[tuple[Path, Path]] = []
        self.elsewhere: list[Path] = []  # staged files outside ``folder``, removed if not published

    def path(self, final: Path) -> Path:
        """The staging path for a file that will be published as ``final``: in the staging folder
        when ``final`` is beside the destination, else a hidden file beside ``final`` (its folder
        made if missing), so that the move into place never crosses file systems."""
        if Path(os.path.realpath(final.parent)) == Path(os.path.realpath(self.folder.parent)):
            staged = self.folder / final.name
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            os.close(handle)
            os.unlink(name)  # a unique name; published only if the caller writes it (as in the folder)
            staged = Path(name)
            self.elsewhere.append(staged)
        self._published.append((staged, final))
        return staged

    def publish(self) -> None:
        # Secondary files (external data, manifest) first, the main file last: a reader that sees
        # the new main file also sees everything it refers to.
        for staged, final in reversed(self._published):
            if staged.exists():
                _fsync(staged)
                os.replace(staged, final)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def staged_outputs(destination: Path) -> Iterator[Staging]:
    """Yield a Staging beside ``destination``; publish on success, discard everything on failure."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(destination)
    folder = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    (folder / _OWNER).write_text(f"{socket.gethostname()}\n{os.getpid()}\n", encoding="utf-8")
    staging = Staging(folder)
    try:
        yield staging
        staging.publish()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for leftover in staging.elsewhere:
            leftover.unlink(missing_ok=True)


_OWNER = ".qx-owner"


def _remove_abandoned_staging(destination: Path) -> None:
    """Remove staging folders of ``destination`` left by killed runs: only folders that carry an
    owner file naming this host and a process that no longer exists (anything else may belong to
    a run still going, here or on another host sharing the folder)."""
    host = socket.gethostname()
    for folder in destination.parent.glob(f".{destination.name}.*.tmp"):
        try:
            owner_host, owner_pid = (folder / _OWNER).read_text(encoding="utf-8").split()
            pid = int(owner_pid)
        except (OSError, ValueError):
            continue
        if owner_host == host and not _process_exists(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_text_atomic(path: Path, text: str) -> None:
    with staged_outputs(path) as staging:
        staging.path(path).write_text(text, encoding="utf-8")
