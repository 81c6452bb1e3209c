"""The results log of a run: hpbandster's ``configs.json``/``results.json`` line format, plus ``run.json``.

Lines are appended and the file closed (so flushed) as each configuration and result arrives,
so ``hpbandster.core.result.logged_results_to_HBS_result(dir)`` and ``hpo-report`` can read a
run while it goes. Values are JSON-native only: a non-finite loss is written as ``null``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

from hpbandster.core.result import json_result_logger

from hpo.errors import UserError
from hpo.values import to_json_safe

LOG_FILES = ("configs.json", "results.json")
RUN_FILE = "run.json"
VERSIONED_PACKAGES = ("hpo", "hpbandster", "ConfigSpace", "Pyro4", "numpy", "pandas", "torch", "torchvision")


class ResultsLog(json_result_logger):
    """hpbandster's JSON result logger, writing only JSON-native values."""

    def __init__(self, directory: str | os.PathLike) -> None:
        check_free(directory)
        super().__init__(str(directory), overwrite=False)
        self.directory = Path(directory)

    def new_config(self, config_id, config, config_info) -> None:
        super().new_config(config_id, to_json_safe(config), to_json_safe(config_info))

    def __call__(self, job) -> None:
        if job.id not in self.config_ids:
            self.new_config(job.id, job.kwargs["config"], {})
        line = [job.id, job.kwargs["budget"], job.timestamps, job.result, job.exception]
        with open(self.results_fn, "a") as fh:
            fh.write(json.dumps(to_json_safe(line), allow_nan=False) + "\n")


def check_free(directory: str | os.PathLike) -> None:
    """Refuse a results directory that already holds a run: nothing recorded is ever overwritten."""
    for name in LOG_FILES:
        path = Path(directory) / name
        if path.exists() and path.stat().st_size > 0:
            raise UserError(f"{directory}: already holds a run ({name}); pick another --results directory")
    if Path(directory).exists() and not Path(directory).is_dir():
        raise UserError(f"{directory}: exists and is not a directory")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a run's results (those installed here)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_metadata(directory: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Write ``run.json`` atomically (a reader never sees half a file)."""
    path = Path(directory) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".run.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(to_json_safe(dict(metadata)), fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_run_metadata(directory: str | os.PathLike) -> dict:
    path = Path(directory) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}
