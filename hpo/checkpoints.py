"""Checkpoints keyed by (run, configuration): where they live, how they are written, which are kept.

A run's checkpoints live under one **root** that every worker of the run reaches (default
``RESULTS/checkpoints``; ``--checkpoint-dir DIR`` puts them in ``DIR/<run-id>`` on a shared file
system). Each configuration has its own directory, ``<root>/<i>_<j>_<k>`` for config id
``(i, j, k)``, holding checkpoint files named ``epoch-00007.<suffix>`` by the number of epochs they
hold. A job writes one after each epoch (:func:`save_atomic`: a temporary file, fsync, rename,
fsync of the directory, so a crash never leaves a torn checkpoint under a real name) and deletes
the older ones (:func:`prune`); a job at a higher budget, or a job run again after its worker
died, continues from :func:`latest`. What the files hold is the job's business
(:mod:`workers.checkpointing` for the image classifier, a small JSON file for the synthetic job).

The master decides what is kept (:class:`CheckpointKeeper`, ``--keep-checkpoints``): a
configuration's directory is deleted as soon as successive halving can no longer promote it
(stopped at a lower budget, failed, or beaten at the max budget); when the run finishes, ``best``
(the default) keeps only the best configuration at the highest budget (recorded as ``best_model``
in ``run.json``), ``all`` keeps everything, ``none`` nothing. This module needs no torch.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from hpo.durable_files import fsync_directory

logger = logging.getLogger("hpo.checkpoints")

#: What ``--keep-checkpoints`` accepts.
KEEP_POLICIES = ("best", "all", "none")
DEFAULT_KEEP = "best"
#: The default root under a results directory.
DEFAULT_SUBDIRECTORY = "checkpoints"

_NAME = re.compile(r"epoch-(\d{5,})\.([A-Za-z0-9]+)")


def config_directory(root: str | os.PathLike, config_id: Iterable[Any]) -> Path:
    """The directory of one configuration's checkpoints: ``<root>/<i>_<j>_<k>``."""
    return Path(root) / "_".join(str(int(part)) for part in config_id)


def root_problem(root: str | os.PathLike) -> Optional[str]:
    """Why checkpoints cannot be written under ``root`` (a short phrase), or None. Nothing is made:
    the nearest existing ancestor must be a writable directory."""
    path = Path(root).absolute()
    while not path.exists():
        if path.parent == path:
            return "no such place"
        path = path.parent
    if not path.is_dir():
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


def checkpoint_path(directory: str | os.PathLike, epochs: int, suffix: str) -> Path:
    """The file holding the state after ``epochs`` epochs: ``<directory>/epoch-00007.<suffix>``."""
    return Path(directory) / f"epoch-{int(epochs):05d}.{suffix}"


def checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epochs, path) of every checkpoint file in ``directory``, oldest first; [] when there is none
    or the directory cannot be read."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match:
            found.append((int(match.group(1)), Path(directory) / name))
    return sorted(found)


def latest(directory: str | os.PathLike, at_most: Optional[int] = None) -> Optional[tuple[int, Path]]:
    """The checkpoint with the most epochs (no more than ``at_most``), or None."""
    found = [entry for entry in checkpoints(directory) if at_most is None or entry[0] <= at_most]
    return found[-1] if found else None


def save_atomic(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Write a file by calling ``write(binary file object)`` on a temporary file in the same
    directory, then fsync, rename to ``path`` and fsync the directory: ``path`` is either its old
    content or complete. Missing parent directories are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with _suppress_os_error():
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)
    return path


def prune(directory: str | os.PathLike, keep: str | os.PathLike) -> None:
    """Delete the checkpoints of ``directory`` older than ``keep`` (fewer epochs); errors are ignored."""
    keep = Path(keep)
    kept = _NAME.fullmatch(keep.name)
    if kept is None:
        return
    for epochs, path in checkpoints(directory):
        if epochs < int(kept.group(1)):
            with _suppress_os_error():
                path.unlink()


def remove(directory: str | os.PathLike) -> bool:
    """Delete a configuration's checkpoint directory; True when there was one and it is gone."""
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        return False  # never made (the job failed first) or gone already
    except OSError as exc:
        logger.warning("could not delete checkpoints %s: %s", directory, exc)
        return False
    return True


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, traceback) -> bool:
        return kind is not None and issubclass(kind, OSError)


