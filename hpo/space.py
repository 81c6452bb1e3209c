"""Search spaces: a YAML file written for people, turned into a ConfigSpace ``ConfigurationSpace``.

One file fully describes an experiment: the fixed choices (model, regime, dataset, image size)
are constants, the searched ones are ranges or choices, plus the budget defaults and the job.
See the README ("Search-space YAML") for the format. Every problem is reported as a
:class:`~hpo.errors.UserError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import ConfigSpace as CS
import yaml
from ConfigSpace.util import deactivate_inactive_hyperparameters

from hpo.errors import UserError
from hpo.jobs import DEFAULT_JOB
from hpo.values import to_builtin

TOP_LEVEL_KEYS = ("name", "description", "job", "seed", "budget", "hyperparameters", "forbidden")
BUDGET_KEYS = ("min", "max", "eta", "iterations")
TYPE_KEYS = {
    "float": {"low", "high", "log", "default"},
    "int": {"low", "high", "log", "default"},
    "categorical": {"choices", "default", "weights"},
    "ordinal": {"sequence", "default"},
    "constant": {"value"},
}
COMMON_KEYS = {"type", "when", "description"}


@dataclass(frozen=True)
class BudgetSettings:
    """Successive-halving settings: budgets in epochs, ``eta`` and the number of iterations."""

    min_budget: float = 1.0
    max_budget: float = 9.0
    eta: float = 3.0
    iterations: int = 4

    def validate(self, where: str) -> "BudgetSettings":
        """Return self, or raise a UserError naming ``where`` (a file or the flags)."""
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

    def config_with(self, overrides: Mapping[str, Any]) -> dict:
        """The default configuration with ``overrides`` applied and checked against the space."""
        values = dict(self.configspace.get_default_configuration())
        for name, value in overrides.items():
            if name not in self.configspace:
                known = ", ".join(self.configspace.keys())
                raise UserError(f"{self.path}: --set {name}: no such hyperparameter (known: {known})")
            hp = self.configspace[name]
            value = _coerce(hp, value)
            if not hp.legal_value(value):
                raise UserError(f"{self.path}: --set {name}: {value!r} is not a legal value ({_legal_text(hp)})")
            values[name] = value
        # Fill defaults of hyperparameters that a new parent value activates, then drop inactive ones.
        for name, hp in self.configspace.items():
            values.setdefault(name, hp.default_value)
        try:
            config = deactivate_inactive_hyperparameters(values, self.configspace)
        except (ValueError, KeyError) as exc:
            raise UserError(f"{self.path}: --set: {_one_line(exc)}") from None
        for name in overrides:
            if name not in config:
                raise UserError(f"{self.path}: --set {name}: inactive under the other values (see its 'when')")
        try:
            config.check_valid_configuration()
        except Exception as exc:  # ConfigSpace raises several error types (forbidden, illegal)
            raise UserError(f"{self.path}: --set: {_one_line(exc)}") from None
        return to_builtin(dict(config))


class _Loader(yaml.SafeLoader):
    """YAML 1.1 loader that also reads ``1e-5`` (no dot) as a float, as people write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str):
    """A command-line value read as YAML (``0.01``, ``1e-3``, ``sgd``, ``true``); the text itself
    when it is not valid YAML."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space YAML file."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except OSError as exc:
        raise UserError(f"{where}: cannot read ({exc.strerror})") from None
    return parse_space(text, where)


def parse_space(text: str, where: str = "<string>") -> SearchSpace:
    """Parse the YAML text of a search space; ``where`` names it in error messages."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{where}: not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping with a 'hyperparameters' key, got {_kind(data)}")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise UserError(f"{where}: {unknown[0]}: unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"{where}: seed: must be an integer (got {seed!r})")
    job = data.get("job", DEFAULT_JOB)
    if not isinstance(job, str) or not job:
        raise UserError(f"{where}: job: must be a job name or module:callable (got {job!r})")
    hyperparameters = data.get("hyperparameters")
    if not isinstance(hyperparameters, dict) or not hyperparameters:
        raise UserError(f"{where}: hyperparameters: must be a non-empty mapping of name to definition")

    cs = CS.ConfigurationSpace(seed=seed)
    conditions: list[tuple[str, Any]] = []
    for name, spec in hyperparameters.items():
        if not isinstance(name, str):
            raise UserError(f"{where}: {name!r}: hyperparameter names must be strings")
        hp, when = _build_hyperparameter(name, spec, where)
        cs.add(hp)
        if when is not None:
            conditions.append((name, when))
    for name, when in conditions:
        cs.add(_build_condition(cs, name, when, where))
    for index, entry in enumerate(data.get("forbidden") or []):
        clause = _build_forbidden(cs, entry, f"forbidden[{index}]", where)
        try:
            cs.add(clause)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{where}: forbidden[{index}]: {_one_line(exc)}") from None
    if "forbidden" in data and not isinstance(data["forbidden"], (list, type(None))):
        raise UserError(f"{where}: forbidden: must be a list of mappings")

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
        for leaf in _leaf_conditions(condition):
            values = getattr(leaf, "values", None)
            if values is None:
                values = [leaf.value]
            parents.setdefault(leaf.child.name, []).append({"parent": leaf.parent.name, "values": list(values)})
    entries = []
    for name, hp in cs.items():
        entry: dict[str, Any] = {"name": name, "type": _type_name(hp), "log": bool(getattr(hp, "log", False))}
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


# --- building blocks ------------------------------------------------------------------------------


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
        if not _is_number(value):
            raise UserError(f"{where}: budget.{key}: must be a number (got {value!r})")
        values[attr] = float(value)
    iterations = budget.get("iterations", defaults.iterations)
    if not isinstance(iterations, int) or isinstance(iterations, bool):
        raise UserError(f"{where}: budget.iterations: must be an integer (got {iterations!r})")
    return BudgetSettings(iterations=iterations, **values).validate(where)


def _build_hyperparameter(name: str, spec: Any, where: str):
    if not isinstance(spec, dict):
        if spec is None or isinstance(spec, list):
            raise UserError(f"{where}: {name}: needs a value (a constant) or a mapping with a 'type'")
        return _constant(name, spec, where), None
    kind = spec.get("type")
    if kind is None:
        raise UserError(f"{where}: {name}: missing 'type' (one of: {', '.join(TYPE_KEYS)})")
    if kind not in TYPE_KEYS:
        raise UserError(f"{where}: {name}: unknown type {kind!r} (one of: {', '.join(TYPE_KEYS)})")
    allowed = TYPE_KEYS[kind] | COMMON_KEYS
    for key in spec:
        if key not in allowed:
            raise UserError(f"{where}: {name}: unknown key {key!r} for type {kind} (allowed: {', '.join(sorted(allowed))})")
    when = spec.get("when")
    if when is not None and (not isinstance(when, dict) or not when):
        raise UserError(f"{where}: {name}: when: must be a mapping of parent name to value(s)")
    if kind in ("float", "int"):
        return _numeric(name, kind, spec, where), when
    if kind == "categorical":
        return _categorical(name, spec, where), when
    if kind == "ordinal":
        return _ordinal(name, spec, where), when
    if "value" not in spec or spec["value"] is None or isinstance(spec["value"], (list, dict)):
        raise UserError(f"{where}: {name}: constant needs a scalar 'value'")
    return _constant(name, spec["value"], where), when


def _numeric(name: str, kind: str, spec: dict, where: str):
    for key in ("low", "high"):
        if key not in spec:
            raise UserError(f"{where}: {name}: {kind} range needs '{key}'")
        if not _is_number(spec[key]):
            raise UserError(f"{where}: {name}: {key} must be a number (got {spec[key]!r})")
        if kind == "int" and float(spec[key]) != int(spec[key]):
            raise UserError(f"{where}: {name}: int range needs whole-number bounds (got {key} {spec[key]!r})")
    low, high = spec["low"], spec["high"]
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: {name}: log must be true or false (got {log!r})")
    if low >= high:
        raise UserError(f"{where}: {name}: range needs low < high (got low {low:g}, high {high:g})")
    if log and low <= 0:
        raise UserError(f"{where}: {name}: log-scale range needs low > 0 (got {low:g})")
    default = spec.get("default")
    if default is not None:
        if not _is_number(default):
            raise UserError(f"{where}: {name}: default must be a number (got {default!r})")
        if not (low <= default <= high):
            raise UserError(f"{where}: {name}: default {default:g} outside range [{low:g}, {high:g}]")
        if kind == "int" and float(default) != int(default):
            raise UserError(f"{where}: {name}: int default must be a whole number (got {default!r})")
    if kind == "float":
        return CS.Float(name, bounds=(float(low), float(high)), log=log,
                        default=None if default is None else float(default))
    return CS.Integer(name, bounds=(int(low), int(high)), log=log, default=None if default is None else int(default))


def _choices(name: str, values: Any, key: str, where: str) -> list:
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}: {name}: {key} must be a non-empty list")
    for value in values:
        if value is None or isinstance(value, (list, dict)):
            raise UserError(f"{where}: {name}: {key} must hold scalars (got {value!r})")
    if len({repr(v) for v in values}) != len(values):
        raise UserError(f"{where}: {name}: {key} has duplicates")
    return values


