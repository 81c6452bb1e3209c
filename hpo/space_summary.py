"""What ``hpo space check`` prints: each hyperparameter's range, choices or value, and the run's cost.

The cost is in jobs and epochs per successive-halving bracket and in all, for the space's budgets
and iterations (:mod:`hpo.run_plan`), with continuation (a promoted configuration trains only
the missing epochs: the default) and from scratch (``--no-checkpoints``).
"""

from __future__ import annotations

from typing import Any

from hpo.run_plan import plan_brackets, total_epochs, total_jobs
from hpo.space import BudgetSettings, SearchSpace


def _count(number: int, noun: str) -> str:
    """``1 job``, ``17 jobs``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _when(entry: dict) -> str:
    conditions = [f"{c['parent']} in {{{', '.join(_value(v) for v in c['values'])}}}" if len(c["values"]) > 1
                  else f"{c['parent']} = {_value(c['values'][0])}" for c in entry["parent_conditions"]]
    return f"; when {' and '.join(conditions)}" if conditions else ""


def hyperparameter_text(entry: dict) -> str:
    """``lr  float  1e-05 .. 0.1, log scale (default 0.001)``-like text for one :meth:`SearchSpace.describe` entry."""
    kind = entry["type"]
    if kind in ("float", "int"):
        what = f"{_value(entry['low'])} .. {_value(entry['high'])}{', log scale' if entry['log'] else ''}"
    elif kind in ("categorical", "ordinal"):
        what = (" < " if kind == "ordinal" else ", ").join(_value(c) for c in entry["choices"])
    else:
        return _value(entry["value"]) + _when(entry)
    return f"{kind:<11} {what} (default {_value(entry['default'])}){_when(entry)}"


def hyperparameter_lines(space: SearchSpace, indent: str = "  ") -> list[str]:
    """The searched hyperparameters with their ranges or choices, then the constants with their values."""
    entries = space.describe()
    width = max(len(e["name"]) for e in entries)
    lines = []
    for label, searched in (("searched", True), ("constant", False)):
        chosen = [e for e in entries if e["searched"] == searched]
        if chosen:
            lines.append(f"{indent}{label}:")
            lines += [f"{indent}  {e['name']:<{width}}  {hyperparameter_text(e)}" for e in chosen]
    return lines


def cost_lines(budget: BudgetSettings, optimizer: str = "bohb", indent: str = "  ") -> list[str]:
    """Jobs and epochs per bracket and in all, with continuation and from scratch."""
    brackets = plan_brackets(optimizer, budget.min_budget, budget.max_budget, budget.eta, budget.iterations)
    kinds: dict[tuple, list[int]] = {}
    for bracket in brackets:
        kinds.setdefault((bracket.num_configs, bracket.budgets), []).append(bracket.iteration + 1)
    name = {"bohb": "BOHB or Hyperband", "hyperband": "BOHB or Hyperband", "randomsearch": "random search"}[optimizer]
    lines = [f"{indent}cost of {_count(budget.iterations, 'iteration')} of {name}, "
             f"per successive-halving bracket (epochs with continuation; in brackets from scratch):"]
    for bracket in (b for b in brackets if b.iteration + 1 == kinds[(b.num_configs, b.budgets)][0]):
        iterations = kinds[(bracket.num_configs, bracket.budgets)]
        stages = ", ".join(f"{n} x {b:.3g} ep" for n, b in zip(bracket.num_configs, bracket.budgets))
        which = f"iteration{'s' if len(iterations) > 1 else ''} {', '.join(map(str, iterations))}"
        lines.append(f"{indent}  {which}: {stages}: {_count(bracket.jobs, 'job')}, "
                     f"{_count(bracket.epochs(True), 'epoch')} ({bracket.epochs(False)}) each")
    lines.append(f"{indent}  in all: {_count(total_jobs(brackets), 'job')}, "
                 f"{_count(total_epochs(brackets, True), 'epoch')} ({total_epochs(brackets, False)})")
    return lines
