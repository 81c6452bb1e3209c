"""The image-classifier job: transfer learning of a torchvision model, budget = epochs.

``run(config, context)`` reads the configuration (:mod:`workers.config`), builds the data
splits, model, optimizer and schedule, trains ``epochs_for_budget(context.budget)`` epochs and
returns ``{"loss", "info"}``. The loss is the validation cross-entropy at the end of the budget
(``objective: val_loss``) or the validation error ``1 - accuracy`` (``objective: val_error``).
Test metrics are measured only at the run's max budget, and never used for selection.

**Continuation.** With a ``context.checkpoint_dir`` (see :mod:`hpo.checkpoints`) the job writes
a checkpoint after every epoch (:mod:`workers.checkpointing`) and starts from the latest one that
fits its budget: a configuration promoted from budget 3 to 9 trains only epochs 4 to 9, and a job
run again after its worker died goes on from its last epoch. Epoch ``e`` is seeded from (job seed,
``e``) only, so this is exact: the weights, history and loss are those of training from scratch.
``info`` has the whole ``history``, ``epochs`` in all, ``epochs_trained`` by this job and
``continued_from`` (0: from scratch); a checkpoint that cannot be used means from scratch, with
``info["checkpoint_warning"]`` saying why.

**Early stopping and the best epoch** (:mod:`workers.early_stopping`). A job that stops early
records ``stopped_early``, ``stop_reason`` and ``best_epoch`` in ``info`` (``epochs`` is then less
than its budget's). A promoted job whose checkpoint stopped early trains no further: it returns the
result of the epochs trained, with ``already_stopped: true``. The loss BOHB sees is always that of
the reported epoch: the last one trained, or with ``restore_best`` the best one (its metrics,
``restored_best_epoch``, and its weights for the test metrics and as the checkpoint's ``model``);
training itself always continues from the last epoch (the checkpoint's ``last_model``).

Problems the user can fix (a bad value, weights or data that are not available, an unreadable
image under ``strict_images``) and training failures (``diverged``, CUDA ``oom``) come back as
failure results with a one-line message: the worker keeps serving.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import zlib
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

import torch

from hpo.errors import UserError
from hpo.jobs import JobContext, JobResult, failure, with_epoch_report
from workers.checkpointing import TrainingState, fingerprint, restore
from workers.checkpointing import save as save_checkpoint
from workers.config import ClassifierConfig, read_config
from workers.datasets import check_dataset, load_dataset
from workers.devices import (
    TrainingSettings,
    apply_global_settings,
    device_name,
    free_device_memory,
    resolve_device,
    training_settings,
)
from workers.errors import Diverged
from workers.input_pipeline import build_pipeline
from workers.models import ClassifierModel, build_model, check_model_name
from workers.early_stopping import EarlyStopping, early_stopping_from_config, validation_objective
from workers.optimization import build_optimizer, epochs_for_budget
from workers.regimes import parameter_groups
from workers.schedules import build_schedule, spec_from_config
from workers.splits import Splits, make_splits
from workers.training import evaluate, fit, make_scaler
from workers.transforms import eval_transform, train_transform

logger = logging.getLogger(__name__)


@dataclass
class PreparedJob:
    """Everything built from the configuration, ready to train."""

    config: ClassifierConfig
    context: JobContext
    settings: TrainingSettings
    seed: int
    epochs: int
    max_epochs: int
    splits: Splits
    classifier: Optional[ClassifierModel]
    optimizer: Optional[torch.optim.Optimizer]
    scheduler: Any  # workers.schedules.EpochSchedule
    loaders: dict
    skipped_images: int
    started: float
    continued_from: int = 0  # epochs loaded from a checkpoint
    checkpoint_warning: Optional[str] = None
    trainer: Optional[ClassifierModel] = None  # what trains on the loaders: the model, or its head on cached features
    input_path: str = "images"  # workers.input_pipeline: "features", "decoded" or "images"
    stopping: Optional[EarlyStopping] = None  # the best epoch so far, and early stopping
    already_stopped: bool = False  # the checkpoint continued from had stopped early

    @property
    def at_max_budget(self) -> bool:
        return self.context.budget >= self.context.max_budget * (1 - 1e-9)

    def release(self) -> None:
        """Drop the model and optimizer (to free device memory)."""
        self.classifier = self.optimizer = self.scheduler = self.trainer = None
        self.loaders = {}


def job_seed(seed: int, config_id: Any) -> int:
    """The seed of a job: the run's seed combined with the configuration's id (same for every budget)."""
    ids = tuple(int(i) for i in config_id) if config_id else ()
    return (int(seed) * 1_000_003 + zlib.crc32(repr(ids).encode())) % 2**31


def prepare(config: Mapping[str, Any], context: JobContext) -> PreparedJob:
    """Read ``config`` and build data, model and optimizer (raises ``UserError`` on bad input)."""
    started = time.time()
    cfg = read_config(config)
    options = dict(context.options or {})
    if options.get("torch_threads"):
        torch.set_num_threads(int(options["torch_threads"]))
    settings = training_settings(resolve_device(context.device))
    apply_global_settings(settings)
    epochs = epochs_for_budget(context.budget)
    max_epochs = max(epochs_for_budget(context.max_budget), epochs)
    seed = job_seed(context.seed, context.config_id)
    schedule = spec_from_config(cfg, max_epochs)  # bad schedule or stopping keys fail before any work
    stopping = early_stopping_from_config(cfg)
    strict = cfg.strict_images or bool(options.get("strict_images", False))

    data = load_dataset(cfg.dataset, context.data_root, cfg.data_dir, strict_images=strict)
    splits = make_splits(
        data,
        train_transform(cfg.image_size, cfg.augmentation),
        eval_transform(cfg.image_size),
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.split_seed,
        max_train_images=cfg.max_train_images,
        max_eval_images=cfg.max_eval_images,
    )
    torch.manual_seed(seed)
    classifier = build_model(cfg.model, data.num_classes, cfg.weights, cfg.regime, cfg.trainable_blocks, cfg.dropout)
    classifier.label_smoothing = cfg.label_smoothing
    groups = parameter_groups(classifier.model, classifier.head_name, cfg.lr, cfg.backbone_lr_scale)
    optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.nesterov)
    scheduler = build_schedule(optimizer, schedule)
    pipeline = build_pipeline(cfg, splits, classifier, settings, seed, options)
    return PreparedJob(
        cfg, context, settings, seed, epochs, max_epochs, splits, classifier, optimizer, scheduler, pipeline.loaders,
        len(data.skipped_images), started, trainer=pipeline.classifier, input_path=pipeline.path,
        stopping=stopping,
    )


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _reported_epoch(job: PreparedJob, history: list) -> dict:
    """The history entry the result reports: the best epoch's with ``restore_best``, else the last."""
    if job.config.restore_best and job.stopping is not None and 1 <= job.stopping.best_epoch <= len(history):
        return history[job.stopping.best_epoch - 1]
    return history[-1] if history else {}


