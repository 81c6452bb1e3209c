"""Errors a user can fix: they are shown as one line, without a traceback, and exit with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, a flag, a setting). The message is one line naming what and where."""

    exit_code = 2
