"""Building blocks of a search space: the seed and name checks; hyperparameters, ``when``
conditions and forbidden clauses made from their parsed YAML definitions and checked (cycles,
clauses that exclude everything); and the helpers that describe values in error messages.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterable, Mapping, Optional

import ConfigSpace as CS

from hpo.errors import UserError, one_line
from hpo.values import to_builtin

TYPE_KEYS = {
    "float": {"low", "high", "log", "default"},
    "int": {"low", "high", "log", "default"},
    "categorical": {"choices", "default", "weights"},
    "ordinal": {"sequence", "default"},
    "constant": {"value"},
}
COMMON_KEYS = {"type", "when", "description"}

#: Integer ranges must lie within +-2**53 (exact as floats, which ConfigSpace uses).
MAX_INT = 2 ** 53
MAX_SEED = 2 ** 32 - 1
#: Forbidden clauses are checked for excluding every configuration by enumerating at most this
#: many combinations of the values they mention.
MAX_ENUMERATED = 100_000


def check_seed(value: Any, where: str) -> int:
    """``value`` when it is a seed numpy and ConfigSpace accept (an integer in 0..2**32-1)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"{where}: must be an integer (got {value!r})")
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"{where}: must be in 0..{MAX_SEED} (got {value})")
    return value


def check_name(name: Any, where: str) -> None:
    if not isinstance(name, str):
        raise UserError(f"{where}: {name!r}: hyperparameter names must be strings")
    if not name.strip():
        raise UserError(f"{where}: hyperparameters: {name!r}: a hyperparameter name must not be empty")
    if any(not c.isprintable() for c in name):
        raise UserError(f"{where}: hyperparameters: {name!r}: a hyperparameter name must not hold control "
                        f"characters (line breaks, tabs)")


def check_cycles(conditions: list[tuple[str, Any]], where: str) -> None:
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


def explain_forbidden(cs: CS.ConfigurationSpace, clauses: list, index: int) -> str:
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


def build_hyperparameter(name: str, spec: Any, where: str):
    try:
        return _make_hyperparameter(name, spec, where)
    except (ValueError, TypeError, OverflowError) as exc:  # ConfigSpace's own refusals, in one line
        raise UserError(f"{where}: {name}: {one_line(exc)}") from None


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
        if not is_number(spec[key]):
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
        if not is_number(default):
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
            is_number(w) and w >= 0 for w in weights
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


def build_condition(cs: CS.ConfigurationSpace, child: str, when: dict, where: str):
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
                raise UserError(f"{where}: {child}: when: {parent} cannot take {value!r} ({legal_text(cs[parent])})")
        if len(values) == 1:
            leaves.append(CS.EqualsCondition(cs[child], cs[parent], values[0]))
        else:
            leaves.append(CS.InCondition(cs[child], cs[parent], values))
    return leaves[0] if len(leaves) == 1 else CS.AndConjunction(*leaves)


def build_forbidden(cs: CS.ConfigurationSpace, entry: Any, key: str, where: str):
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
                raise UserError(f"{where}: {key}: {name} cannot take {value!r} ({legal_text(cs[name])})")
        if len(values) == 1:
            clauses.append(CS.ForbiddenEqualsClause(cs[name], values[0]))
        else:
            clauses.append(CS.ForbiddenInClause(cs[name], values))
    return clauses[0] if len(clauses) == 1 else CS.ForbiddenAndConjunction(*clauses)


def leaf_conditions(condition) -> Iterable:
    components = getattr(condition, "components", None)
    if components is None:
        return [condition]
    return [leaf for component in components for leaf in leaf_conditions(component)]


def type_name(hp) -> str:
    if isinstance(hp, CS.UniformFloatHyperparameter):
        return "float"
    if isinstance(hp, CS.UniformIntegerHyperparameter):
        return "int"
    if isinstance(hp, CS.OrdinalHyperparameter):
        return "ordinal"
    if isinstance(hp, CS.CategoricalHyperparameter):
        return "constant" if len(hp.choices) == 1 else "categorical"
    return "constant"


def coerce_value(hp, value: Any) -> Any:
    """Make a --set value (parsed as YAML) fit the hyperparameter's type where that is lossless."""
    if isinstance(hp, CS.UniformFloatHyperparameter) and is_number(value):
        return float(value)
    if isinstance(hp, CS.UniformIntegerHyperparameter) and is_number(value) and float(value) == int(value):
        return int(value)
    return value


def legal_text(hp) -> str:
    possible = _possible_values(hp)
    if possible is not None:
        return f"values: {possible}"
    return f"range [{hp.lower:g}, {hp.upper:g}]"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
