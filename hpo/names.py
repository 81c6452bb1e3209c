"""Names that come in from outside and end up in files, process names and Pyro4 object names.

One rule for run ids, everywhere they come in (``--run-id``, ``HPO_RUN_ID`` through the CLI, the
default made from a space's name): 1 to 64 characters, letters (ASCII), digits, ``-`` and
``_``, starting with a letter or a digit. A run id names the results directory
(``results/<run-id>``) and the Pyro4 objects of the run (``hpbandster.run_<run-id>.worker...``):
``@``, ``:``, ``/``, spaces or shell characters there break a URI, a path or a shell line.
"""

from __future__ import annotations

import re

from hpo.errors import UserError

RUN_ID_MAX_LENGTH = 64
RUN_ID_RULE = "1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def is_run_id(text: object) -> bool:
    """True when ``text`` is a valid run id."""
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


def check_run_id(text: object, flag: str = "--run-id") -> str:
    """Return ``text`` when it is a valid run id, else raise a one-line :class:`UserError` naming
    ``flag`` (or the setting it came from) and what is wrong."""
    if is_run_id(text):
        return text  # type: ignore[return-value]
    if not isinstance(text, str) or not text:
        problem = "empty"
    elif len(text) > RUN_ID_MAX_LENGTH:
        problem = f"{len(text)} characters, at most {RUN_ID_MAX_LENGTH}"
    elif not text[0].isascii() or not text[0].isalnum():
        problem = f"starts with {text[0]!r}"
    else:
        bad = sorted({c for c in text if not (c.isascii() and (c.isalnum() or c in "-_"))})
        problem = "holds " + ", ".join(repr(c) for c in bad)
    shown = repr(text) if len(repr(text)) <= 80 else repr(text)[:77] + "..."
    raise UserError(f"{flag} {shown}: not a run id ({problem}); use {RUN_ID_RULE}")


def default_run_id(space_name: str, stamp: str) -> str:
    """A valid run id made from a space's name and a time stamp (``<name>-<stamp>``): characters
    outside the rule become ``-`` and the name is shortened to fit."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", space_name).strip("-_") or "run"
    stamp = re.sub(r"[^A-Za-z0-9_-]+", "-", stamp).strip("-_")
    room = RUN_ID_MAX_LENGTH - len(stamp) - 1 if stamp else RUN_ID_MAX_LENGTH
    name = name[: max(1, room)].rstrip("-_") or "run"
    return check_run_id(f"{name}-{stamp}" if stamp else name, "run id")
