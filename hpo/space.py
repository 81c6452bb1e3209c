"""Search spaces: a YAML file written for people, turned into a ConfigSpace ``ConfigurationSpace``.

One file fully describes an experiment: the fixed choices (model, regime, dataset, image size)
are constants, the searched ones are ranges or choices, plus the budget defaults and the job.
See the README ("Search-space YAML") for the format. Every problem is reported as a
:class:`~hpo.errors.UserError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import ConfigSpace as CS
import yaml
from ConfigSpace.exceptions import ForbiddenValueError
from ConfigSpace.util import deactivate_inactive_hyperparameters

from hpo.errors import UserError
from hpo.jobs import DEFAULT_JOB, job_problem
from hpo.values import to_builtin

logger = logging.getLogger("hpo")

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

#: Deepest nesting of lists and mappings a space file may have (a real one needs 5).
MAX_NESTING = 32
#: Most values a space file may hold with its aliases expanded (guards against alias bombs).
MAX_VALUES = 100_000
#: Integer ranges must lie within +-2**53 (exact as floats, which ConfigSpace uses).
MAX_INT = 2 ** 53
MAX_SEED = 2 ** 32 - 1
#: Forbidden clauses are checked for excluding every configuration by enumerating at most this
#: many combinations of the values they mention.
MAX_ENUMERATED = 100_000


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
            if not _is_number(value):
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
            if _type_name(self.configspace[name]) != "constant":
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


class _Loader(yaml.SafeLoader):
    """YAML 1.1 loader that also reads ``1e-5`` (no dot) as a float, as people write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str):
    """A command-line value read as YAML (``0.01``, ``1e-3``, ``sgd``, ``true``); the text itself
    when it is not valid YAML (or nested too deeply, or holds a duplicate key)."""
    try:
        return load_yaml(text, "--set")
    except UserError:
        return text