def _categorical(name: str, spec: dict, where: str):
    if "choices" not in spec:
        raise UserError(f"{where}: {name}: categorical needs 'choices'")
    choices = _choices(name, spec["choices"], "choices", where)
    default = spec.get("default")
    if default is not None and default not in choices:
        raise UserError(f"{where}: {name}: default {default!r} is not one of the choices {choices}")
    weights = spec.get("weights")
    if weights is not None:
        if not isinstance(weights, list) or len(weights) != len(choices) or not all(
            _is_number(w) and w >= 0 for w in weights
        ) or not any(w > 0 for w in weights):
            raise UserError(f"{where}: {name}: weights must be one non-negative number per choice, not all zero")
    return CS.Categorical(name, choices, default=choices[0] if default is None else default, weights=weights)


def _ordinal(name: str, spec: dict, where: str):
    if "sequence" not in spec:
        raise UserError(f"{where}: {name}: ordinal needs 'sequence' (the values in order)")
    sequence = _choices(name, spec["sequence"], "sequence", where)
    default = spec.get("default")
    if default is not None and default not in sequence:
        raise UserError(f"{where}: {name}: default {default!r} is not in the sequence {sequence}")
    return CS.OrdinalHyperparameter(name, sequence, default_value=default if default is not None else sequence[0])


