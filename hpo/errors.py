"""Errors a user can fix: they are shown as one line, without a traceback, and exit with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, a flag, a setting). The message is one line naming what and where."""

    exit_code = 2


class RunFailed(UserError):
    """A run that ended without success (stopped by fail-fast, or every job failed)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (its type's name when it has none), cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit] + ("..." if len(text) > limit else "")
