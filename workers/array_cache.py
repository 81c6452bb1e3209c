"""Arrays computed once per host: memory-mapped ``.npy`` files keyed by a hash of their inputs.

A cached array lives at ``<cache dir>/<kind>/<key>.npy``, where ``key`` hashes everything that
determines its content. The first process to need it fills it under an exclusive inter-process
lock (:mod:`workers.locks`) into a temporary file that is renamed into place only when complete,
so concurrent workers compute it once and nobody ever maps a half-written file. A file whose
header or size does not match what is expected (a partial copy, a disk error) is rebuilt.

Cache directory: ``options["cache_dir"]`` (from the job context), else ``$HPO_CACHE_DIR``, else
``~/.cache/hpo/cache``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from workers.locks import exclusive_lock

logger = logging.getLogger(__name__)

CACHE_ENV = "HPO_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/hpo/cache"


def resolve_cache_dir(options: Optional[Mapping[str, Any]] = None) -> Path:
    """``options["cache_dir"]``, else ``$HPO_CACHE_DIR``, else ``~/.cache/hpo/cache``."""
    chosen = (options or {}).get("cache_dir") or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def content_key(**parts: Any) -> str:
    """A short hex digest of ``parts`` (JSON with sorted keys; non-JSON values by ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _open_valid(path: Path, shape: tuple, dtype: np.dtype) -> Optional[np.ndarray]:
    """The array at ``path`` read-only mapped, or None when it is missing or does not fit."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        logger.warning("cache %s unreadable (%s); rebuilding it", path, exc)
        return None
    if array.shape != tuple(shape) or array.dtype != dtype:
        logger.warning("cache %s holds %s %s, not %s %s; rebuilding it", path, array.shape, array.dtype, shape, dtype)
        return None
    return array


def cached_array(path: Path, shape: tuple, dtype: Any, fill: Callable[[np.ndarray], None]) -> np.ndarray:
    """The array at ``path`` (read-only memory map), made by ``fill(writable array)`` when absent or bad.

    ``fill`` runs at most once per host at a time (under ``<path>.lock``) and writes every element.
    """
    dtype = np.dtype(dtype)
    array = _open_valid(path, shape, dtype)
    if array is not None:
        return array
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.with_name(path.name + ".lock")):
        array = _open_valid(path, shape, dtype)  # another process may have made it meanwhile
        if array is not None:
            return array
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            writable = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=tuple(shape))
            fill(writable)
            writable.flush()
            del writable
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()
    logger.info("cached %s %s into %s", shape, dtype, path)
    return np.load(path, mmap_mode="r", allow_pickle=False)