def _constant(name: str, value: Any, where: str):
    if isinstance(value, bool):
        # ConfigSpace constants are str, int or float; a one-choice categorical keeps a bool a bool.
        return CS.Categorical(name, [value])
    if not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: {name}: constant must be a string or a number (got {value!r})")
    return CS.Constant(name, value)


def _possible_values(hp) -> Optional[list]:
    """The values a parent can take, or None for a numeric range."""
    if isinstance(hp, CS.CategoricalHyperparameter):
        return list(hp.choices)
    if isinstance(hp, CS.OrdinalHyperparameter):
        return list(hp.sequence)
    if isinstance(hp, CS.Constant):
        return [hp.value]
    return None


def _build_condition(cs: CS.ConfigurationSpace, child: str, when: dict, where: str):
    leaves = []
    for parent, wanted in when.items():
        if parent not in cs:
            raise UserError(f"{where}: {child}: when: unknown parent {parent!r}")
        if parent == child:
            raise UserError(f"{where}: {child}: when: a hyperparameter cannot depend on itself")
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values:
            raise UserError(f"{where}: {child}: when: {parent}: needs at least one value")
        possible = _possible_values(cs[parent])
        for value in values:
            if possible is not None and value not in possible:
                raise UserError(
                    f"{where}: {child}: when: {parent} cannot take {value!r} (its values: {possible})"
                )
            if possible is None and not cs[parent].legal_value(value):
                raise UserError(f"{where}: {child}: when: {parent} cannot take {value!r} ({_legal_text(cs[parent])})")
        if len(values) == 1:
            leaves.append(CS.EqualsCondition(cs[child], cs[parent], values[0]))
        else:
            leaves.append(CS.InCondition(cs[child], cs[parent], values))
    return leaves[0] if len(leaves) == 1 else CS.AndConjunction(*leaves)


def _build_forbidden(cs: CS.ConfigurationSpace, entry: Any, key: str, where: str):
    if not isinstance(entry, dict) or not entry:
        raise UserError(f"{where}: {key}: must be a mapping of hyperparameter to value(s)")
    clauses = []
    for name, wanted in entry.items():
        if name not in cs:
            raise UserError(f"{where}: {key}: unknown hyperparameter {name!r}")
        values = wanted if isinstance(wanted, list) else [wanted]
        for value in values:
            if not cs[name].legal_value(value):
                raise UserError(f"{where}: {key}: {name} cannot take {value!r} ({_legal_text(cs[name])})")
        if len(values) == 1:
            clauses.append(CS.ForbiddenEqualsClause(cs[name], values[0]))
        else:
            clauses.append(CS.ForbiddenInClause(cs[name], values))
    return clauses[0] if len(clauses) == 1 else CS.ForbiddenAndConjunction(*clauses)


def _leaf_conditions(condition) -> Iterable:
    components = getattr(condition, "components", None)
    if components is None:
        return [condition]
    return [leaf for component in components for leaf in _leaf_conditions(component)]


def _type_name(hp) -> str:
    if isinstance(hp, CS.UniformFloatHyperparameter):
        return "float"
    if isinstance(hp, CS.UniformIntegerHyperparameter):
        return "int"
    if isinstance(hp, CS.OrdinalHyperparameter):
        return "ordinal"
    if isinstance(hp, CS.CategoricalHyperparameter):
        return "constant" if len(hp.choices) == 1 else "categorical"
    return "constant"


def _coerce(hp, value: Any) -> Any:
    """Make a --set value (parsed as YAML) fit the hyperparameter's type where that is lossless."""
    if isinstance(hp, CS.UniformFloatHyperparameter) and _is_number(value):
        return float(value)
    if isinstance(hp, CS.UniformIntegerHyperparameter) and _is_number(value) and float(value) == int(value):
        return int(value)
    return value


def _legal_text(hp) -> str:
    possible = _possible_values(hp)
    if possible is not None:
        return f"values: {possible}"
    return f"range [{hp.lower:g}, {hp.upper:g}]"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    return "nothing (empty file)" if value is None else type(value).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
