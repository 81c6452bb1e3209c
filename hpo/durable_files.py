"""Files written so that a crash or a power cut leaves them whole.

A JSON line is appended in one write and fsync-ed (:func:`append_log_line`); a file made new has its
directory entry synced too (:func:`create_file`, :func:`make_directory`); a whole file is replaced
atomically (:func:`replace_file`: a temporary file in the same directory, fsync, rename, fsync of the
directory), so a reader sees the old content or the new, never half. After a crash, the last line
of an append-only log may be torn (cut short, or ending in zeros): :func:`repair_torn_line` cuts it
away, and :func:`read_log_lines` reads every line, skipping none. Files are created with mode
``0666`` less the user's umask.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any, Optional

from hpo.errors import UserError
from hpo.values import to_json_safe

_CHUNK = 1 << 20


# --- durable files --------------------------------------------------------------------------------


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a directory's entries (a new or renamed file) durable. A no-op where the file system
    cannot sync a directory."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def create_file(path: str | os.PathLike) -> bool:
    """Create ``path`` empty (mode 0666 less the umask) unless it exists; True when it was made.
    A new file's directory entry is synced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(Path(path).parent)
    return True


def append_log_line(path: str | os.PathLike, value: Any, sync: bool = True) -> None:
    """Append ``value`` as one JSON line, in one write where the OS allows, and fsync it (with
    ``sync=False`` the caller syncs it later; a file this call creates is synced at once either way,
    with its directory)."""
    data = (json.dumps(to_json_safe(value), allow_nan=False) + "\n").encode()
    created = not os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        _write_all(fd, data)
        if sync or created:
            os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_directory(Path(path).parent)


def make_directory(path: Path) -> None:
    """``mkdir -p`` that syncs the parent of every directory it creates."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory)) from None
            continue
        fsync_directory(directory.parent)


def replace_file(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably (temporary file, fsync, rename, fsync
    of the directory)."""
    make_directory(path.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(path.parent)
    return path


# --- the log's lines ------------------------------------------------------------------------------


def _valid_line(text: bytes) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, UnicodeDecodeError):
        return False


def _last_line_start(fh, end: int) -> int:
    """Offset where the line ending at ``end`` (exclusive of a newline at ``end``) starts."""
    position = end
    while position > 0:
        step = min(_CHUNK, position)
        fh.seek(position - step)
        chunk = fh.read(step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return position - step + cut + 1
        position -= step
    return 0


def _count_newlines(fh, end: int) -> int:
    fh.seek(0)
    count, left = 0, end
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def repair_torn_line(path: str | os.PathLike) -> Optional[str]:
    """Cut a torn last line off a log file (``configs.json`` or ``results.json``).

    A line is torn when the write that made it was interrupted: it has no line end, or it is
    not a JSON list (zeros left by a crash, half a value). Only the last line can be torn (lines
    are appended one at a time and synced); every complete line is kept. The file is truncated
    after its last good line and synced.

    Returns a one-line warning naming the file, the line number and what was cut, or None when
    the file is missing, empty or whole.
    """
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return None
        fh.seek(size - 1)
        ends_with_newline = fh.read(1) == b"\n"
        end = size - 1 if ends_with_newline else size
        start = _last_line_start(fh, end)
        fh.seek(start)
        last = fh.read(end - start)
        if ends_with_newline and _valid_line(last):
            return None
        line_number = _count_newlines(fh, start) + 1
        os.ftruncate(fh.fileno(), start)
        os.fsync(fh.fileno())
    why = "not a JSON list" if ends_with_newline else "no line end"
    return (f"{path}: line {line_number}: cut a torn last line ({len(last)} bytes, {why}) left by an "
            f"interrupted write; {line_number - 1} complete line(s) kept")


def read_log_lines(path: str | os.PathLike) -> list[list]:
    """Every line of a log file, parsed (each a JSON list); ``[]`` when the file is missing.

    Nothing is skipped: a line that is not a JSON list (a torn last line included: cut it with
    :func:`repair_torn_line` first) raises a :class:`UserError` naming the file and line.
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []
    lines = []
    with fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                raise UserError(f"{path}: line {number}: torn last line (no line end); it is cut when the run "
                                f"is resumed")
            try:
                value = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise UserError(f"{path}: line {number}: not valid JSON ({first_line(exc)})") from None
            if not isinstance(value, list):
                raise UserError(f"{path}: line {number}: expected a JSON list, got {type(value).__name__}")
            lines.append(value)
    return lines


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    text = str(exc).splitlines()
    return text[0] if text else type(exc).__name__
