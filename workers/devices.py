"""Which device a job trains on, and the speed settings that go with it.

On CUDA a job uses autocast mixed precision (bfloat16 where the card supports it, else
float16 with a gradient scaler), ``channels_last`` memory format, ``cudnn.benchmark`` and
pinned host memory, and (``default_loader_workers``) loader processes take a share of the host's
cores. On CPU none of these apply: training runs in float32 with loading inline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from hpo.errors import UserError


@dataclass(frozen=True)
class TrainingSettings:
    """How to run the training loop on one device."""

    device: torch.device
    amp_dtype: Optional[torch.dtype]  # None: no autocast (float32)
    use_grad_scaler: bool  # float16 autocast needs loss scaling
    channels_last: bool
    cudnn_benchmark: bool
    pin_memory: bool

    @property
    def non_blocking(self) -> bool:
        return self.pin_memory


def resolve_device(requested: Optional[str]) -> torch.device:
    """The device a job should use: ``requested`` (e.g. ``"cuda:1"``), else CUDA when available, else CPU."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"device {requested!r}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {requested!r}: CUDA is not available on this host")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {requested!r}: this host has {torch.cuda.device_count()} CUDA device(s)")
    return device


def training_settings(device: torch.device, bf16_supported: Optional[bool] = None) -> TrainingSettings:
    """The settings for ``device``. ``bf16_supported`` overrides the CUDA query (for tests)."""
    if device.type != "cuda":
        return TrainingSettings(device, None, False, False, False, False)
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    amp_dtype = torch.bfloat16 if bf16_supported else torch.float16
    return TrainingSettings(
        device=device,
        amp_dtype=amp_dtype,
        use_grad_scaler=amp_dtype == torch.float16,
        channels_last=True,
        cudnn_benchmark=True,
        pin_memory=True,
    )


MAX_LOADER_WORKERS = 8


def default_loader_workers(device: torch.device, cores: Optional[int] = None, gpus: Optional[int] = None) -> int:
    """Loader processes for a job on ``device``: 0 on CPU (the cores train); on CUDA the host's
    cores shared among its GPUs (one job each), less one for the training process, 1 to 8."""
    if device.type != "cuda":
        return 0
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    gpus = gpus if gpus is not None else max(torch.cuda.device_count(), 1)
    return max(1, min(MAX_LOADER_WORKERS, cores // max(gpus, 1) - 1))


def loader_workers(options: Optional[Mapping[str, Any]], device: torch.device) -> int:
    """``options["loader_workers"]`` when set (0 included), else ``default_loader_workers(device)``."""
    value = (options or {}).get("loader_workers")
    return default_loader_workers(device) if value is None else int(value)


def apply_global_settings(settings: TrainingSettings) -> None:
    """Set process-wide switches (cuDNN autotuning, the current CUDA device)."""
    if settings.device.type == "cuda":
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
        if settings.device.index is not None:
            torch.cuda.set_device(settings.device)


def free_device_memory(device: torch.device) -> None:
    """Return cached CUDA memory to the driver (after an out-of-memory error)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    """A readable description of ``device`` for results, e.g. ``cuda:0 (NVIDIA H100)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)