def load_yaml(text: str, where: str) -> Any:
    """YAML text as Python values (``1e-5`` read as a float), refusing with one line naming
    ``where`` and the line: syntax errors, duplicate keys (YAML would keep the last silently),
    nesting deeper than :data:`MAX_NESTING`, recursive aliases, and more than
    :data:`MAX_VALUES` values once aliases are expanded."""
    try:
        _check_nesting(text, where)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(loader, node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{where}: not valid YAML{line}: {_one_line(problem)}") from None
    except RecursionError:  # not expected after the checks above; never a traceback
        raise UserError(f"{where}: not valid YAML: nested too deeply") from None


def _check_nesting(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_NESTING, from the parser's events (which need no recursion;
    building the values does)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                raise UserError(f"{where}: line {event.start_mark.line + 1}: lists and mappings nested more than "
                                f"{MAX_NESTING} deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _node_children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_nodes(loader: "_Loader", root, where: str) -> None:
    """Duplicate keys, recursive aliases, and the size and depth of the document with its aliases
    expanded: one pass over the node graph, without recursion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list = [(root, False, "")]
    while stack:
        node, done, path = stack.pop()
        key = id(node)
        if done:
            children = _node_children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            on_path.discard(key)
            if size[key] > MAX_VALUES:
                raise UserError(f"{where}: line {node.start_mark.line + 1}: more than {MAX_VALUES} values once "
                                f"aliases (*name) are expanded")
            if depth[key] > MAX_NESTING + 1:
                raise UserError(f"{where}: line {node.start_mark.line + 1}: lists and mappings nested more than "
                                f"{MAX_NESTING} deep once aliases (*name) are expanded")
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True, path))
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(loader, node, path, where)
            entries = []
            for key_node, value_node in node.value:
                label = _key_label(loader, key_node)
                entries += [(key_node, path), (value_node, f"{path}.{label}" if path else label)]
        else:
            entries = [(child, f"{path}[{i}]") for i, child in enumerate(_node_children(node))]
        for child, child_path in reversed(entries):
            if id(child) in on_path:
                raise UserError(f"{where}: line {child.start_mark.line + 1}: {child_path or 'the document'}: "
                                f"an alias refers to a value that holds it (a recursive alias)")
            if id(child) not in size:
                stack.append((child, False, child_path))


def _key_label(loader: "_Loader", key_node) -> str:
    if isinstance(key_node, yaml.ScalarNode):
        return str(key_node.value)
    return "?"


def _check_duplicate_keys(loader: "_Loader", node, path: str, where: str) -> None:
    seen: list[tuple[Any, int]] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue  # '<<' merges may override; a non-scalar key is refused when built
        key = loader.construct_object(key_node, deep=True)
        for other, line in seen:
            if type(other) is type(key) and other == key or (
                    _is_number(other) and _is_number(key) and other == key):
                inside = f" in {path}" if path else ""
                raise UserError(f"{where}: line {key_node.start_mark.line + 1}: duplicate key {key!r}{inside} "
                                f"(first at line {line}); YAML would keep only the last")
        seen.append((key, key_node.start_mark.line + 1))


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
        _check_name(name, where)
        hp, when = _build_hyperparameter(name, spec, where)
        cs.add(hp)
        if when is not None:
            conditions.append((name, when))
    built = [(name, _build_condition(cs, name, when, where)) for name, when in conditions]
    _check_cycles(conditions, where)
    for name, condition in built:
        try:
            cs.add(condition)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{where}: {name}: when: {_one_line(exc)}") from None
    clauses = [_build_forbidden(cs, entry, f"forbidden[{index}]", where)
               for index, entry in enumerate(data.get("forbidden") or [])]
    for index, clause in enumerate(clauses):
        try:
            cs.add(clause)
        except ForbiddenValueError:
            raise UserError(f"{where}: {_explain_forbidden(cs, clauses, index)}") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{where}: forbidden[{index}]: {_one_line(exc)}") from None

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


def check_seed(value: Any, where: str) -> int:
    """``value`` when it is a seed numpy and ConfigSpace accept (an integer in 0..2**32-1)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"{where}: must be an integer (got {value!r})")
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"{where}: must be in 0..{MAX_SEED} (got {value})")
    return value


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str):
        raise UserError(f"{where}: {name!r}: hyperparameter names must be strings")
    if not name.strip():
        raise UserError(f"{where}: hyperparameters: {name!r}: a hyperparameter name must not be empty")
    if any(not c.isprintable() for c in name):
        raise UserError(f"{where}: hyperparameters: {name!r}: a hyperparameter name must not hold control "
                        f"characters (line breaks, tabs)")


def _check_cycles(conditions: list[tuple[str, Any]], where: str) -> None:
    """Refuse ``when`` conditions that depend on each other in a circle (a when b, b when a)."""
    parents = {child: [p for p in when if p != child] for child, when in conditions}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in parents:
        if state.get(start):
            continue
        path = [start]
        iterators = [iter(parents.get(start, ()))]
        state[start] = 1
        while iterators:
            parent = next(iterators[-1], None)
            if parent is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if state.get(parent) == 1:
                cycle = path[path.index(parent):] + [parent]
                names = ", ".join(sorted(set(cycle)))
                chain = " when ".join(cycle)
                raise UserError(f"{where}: {names}: their 'when' conditions form a cycle ({chain}): each would "
                                f"be active only if the other is; drop one of these conditions")
            if not state.get(parent):
                state[parent] = 1
                path.append(parent)
                iterators.append(iter(parents.get(parent, ())))


def _finite_values(cs: CS.ConfigurationSpace, name: str) -> Optional[list]:
    """Every value ``name`` can take (plus None for 'inactive' when it is conditional), or None
    when they are too many to list (a float range, a wide int range)."""
    hp = cs[name]
    values = _possible_values(hp)
    if values is None and isinstance(hp, CS.UniformIntegerHyperparameter) and hp.upper - hp.lower < 1000:
        values = list(range(int(hp.lower), int(hp.upper) + 1))
    if values is None:
        return None
    return values + [None] if cs.parent_conditions_of[name] else values


