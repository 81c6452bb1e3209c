"""Search spaces: a YAML file written for people, turned into a ConfigSpace ``ConfigurationSpace``.

One file fully describes an experiment: the fixed choices (model, regime, dataset, image size)
are constants, the searched ones are ranges or choices, plus the budget defaults and the job.
See the README ("Search-space YAML") for the format. Every problem is reported as a
:class:`~hpo.errors.UserError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import ConfigSpace as CS
from ConfigSpace.exceptions import ForbiddenValueError
from ConfigSpace.util import deactivate_inactive_hyperparameters

from hpo.errors import UserError, one_line
from hpo.jobs import DEFAULT_JOB, job_problem
from hpo.space_hyperparameters import (
    build_condition,
    build_forbidden,
    build_hyperparameter,
    check_cycles,
    check_name,
    check_seed,
    coerce_value,
    explain_forbidden,
    is_number,
    leaf_conditions,
    legal_text,
    type_name,
)
from hpo.space_yaml import load_yaml, parse_value
from hpo.values import to_builtin

__all__ = ["BudgetSettings", "SearchSpace", "check_seed", "describe_hyperparameters", "load_space",
           "load_yaml", "parse_space", "parse_value"]

logger = logging.getLogger("hpo")

TOP_LEVEL_KEYS = ("name", "description", "job", "seed", "budget", "hyperparameters", "forbidden")
BUDGET_KEYS = ("min", "max", "eta", "iterations")


@dataclass(frozen=True)
class BudgetSettings:
    """Successive-halving settings: budgets in epochs, ``eta`` and the number of iterations."""

    min_budget: float = 1.0
    max_budget: float = 9.0
    eta: float = 3.0
    iterations: int = 4

    def validate(self, where: str) -> "BudgetSettings":
        """Return self, or raise a UserError naming ``where`` (a file or the flags)."""
        for name, value in (("min", self.min_budget), ("max", self.max_budget), ("eta", self.eta)):
            if not is_number(value):
                raise UserError(f"{where}: budget.{name}: must be a finite number (got {value!r})")
        if not (self.min_budget > 0):
            raise UserError(f"{where}: budget.min: must be > 0 (got {self.min_budget:g})")
        if self.min_budget > self.max_budget:
            raise UserError(
                f"{where}: budget: min must be <= max (got min {self.min_budget:g} > max {self.max_budget:g})"
            )
        if not (self.eta > 1):
            raise UserError(f"{where}: budget.eta: must be > 1 (got {self.eta:g})")
        if self.iterations < 1:
            raise UserError(f"{where}: budget.iterations: must be >= 1 (got {self.iterations})")
        return self


@dataclass
class SearchSpace:
    """A parsed search-space file."""

    path: str
    name: str
    configspace: CS.ConfigurationSpace
    budget: BudgetSettings
    job: str = DEFAULT_JOB
    seed: int = 0
    description: str = ""
    raw: dict = field(default_factory=dict)

    def describe(self) -> list[dict]:
        """One JSON-native entry per hyperparameter (for run.json and the report)."""
        return describe_hyperparameters(self.configspace)

    def default_config(self) -> dict:
        """The default configuration, inactive hyperparameters removed, as plain values."""
        return to_builtin(dict(self.configspace.get_default_configuration()))

    def config_with(self, overrides: Mapping[str, Any], constants: bool = False,
                    job_keys: Iterable[str] = ()) -> dict:
        """The default configuration with ``overrides`` applied and checked against the space.
        ``constants``: constants may be overridden too, and keys in ``job_keys`` (keys the job
        reads that the space leaves to the job's defaults) added (one job, for debugging:
        ``hpo train --set``)."""
        if constants:
            space, overrides = self._with_constants_open(overrides, frozenset(job_keys))
            if space is not self:
                return space.config_with(overrides, job_keys=job_keys)
        values = dict(self.configspace.get_default_configuration())
        for name, value in overrides.items():
            if name not in self.configspace:
                known = ", ".join(self.configspace.keys())
                also = sorted(set(job_keys) - set(self.configspace.keys()))
                job_text = f"; the job also reads: {', '.join(also)}" if also else ""
                raise UserError(f"{self.path}: --set {name}: no such hyperparameter (known: {known}{job_text})")
            hp = self.configspace[name]
            value = coerce_value(hp, value)
            if not hp.legal_value(value):
                raise UserError(f"{self.path}: --set {name}: {value!r} is not a legal value ({legal_text(hp)})")
            values[name] = value
        # Fill defaults of hyperparameters that a new parent value activates, then drop inactive ones.
        for name, hp in self.configspace.items():
            values.setdefault(name, hp.default_value)
        try:
            config = deactivate_inactive_hyperparameters(values, self.configspace)
        except (ValueError, KeyError) as exc:
            raise UserError(f"{self.path}: --set: {one_line(exc)}") from None
        for name in overrides:
            if name not in config:
                raise UserError(f"{self.path}: --set {name}: inactive under the other values (see its 'when')")
        try:
            config.check_valid_configuration()
        except Exception as exc:  # ConfigSpace raises several error types (forbidden, illegal)
            raise UserError(f"{self.path}: --set: {one_line(exc)}") from None
        return to_builtin(dict(config))

    def _with_constants_open(self, overrides: Mapping[str, Any],
                             job_keys: frozenset = frozenset()) -> tuple["SearchSpace", dict]:
        """This space with each overridden constant turned into a choice of (new value, its value),
        the new one the default (so its conditions and forbidden clauses still hold), and the
        overrides left to apply. An override equal to the constant's value is dropped."""
        hyperparameters = self.raw.get("hyperparameters") or {}
        opened, left = {}, dict(overrides)
        for name, value in overrides.items():
            if name not in self.configspace:
                if name not in job_keys:
                    continue  # refused below, with the names that can be set
                # A key the space leaves to the job's default (e.g. max_train_images): a new
                # constant for this one job.
                if value is None or isinstance(value, (list, dict)):
                    raise UserError(f"{self.path}: --set {name}: needs a scalar value (got {value!r})")
                logger.info("--set %s: not in %s; passed to the job as a constant", name, self.path)
                opened[name] = value
                del left[name]
                continue
            if type_name(self.configspace[name]) != "constant":
                continue
            current = self.configspace[name].default_value
            if value == current:
                del left[name]
                continue
            spec = hyperparameters.get(name)
            when = spec.get("when") if isinstance(spec, dict) else None
            opened[name] = {"type": "categorical", "choices": [value, current], "default": value,
                            **({"when": when} if when is not None else {})}
        if not opened:
            return self, left
        data = {**self.raw, "hyperparameters": {**hyperparameters, **opened}}
        return _build_space(data, self.path), left


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space YAML file."""
    where = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text (byte {exc.start}); a search space is a YAML text file") from None
    except OSError as exc:
        raise UserError(f"{where}: cannot read ({exc.strerror or exc})") from None
    return parse_space(text, where)


def parse_space(text: str, where: str = "<string>") -> SearchSpace:
    """Parse the YAML text of a search space; ``where`` names it in error messages."""
    return _build_space(load_yaml(text, where), where)


def _build_space(data: Any, where: str) -> SearchSpace:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping with a 'hyperparameters' key, got {_kind(data)}")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise UserError(f"{where}: {unknown[0]}: unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    seed = check_seed(data.get("seed", 0), f"{where}: seed")
    for key in ("name", "description"):
        if data.get(key) is not None and not isinstance(data[key], (str, int, float)):
            raise UserError(f"{where}: {key}: must be text (got {_kind(data[key])})")
    job = data.get("job", DEFAULT_JOB)
    if not isinstance(job, str) or not job:
        raise UserError(f"{where}: job: must be a job name or module:callable (got {job!r})")
    problem = job_problem(job)
    if problem:
        raise UserError(f"{where}: job: {job!r}: {problem}")
    hyperparameters = data.get("hyperparameters")
    if not isinstance(hyperparameters, dict) or not hyperparameters:
        raise UserError(f"{where}: hyperparameters: must be a non-empty mapping of name to definition")
    if "forbidden" in data and not isinstance(data["forbidden"], (list, type(None))):
        raise UserError(f"{where}: forbidden: must be a list of mappings")

    cs = CS.ConfigurationSpace(seed=seed)
    conditions: list[tuple[str, Any]] = []
    for name, spec in hyperparameters.items():
        check_name(name, where)
        hp, when = build_hyperparameter(name, spec, where)
        cs.add(hp)
        if when is not None:
            conditions.append((name, when))
    built = [(name, build_condition(cs, name, when, where)) for name, when in conditions]
    check_cycles(conditions, where)
    for name, condition in built:
        try:
            cs.add(condition)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{where}: {name}: when: {one_line(exc)}") from None
    clauses = [build_forbidden(cs, entry, f"forbidden[{index}]", where)
               for index, entry in enumerate(data.get("forbidden") or [])]
    for index, clause in enumerate(clauses):
        try:
            cs.add(clause)
        except ForbiddenValueError:
            raise UserError(f"{where}: {explain_forbidden(cs, clauses, index)}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{where}: forbidden[{index}]: {one_line(exc)}") from None

    return SearchSpace(
        path=where,
        name=str(data.get("name") or Path(where).stem),
        configspace=cs,
        budget=_parse_budget(data.get("budget"), where),
        job=job,
        seed=seed,
        description=str(data.get("description") or ""),
        raw=data,
    )


def describe_hyperparameters(cs: CS.ConfigurationSpace) -> list[dict]:
    """Name, type, scale, range or choices and conditions of every hyperparameter."""
    parents: dict[str, list[dict]] = {}
    for condition in cs.conditions:
        for leaf in leaf_conditions(condition):
            values = getattr(leaf, "values", None)
            if values is None:
                values = [leaf.value]
            parents.setdefault(leaf.child.name, []).append({"parent": leaf.parent.name, "values": list(values)})
    entries = []
    for name, hp in cs.items():
        entry: dict[str, Any] = {"name": name, "type": type_name(hp), "log": bool(getattr(hp, "log", False))}
        entry["searched"] = entry["type"] != "constant"
        if entry["type"] in ("float", "int"):
            entry["low"], entry["high"] = hp.lower, hp.upper
        elif entry["type"] == "categorical":
            entry["choices"] = list(hp.choices)
        elif entry["type"] == "ordinal":
            entry["choices"] = list(hp.sequence)
        else:
            entry["value"] = hp.default_value
        entry["default"] = hp.default_value
        entry["parent_conditions"] = parents.get(name, [])
        entries.append(entry)
    return to_builtin(entries)


def _parse_budget(budget: Any, where: str) -> BudgetSettings:
    if budget is None:
        return BudgetSettings()
    if not isinstance(budget, dict):
        raise UserError(f"{where}: budget: must be a mapping with keys {', '.join(BUDGET_KEYS)}")
    for key in budget:
        if key not in BUDGET_KEYS:
            raise UserError(f"{where}: budget.{key}: unknown key (allowed: {', '.join(BUDGET_KEYS)})")
    defaults = BudgetSettings()
    values = {}
    for key, attr in (("min", "min_budget"), ("max", "max_budget"), ("eta", "eta")):
        value = budget.get(key, getattr(defaults, attr))
        if not is_number(value):
            raise UserError(f"{where}: budget.{key}: must be a number (got {value!r})")
        values[attr] = float(value)
    iterations = budget.get("iterations", defaults.iterations)
    if not isinstance(iterations, int) or isinstance(iterations, bool):
        raise UserError(f"{where}: budget.iterations: must be an integer (got {iterations!r})")
    return BudgetSettings(iterations=iterations, **values).validate(where)


def _kind(value: Any) -> str:
    return "nothing (empty file)" if value is None else type(value).__name__
