"""Output whose reader went away (``hpo space check ... | head``): end quietly, as Unix tools do.

A ``BrokenPipeError`` is the reader of stdout closing only when stdout is a pipe without a reader
(``poll`` reports an error on it); one from a socket or a child's pipe is an error of the command
and is reported as such.
"""

from __future__ import annotations

import os
import select
import sys


def stdout_closed() -> bool:
    """True when stdout's reader is gone (a pipe nobody reads any more)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no fileno (captured), or no poll on this platform
        return False
    return any(event & select.POLLERR for _, event in events)


def silence_closed_stdout() -> None:
    """Point stdout at /dev/null and close stderr, so that flushing them at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    sys.stderr.close()
