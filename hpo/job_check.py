"""Checking a search space against its job before a run: what the job would refuse only once the
run had started (a key it does not read, a value it rejects, a missing companion key).

A job opts in with a ``check_config`` attribute (:class:`ConfigCheck`); see :mod:`hpo.jobs`.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol

from hpo.errors import UserError, one_line
from hpo.jobs import load_job

if TYPE_CHECKING:
    from hpo.space import SearchSpace


class ConfigCheck(Protocol):
    """A job's optional ``check_config`` attribute: raise (a UserError or ValueError, one line naming
    the key and value) when ``config`` could only fail at run time. Fast: no model, no data, no download."""

    def __call__(self, config: Mapping[str, Any]) -> None: ...


def _variants(space: "SearchSpace") -> list[tuple[str, Any]]:
    """(hyperparameter, value) pairs worth checking: every constant, every choice, each range's ends."""
    pairs = []
    for entry in space.describe():
        if entry["type"] in ("categorical", "ordinal"):
            values = entry["choices"]
        elif entry["type"] in ("float", "int"):
            values = [entry["low"], entry["high"]]
        else:
            values = [entry["value"]]
        pairs += [(entry["name"], value) for value in values]
    return pairs


def _config_with(space: "SearchSpace", parents: Mapping[str, list], name: str, value: Any) -> Optional[dict]:
    """The default configuration with ``name`` set to ``value`` (its ``parents``, from
    :meth:`SearchSpace.describe`, set so that it is active), or None when that configuration is
    forbidden or cannot be made."""
    chosen = {name: value}
    pending = [name]
    while pending:  # activate it: each parent of a chosen value takes its condition's first value
        for condition in parents.get(pending.pop(), []):
            if condition["parent"] not in chosen:
                chosen[condition["parent"]] = condition["values"][0]
                pending.append(condition["parent"])
    try:
        return space.config_with(chosen)
    except UserError:  # forbidden, or conditions no single value satisfies: never sampled like this
        return None


def check_space_config(space: "SearchSpace", job_name: Optional[str] = None) -> Optional[str]:
    """Check the space against its job's (or ``job_name``'s) ``check_config`` and ``config_keys``: keys
    the job does not read, then the default configuration and, one at a time, each constant, choice
    and range end.

    Raises a UserError naming the file and the problem. Returns None when checked, else why not
    (the job cannot be imported here, or declares no ``check_config``: plugins are not checked)."""
    job_name = job_name or space.job
    try:
        job = load_job(job_name)
    except Exception as exc:  # e.g. the job needs torch, and this is a master host without it
        return f"cannot load job {job_name} here ({one_line(exc)})"
    check = getattr(job, "check_config", None)
    if check is None:
        return f"job {job_name} has no check_config"
    known = getattr(job, "config_keys", None)
    if known:
        for name in space.configspace.keys():
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}?" if close else f"it reads: {', '.join(sorted(known))}"
                raise UserError(f"{space.path}: hyperparameters.{name}: not a key the {job_name} job reads ({hint})")
    parents = {entry["name"]: entry["parent_conditions"] for entry in space.describe()}
    seen: set = set()
    for name, value in [(None, None), *_variants(space)]:
        config = space.default_config() if name is None else _config_with(space, parents, name, value)
        key = None if config is None else repr(sorted(config.items()))
        if key is None or key in seen:
            continue
        seen.add(key)
        try:
            check(config)
        except Exception as exc:  # a UserError or ValueError, as the job says; any other is a problem too
            where = "" if name is None else f" (the configuration with {name} = {value!r})"
            raise UserError(f"{space.path}: {one_line(exc)}{where}") from None
    return None