# --- the master's side: what is kept -----------------------------------------------------------


def _finite_loss(result: Any) -> Optional[float]:
    if isinstance(result, dict):
        loss = result.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss):
            return float(loss)
    return None


class CheckpointKeeper:
    """Deletes the checkpoints of configurations successive halving can no longer promote, and at
    the end of a finished run applies the keep policy.

    :meth:`sweep` reads hpbandster's iterations (their ``data``: status and budget of each
    configuration). A configuration stays while it is ``QUEUED``, ``RUNNING`` or ``REVIEW`` (its
    stage is not decided yet). Once ``TERMINATED`` or ``CRASHED`` (not promoted, failed), or
    ``COMPLETED`` below the max budget, its directory is deleted, unless the policy is ``all``.
    Configurations completed at the max budget are candidates for the best model: under ``best``
    only the best so far is kept, under ``none`` they go too. Sweeping is idempotent and safe
    after ``--resume`` replayed the iterations: configurations still to run are never touched.
    """

    def __init__(self, root: str | os.PathLike, policy: str = DEFAULT_KEEP, max_budget: float = math.inf) -> None:
        if policy not in KEEP_POLICIES:
            raise ValueError(f"keep policy {policy!r}: must be one of {', '.join(KEEP_POLICIES)}")
        self.root = Path(root)
        self.policy = policy
        self.max_budget = max_budget
        self.best: Optional[tuple[float, tuple]] = None  # (loss, config id) at the max budget
        self._done: set[tuple] = set()

    def _at_max_budget(self, budget: float) -> bool:
        return budget >= self.max_budget * (1 - 1e-9)

    def sweep(self, iterations: Iterable[Any]) -> list[tuple]:
        """Delete what can go now; returns the config ids whose directories were deleted (not those
        that never had one)."""
        if self.policy == "all":
            return []
        deleted = []
        for iteration in iterations:
            for config_id, datum in list(iteration.data.items()):
                config_id = tuple(config_id)
                if config_id in self._done or datum.status not in ("TERMINATED", "CRASHED", "COMPLETED"):
                    continue
                self._done.add(config_id)
                loss = _finite_loss(datum.results.get(datum.budget))
                if datum.status == "COMPLETED" and loss is not None and self._at_max_budget(datum.budget):
                    if self.policy == "best":
                        if self.best is None or loss < self.best[0]:
                            beaten, self.best = self.best, (loss, config_id)
                            if beaten is None:
                                continue
                            config_id = beaten[1]
                    # else (none): deleted below like any other
                if remove(config_directory(self.root, config_id)):
                    deleted.append(config_id)
        if deleted:
            logger.info("deleted the checkpoints of %d configuration(s) that can no longer be promoted",
                        len(deleted))
        return deleted

    def finish(self, iterations: Iterable[Any]) -> Optional[dict]:
        """At the end of a finished run: sweep, delete every other directory under the root (left by
        a job that ran on after its worker was declared lost), and return ``best_model`` for
        ``run.json`` (None when nothing is kept or nothing reached the max budget)."""
        iterations = list(iterations)
        self.sweep(iterations)
        if self.policy == "all":
            return self._best_model(self._best_of(iterations))
        keep = config_directory(self.root, self.best[1]).name if self.policy == "best" and self.best else None
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            entries = []
        for entry in entries:
            if entry.name != keep and entry.is_dir(follow_symlinks=False):
                remove(entry.path)
        if self.policy == "none":
            with _suppress_os_error():
                self.root.rmdir()
            return None
        return self._best_model(self.best)

    def _best_of(self, iterations: list) -> Optional[tuple[float, tuple]]:
        best = None
        for iteration in iterations:
            for config_id, datum in iteration.data.items():
                loss = _finite_loss(datum.results.get(datum.budget))
                if loss is not None and self._at_max_budget(datum.budget) and (best is None or loss < best[0]):
                    best = (loss, tuple(config_id))
        return best

    def _best_model(self, best: Optional[tuple[float, tuple]]) -> Optional[dict]:
        if best is None:
            return None
        directory = config_directory(self.root, best[1])
        found = latest(directory)
        return {"config_id": list(best[1]), "loss": best[0], "budget": self.max_budget,
                "directory": str(directory), "path": str(found[1]) if found else None,
                "epochs": found[0] if found else None}