def _literals(clause) -> list:
    return list(getattr(clause, "dlcs", None) or [clause])


def _excludes_everything(cs: CS.ConfigurationSpace, clauses: list) -> bool:
    """True only when ``clauses`` together certainly forbid every configuration. Clauses on
    a float (or a wide int range) cannot, and are left out; so is the check when the values to
    enumerate are too many."""
    usable, names = [], []
    for clause in clauses:
        clause_names = [literal.hyperparameter.name for literal in _literals(clause)]
        if all(_finite_values(cs, name) is not None for name in clause_names):
            usable.append(clause)
            names += [name for name in clause_names if name not in names]
    if not usable:
        return False
    choices = [_finite_values(cs, name) for name in names]
    if math.prod(len(values) for values in choices) > MAX_ENUMERATED:
        return False
    for combination in itertools.product(*choices):
        values = {name: value for name, value in zip(names, combination) if value is not None}
        if not any(clause.is_forbidden_value(values) for clause in usable):
            return False
    return True


def _describe_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in values.items())


def _explain_forbidden(cs: CS.ConfigurationSpace, clauses: list, index: int) -> str:
    """Why ConfigSpace refused forbidden[index], in words: it excludes every configuration (alone
    or with the others), or the default configuration."""
    if _excludes_everything(cs, [clauses[index]]):
        mentioned = sorted({literal.hyperparameter.name for literal in _literals(clauses[index])})
        what = f"every value of {mentioned[0]}" if len(mentioned) == 1 else f"every combination of {', '.join(mentioned)}"
        return (f"forbidden[{index}] excludes every configuration ({what}), so nothing is left to sample: "
                f"narrow or remove it")
    if _excludes_everything(cs, clauses):
        indices = ", ".join(f"forbidden[{i}]" for i in range(len(clauses)))
        return f"{indices} together exclude every configuration, so nothing is left to sample: narrow or remove one"
    # ConfigSpace keeps the refused clause, so the default configuration cannot be built: read
    # the defaults off the hyperparameters.
    shown = {literal.hyperparameter.name: cs[literal.hyperparameter.name].default_value
             for literal in _literals(clauses[index])}
    return (f"forbidden[{index}] excludes the default configuration ({_describe_values(to_builtin(shown))}): "
            f"change a default or the clause")


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
    try:
        return _make_hyperparameter(name, spec, where)
    except (ValueError, TypeError, OverflowError) as exc:  # ConfigSpace's own refusals, in one line
        raise UserError(f"{where}: {name}: {_one_line(exc)}") from None


def _make_hyperparameter(name: str, spec: Any, where: str):
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
        if kind == "int" and abs(spec[key]) > MAX_INT:
            raise UserError(f"{where}: {name}: int bounds must lie within +-2**53 (got {key} {spec[key]:g})")
    low, high = spec["low"], spec["high"]
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: {name}: log must be true or false (got {log!r})")
    if low >= high:
        raise UserError(f"{where}: {name}: range needs low < high (got low {low:g}, high {high:g})")
    if not math.isfinite(float(high) - float(low)):
        raise UserError(f"{where}: {name}: range too wide (high - low is not a finite number)")
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
    for i, value in enumerate(values):
        for other in values[:i]:
            if value == other:  # 1, 1.0 and true are one value to ConfigSpace
                raise UserError(f"{where}: {name}: {key} has duplicates ({other!r} and {value!r})")
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
        if not values:
            raise UserError(f"{where}: {key}: {name}: needs at least one value")
        for value in values:
            if value is None or isinstance(value, (list, dict)):
                raise UserError(f"{where}: {key}: {name}: values must be scalars (got {value!r})")
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
