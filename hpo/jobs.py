"""What a worker runs: the job interface, and how a job is found by name.

A job is a callable ``job(config, context) -> JobResult``. ``config`` is the configuration
BOHB sampled (plain Python values: every searched and every constant hyperparameter of the
search space), ``context`` says what else the job needs to know about the run (the budget,
the run's max budget, the device, where data and checkpoints live).

A job returns ``{"loss": float | None, "info": {...}}``: ``loss`` is what BOHB minimises,
``info`` holds what was measured and only JSON-native values. A job that fails in a way the
user should see (diverged, out of memory) returns :func:`failure` instead of raising: the
worker keeps serving and the failure lands in the results log with its reason.

A job may declare the configuration keys it reads as a ``config_keys`` attribute (a set of
names); ``hpo train --set`` then also accepts those keys when the search space leaves them to
the job's defaults (e.g. ``max_train_images`` for a quick debugging run).

A job may also have a ``check_config(config)`` attribute that raises (one line) for a
configuration that could only fail at run time (a bad value, a missing companion key), without
building a model or reading data. ``hpo space check``, ``hpo run`` and ``hpo master`` then check the
space before anything starts (:func:`hpo.job_check.check_space_config`): keys outside
``config_keys``, the default configuration, and each constant, choice and range end. A job
without it is not checked.

Jobs are registered under the ``hpo.jobs`` entry-point group (``name = module:callable``);
a ``module:callable`` string works too, so users can plug in their own job without packaging
(a worker runs such a job only when its own command line names it: see :mod:`hpo.worker`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import re
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping, Optional, Protocol, TypedDict

from hpo.errors import UserError

DEFAULT_JOB = "image_classifier"

#: Failure reasons that mean the user's input is wrong (the configuration, the job, its data or
#: weights) rather than the training (diverged, oom).
SETUP_REASONS = ("config", "job", "data", "weights", "images")

#: Jobs shipped with the project, usable even when the package is not installed
#: (entry points then do not exist, e.g. when running from a source tree).
BUILTIN_JOBS = {
    "image_classifier": "workers.image_classifier:run",
    "synthetic": "workers.synthetic:run",
}


class JobResult(TypedDict):
    loss: Optional[float]
    info: dict


@dataclass(frozen=True)
class JobContext:
    """Everything about the run a job may need besides its configuration."""

    budget: float
    max_budget: float
    min_budget: float
    run_id: str = "local"
    config_id: tuple = ()
    seed: int = 0
    device: Optional[str] = None  # None: pick CUDA when available, else CPU
    data_root: Optional[str] = None  # None: the job's default (HPO_DATA_ROOT or ~/.cache/hpo/data)
    working_directory: str = "."  # per-run scratch space shared by the run's jobs
    options: Mapping[str, Any] = field(default_factory=dict)  # worker-side settings, e.g. loader workers
    #: This configuration's checkpoint directory (``<checkpoint root>/<i>_<j>_<k>``, see
    #: :mod:`hpo.checkpoints`), shared by the run's workers; None: the job keeps no checkpoints.
    #: A job continues from the latest checkpoint there that fits its budget and writes one per epoch.
    checkpoint_dir: Optional[str] = None
    #: The budget this configuration finished before in this run (so a checkpoint is expected), or None.
    previous_budget: Optional[float] = None
    #: Called with each epoch's history entry (``epoch``, ``train_loss``, ``val_loss``, ...) as soon as
    #: the epoch is done: ``hpo train`` prints it. None in a search (workers print nothing).
    report_epoch: Optional[Callable[[Mapping[str, Any]], None]] = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "report_epoch"}


def with_epoch_report(on_epoch_end: Optional[Callable[[list], None]],
                      context: JobContext) -> Optional[Callable[[list], None]]:
    """An ``on_epoch_end(history)`` callback that also hands the epoch just done to
    ``context.report_epoch`` (``on_epoch_end`` itself when there is none to report to)."""
    report = context.report_epoch
    if report is None:
        return on_epoch_end

    def epoch_end(history: list) -> None:
        if on_epoch_end is not None:
            on_epoch_end(history)
        report(history[-1])

    return epoch_end


class Job(Protocol):
    def __call__(self, config: Mapping[str, Any], context: JobContext) -> JobResult: ...


def failure(reason: str, message: str, **info: Any) -> JobResult:
    """A failed job's result: no loss, and the reason in ``info`` (``status`` is ``"failed"``)."""
    return {"loss": None, "info": {"status": "failed", "reason": reason, "message": message, **info}}


def is_failure(result: Optional[Mapping[str, Any]]) -> bool:
    """True for a missing result, a failure result, or one whose loss is not a finite number."""
    if not result:
        return True
    loss = result.get("loss")
    return not isinstance(loss, (int, float)) or not math.isfinite(loss)


@functools.lru_cache(maxsize=1)
def registered_jobs() -> dict[str, str]:
    """Job name → ``module:callable``: the ``hpo.jobs`` entry points of the installed packages, and
    the jobs shipped with the project. Read once per process."""
    return {**BUILTIN_JOBS, **{ep.name: ep.value for ep in entry_points(group="hpo.jobs")}}


_MODULE_CALLABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def job_problem(name: str) -> Optional[str]:
    """Why ``name`` names no job here (a short phrase), or None when it is a registered job or a
    well-formed ``module:callable``. Nothing is imported."""
    if name in registered_jobs():
        return None
    if ":" in name:
        if _MODULE_CALLABLE.fullmatch(name):
            return None
        return "not a module:callable (a dotted module name, ':', a function name)"
    known = ", ".join(sorted(registered_jobs()))
    return f"no such job installed (installed: {known}; or give module:callable)"


def job_not_found(name: str) -> Optional[str]:
    """Like :func:`job_problem`, and for a ``module:callable`` also whether its module can be found
    here (without running it; its parent packages are imported)."""
    problem = job_problem(name)
    if problem or name in registered_jobs():
        return problem
    module_name = name.partition(":")[0]
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"module {module_name} not found here (install it, or put it on PYTHONPATH)"
    return None


def load_job(name: str) -> Callable[[Mapping[str, Any], JobContext], JobResult]:
    """Return the job callable registered as ``name``, or named by ``module:callable``."""
    target = registered_jobs().get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(registered_jobs()))
        raise UserError(f"job {name!r}: unknown job (known: {known}; or give module:callable)")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"job {name!r}: cannot import {module_name} ({exc})") from exc
    try:
        job = getattr(module, attr)
    except AttributeError:
        raise UserError(f"job {name!r}: {module_name} has no {attr!r}") from None
    return job