def _stopping_info(job: PreparedJob, history: list) -> dict:
    """``stopped_early``, ``stop_reason``, ``best_epoch`` (and ``restored_best_epoch``, ``already_stopped``)."""
    stopping = job.stopping
    if stopping is None or not history:
        return {}
    info = {"stopped_early": stopping.stopped, "stop_reason": stopping.stop_reason, "best_epoch": stopping.best_epoch}
    if job.config.restore_best:
        info["restored_best_epoch"] = stopping.best_epoch
    if job.already_stopped:
        info["already_stopped"] = True
    return info


def _info(job: PreparedJob, history: list) -> dict:
    last = _reported_epoch(job, history)
    trainable, total = job.classifier.parameter_counts() if job.classifier else (None, None)
    info = {
        "status": "ok",
        "epochs": len(history),
        "epochs_trained": len(history) - job.continued_from,
        "continued_from": job.continued_from,
        "budget": job.context.budget,
        "max_epochs": job.max_epochs,
        "loss_metric": job.config.objective,
        "train_loss": last.get("train_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
        "test_loss": None,
        "test_accuracy": None,
        "history": [{key: _finite_or_none(value) for key, value in entry.items()} for entry in history],
        "wall_time": time.time() - job.started,
        "device": device_name(job.settings.device),
        "trainable_params": trainable,
        "total_params": total,
        "trains": job.classifier.trains if job.classifier else None,
        "skipped_images": job.skipped_images,
        "seed": job.seed,
        "train_images": len(job.splits.train),
        "val_images": len(job.splits.val),
        "test_images": len(job.splits.test),
        "input": job.input_path,
    }
    info.update(_stopping_info(job, history))
    if job.checkpoint_warning:
        info["checkpoint_warning"] = job.checkpoint_warning
    return {key: _finite_or_none(value) for key, value in info.items()}


def _continue(job: PreparedJob) -> tuple[list, TrainingState]:
    """The history to continue (empty: from scratch) and the state that checkpoints save."""
    state = TrainingState(job.classifier.model, job.optimizer, job.scheduler, make_scaler(job.settings),
                          fingerprint(repr(job.config), job.seed, job.max_epochs), stopping=job.stopping,
                          keep_best=job.config.restore_best)
    continuation = restore(job.context.checkpoint_dir, state, job.epochs, job.context.previous_budget)
    job.continued_from, job.checkpoint_warning = continuation.epochs, continuation.warning
    job.already_stopped = bool(job.stopping and job.stopping.stopped)
    return continuation.history, state


def _checkpoint_saver(job: PreparedJob, state: TrainingState):
    """``on_epoch_end`` for :func:`~workers.training.fit`: note the best epoch's weights (``restore_best``)
    and save a checkpoint; a failed write is a warning."""
    def save(history: list) -> None:
        state.note_epoch(history)
        try:
            save_checkpoint(job.context.checkpoint_dir, state, history)
        except OSError as exc:
            job.checkpoint_warning = f"could not write a checkpoint in {job.context.checkpoint_dir}: {exc}"
            logger.warning("job %s: %s", job.context.config_id, job.checkpoint_warning)

    return with_epoch_report(save if job.context.checkpoint_dir else state.note_epoch, job.context)  # hpo train prints epochs


def execute(job: PreparedJob) -> JobResult:
    """Train the prepared job and return its result (failures as failure results)."""
    history: list = []
    out_of_memory = None
    try:
        job.classifier.model.to(job.settings.device)
        if job.settings.channels_last:
            job.classifier.model.to(memory_format=torch.channels_last)
        history, state = _continue(job)
        fit(job.trainer or job.classifier, job.loaders["train"], job.loaders["val"], job.optimizer, job.scheduler,
            job.epochs, job.settings, history, job.started, seed=job.seed, scaler=state.scaler,
            on_epoch_end=_checkpoint_saver(job, state), objective=job.config.objective, stopping=job.stopping)
        info = _info(job, history)
        if state.best_model is not None:  # restore_best: the reported (and tested) model is the best epoch's
            job.classifier.model.load_state_dict(state.best_model)
        if job.at_max_budget:
            info["test_loss"], info["test_accuracy"] = evaluate(job.trainer or job.classifier, job.loaders["test"], job.settings)
    except Diverged as exc:  # failures are logged once, by whoever runs the job
        return failure("diverged", str(exc), **_without_status(_info(job, history)))
    except torch.cuda.OutOfMemoryError as exc:
        out_of_memory = str(exc).splitlines()[0]
    if out_of_memory is not None:  # outside the except block, so the traceback no longer pins tensors
        info = _info(job, history)
        job.release()
        gc.collect()
        free_device_memory(job.settings.device)
        return failure("oom", f"CUDA out of memory: {out_of_memory}", **_without_status(info))
    loss = validation_objective(info, job.config.objective)  # of the reported epoch (restore_best: the best)
    return {"loss": loss, "info": info}


def _without_status(info: dict) -> dict:
    return {key: value for key, value in info.items() if key not in {"status", "reason", "message"}}


def run(config: Mapping[str, Any], context: JobContext) -> JobResult:
    """Train an image classifier as ``config`` says, for ``context.budget`` epochs."""
    try:
        job = prepare(config, context)
    except UserError as exc:
        reason = getattr(exc, "reason", "config")  # said once, by whoever runs the job (worker log, hpo train)
        return failure(reason, str(exc), epochs=0, budget=context.budget, history=[])
    return execute(job)


def check_config(config: Mapping[str, Any]) -> None:
    """Raise a ``JobSetupError`` (one line) for a configuration that could only fail when the job
    runs: a bad value, a missing companion key (``trainable_blocks`` for ``partial``, ``lr_step_size``
    for ``step``), a model torchvision does not have. The checks ``prepare`` runs, without building a
    model or reading data (weights files and data directories are checked where the job runs)."""
    cfg = read_config(config)
    spec_from_config(cfg, 1)
    early_stopping_from_config(cfg)
    check_model_name(cfg.model)
    check_dataset(cfg.dataset, cfg.data_dir)
    train_transform(cfg.image_size, cfg.augmentation)  # image_size and augmentation; builds no data
    build_optimizer(cfg.optimizer, [torch.zeros(1, requires_grad=True)], cfg.lr, cfg.weight_decay, cfg.momentum,
                    cfg.nesterov)


run.check_config = check_config  # type: ignore[attr-defined]

#: The keys this job reads (``hpo train --set`` accepts them even where a space leaves them out).
run.config_keys = frozenset(spec.name for spec in fields(ClassifierConfig))  # type: ignore[attr-defined]
