"""Error vocabulary: every failure a user can cause is a QxError with a one-line message.

The CLI prints ``error: <message>`` and exits with ``exit_code``; tracebacks only with ``--debug``.
"""


def first_line(problem: BaseException | str, limit: int = 300, empty: str | None = None) -> str:
    """The first line of an exception's message (or of a text), cut to ``limit`` characters, for
    the one-line answers. An empty message gives ``empty``, or the exception's type name."""
    text = str(problem).strip()
    if text:
        line = text.splitlines()[0]
        if len(line) <= limit:
            return line
        cut = line[:limit].rsplit(" ", 1)[0]  # at a word boundary, never mid-word
        return (cut if len(cut) > limit // 2 else line[:limit]) + " …"
    if empty is not None:
        return empty
    return type(problem).__name__ if isinstance(problem, BaseException) else ""


def missing(path) -> str:
    """How a path the user gave as a file is not one: a folder is not "not found"."""
    return "is a folder, not a file" if path.is_dir() else "not found"


class QxError(Exception):
    """A failure the user can act on. Exit code 2 (bad input) unless a subclass says otherwise."""

    exit_code = 2


class UserInputError(QxError):
    """A file, flag or value given by the user is missing, malformed or inconsistent."""


class UnsafeInputError(UserInputError):
    """An input would require executing untrusted code or escaping its folder; refused."""


class InternalError(QxError):
    """Not the user's input: a bug in qx or a failure inside a library it drives. Exit 3, so
    scripts can tell it from bad input (2) and from a failed verification (1)."""

    exit_code = 3


class VerificationFailed(QxError):
    """A numerical or structural check ran and did not pass."""

    exit_code = 1


class VerificationInconclusive(QxError):
    """No check failed, but one could not check (nothing to check, and why): not a pass. Exit 4."""

    exit_code = 4
