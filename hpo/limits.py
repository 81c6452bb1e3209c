"""What one host can run: ``hpo run --workers`` and ``--devices`` checked before anything starts.

Each worker is an OS process holding a model and its data. On CPU, workers share the cores: more
than :data:`WORKERS_PER_CPU` per usable core only thrashes (and 1,000 of them exhaust memory and
process tables). On GPUs, each worker gets a device in turn: more workers than listed devices
would put two on one GPU (each then risks running out of memory); to share a GPU on purpose,
list it twice (``--devices cuda:0,cuda:0``). ``--force`` allows more anyway.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

from hpo.errors import UserError

WORKERS_PER_CPU = 4
_DEVICE = re.compile(r"cpu|mps|(cuda|xpu)(:[0-9]+)?")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity, e.g. a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_devices(text: Optional[str], gpus: Sequence[str] = (), flag: str = "--devices") -> Optional[list[str]]:
    """The devices of a comma-separated ``--devices`` value, checked (None when not given).

    A device is ``cpu``, ``mps``, ``cuda``/``xpu`` or ``cuda:N``/``xpu:N``; when ``gpus`` (the
    GPUs found on this host, ``cuda:0``...) is not empty, ``cuda:N`` must be one of them."""
    if text is None:
        return None
    devices = [item.strip() for item in text.split(",")]
    for device in devices:
        if not device:
            raise UserError(f"{flag} {text!r}: an empty entry (devices are separated by single commas)")
        if not _DEVICE.fullmatch(device):
            raise UserError(f"{flag} {text!r}: {device!r} is not a device (cpu, cuda, cuda:N, mps)")
        if gpus and device.startswith("cuda:") and device not in gpus:
            raise UserError(f"{flag} {text!r}: no GPU {device} on this host (it has {', '.join(gpus)})")
    return devices


def worker_limit(devices: Sequence[str]) -> tuple[int, str]:
    """The most workers this host runs well with ``devices`` (those workers get in turn; empty:
    CPU), and the reason, for messages."""
    accelerators = [d for d in devices if d != "cpu"]
    if accelerators:
        return len(devices), f"{len(devices)} device(s) given to workers in turn; list a GPU twice to share it"
    cpus = usable_cpus()
    return WORKERS_PER_CPU * cpus, f"{WORKERS_PER_CPU} per CPU core, {cpus} core(s) here"


def check_worker_count(workers: int, devices: Sequence[str], force: bool = False, flag: str = "--workers") -> int:
    """``workers`` when it is at least 1 and, unless ``force``, within :func:`worker_limit`."""
    if workers < 1:
        raise UserError(f"{flag}: must be >= 1 (got {workers})")
    limit, why = worker_limit(devices)
    if workers > limit and not force:
        raise UserError(f"{flag} {workers}: more than this host runs well (at most {limit}: {why}); "
                        f"add --force to start them anyway")
    return workers
