"""Error vocabulary: every failure a user can cause is a QxError with a one-line message.

The CLI prints ``error: <message>`` and exits with ``exit_code``; tracebacks only with ``--debug``.
"""


class QxError(Exception):
    """A failure the user can act on. Exit code 2 (bad input) unless a subclass says otherwise."""

    exit_code = 2


class UserInputError(QxError):
    """A file, flag or value given by the user is missing, malformed or inconsistent."""


class UnsafeInputError(UserInputError):
    """An input would require executing untrusted code or escaping its folder; refused."""


class VerificationFailed(QxError):
    """A numerical or structural check ran and did not pass."""

    exit_code = 1
