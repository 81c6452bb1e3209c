"""Shared test helpers: run the ``hpo`` command as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "tests" / "spaces"


def hpo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpo", *args]


@pytest.fixture
def run_hpo():
    """Run ``python -m hpo ARGS`` to completion (bounded by ``timeout``); returns the CompletedProcess."""

    def run(*args: str, timeout: float = 180, env: dict | None = None, cwd: str | None = None):
        return subprocess.run(hpo_command(*args), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=cwd or str(ROOT), stdin=subprocess.DEVNULL)

    return run
