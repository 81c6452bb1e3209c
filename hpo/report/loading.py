"""Reading a results directory (``configs.json``, ``results.json``, ``run.json``) into tables.

Both this service's logs and hpbandster's own ``json_result_logger`` logs are read: one JSON
value per line. A run may still be being written, so a torn last line is skipped with a
warning; a corrupt line elsewhere is skipped with a warning naming ``file:line``. Only a
directory with nothing readable is an error (:class:`hpo.errors.UserError`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from hpo.errors import UserError
from hpo.report.result_lines import config_id_text, is_number, results_frame

logger = logging.getLogger("hpo.report")

CONFIGS_FILE = "configs.json"
RESULTS_FILE = "results.json"
RUN_FILE = "run.json"

#: Ratio of the largest to the smallest positive value from which an inferred numeric
#: hyperparameter (a log without ``run.json``) is treated as log-scaled.
LOG_SCALE_RATIO = 100.0

_raw_decode = json.JSONDecoder().raw_decode
#: ``"history": [...]`` where the list holds no list and stays on its line.
_HISTORY = re.compile(r'"history":\s*(\[(?:[^\[\]\n]*\})?\])')


@dataclass(frozen=True)
class Hyperparameter:
    """A searched hyperparameter: what the report needs to show and plot it."""

    name: str
    type: str  # float | int | categorical | ordinal
    log: bool = False
    choices: tuple = ()  # categorical/ordinal values in the space's order, when run.json says

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "int")


@dataclass
class RunLog:
    """Everything read from one results directory.

    ``configs`` is indexed by config id (``"(iteration, 0, i)"``) and holds one column per
    configuration key (missing where a conditional hyperparameter is inactive) plus
    ``model_based_pick``. ``results`` holds one row per result: ``config_id``, ``iteration``,
    ``budget``, the ``submitted``/``started``/``finished`` unix times, ``loss`` (NaN unless the
    job succeeded), ``status`` (ok|failed|crashed), ``reason``, ``message``, the
    :data:`~hpo.report.result_lines.INFO_NUMBERS` columns, ``epochs_trained`` (as the job reported it), ``history`` (the per-epoch list, or its JSON text: read it with
    :func:`parse_history`), ``attempt`` (which attempt the result came from; NaN when the log does not
    say), ``lost_attempts`` (attempts lost with their worker before it) and any other numeric ``info``
    key (a job's own metrics).
    """

    name: str
    directory: Path
    metadata: dict
    hyperparameters: list[Hyperparameter]
    configs: pd.DataFrame
    results: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    loss_metric: Optional[str] = None  # what the loss is (info.loss_metric), when the log says
    #: ``results`` columns read from ``info`` whose every value in the log is a JSON integer (at least
    #: one, the others missing): ``results`` holds them as floats, :func:`hpo.report.load_run` as ``Int64``.
    integer_columns: frozenset[str] = frozenset()
    #: What is wrong with ``run.json`` when it is there but unusable (``metadata`` is then empty).
    metadata_problem: Optional[str] = None

    @property
    def finished(self) -> bool:
        return bool(self.metadata.get("finished_at"))

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning("%s", message)


def read_runs(paths: list[str | os.PathLike]) -> list[RunLog]:
    """Read several results directories; runs get distinct names (run id or directory name)."""
    runs = [read_run(path) for path in paths]
    seen: dict[str, int] = {}
    for run in runs:
        count = seen.get(run.name, 0) + 1
        seen[run.name] = count
        if count > 1:
            run.name = f"{run.name}#{count}"
    return runs


def read_run(path: str | os.PathLike) -> RunLog:
    """Read one results directory (or the directory of a given ``results.json``)."""
    directory = Path(path)
    if directory.is_file() and directory.name in (RESULTS_FILE, CONFIGS_FILE, RUN_FILE):
        directory = directory.parent
    if not directory.exists():
        raise UserError(f"{path}: no such directory")
    if not directory.is_dir():
        raise UserError(f"{path}: not a directory (expected a results directory holding {RESULTS_FILE})")
    results_path = directory / RESULTS_FILE
    if not results_path.is_file():
        raise UserError(f"{directory}: no {RESULTS_FILE} here, not a results directory (or the run has not started)")

    metadata, problem = read_metadata(directory / RUN_FILE)
    warnings: list[str] = []
    result_rows, histories = _read_lines(results_path, warnings, cut_history=True)
    if not result_rows:
        if warnings:
            raise UserError(f"{results_path}: no readable result ({len(warnings)} bad line(s), the first: {warnings[0]})")
        raise UserError(f"{results_path}: empty log, no results yet")
    results, loss_metric, integer_columns = results_frame(result_rows, histories, results_path, warnings)
    if results.empty:
        raise UserError(f"{results_path}: no readable result ({warnings[0] if warnings else 'no valid lines'})")
    if problem:
        warnings.insert(0, f"{directory / RUN_FILE}: {problem}, search space inferred from the configurations")

    configs_path = directory / CONFIGS_FILE
    if configs_path.is_file():
        configs = _configs_frame(_read_lines(configs_path, warnings)[0], configs_path, warnings)
    else:
        warnings.append(f"{configs_path}: missing, hyperparameter values are unknown")
        configs = pd.DataFrame(index=pd.Index([], name="config_id", dtype=object))

    hyperparameters = _searched_hyperparameters(metadata, configs)
    run = RunLog(
        name=str(metadata.get("run_id") or directory.resolve().name),
        directory=directory,
        metadata=metadata,
        hyperparameters=hyperparameters,
        configs=configs,
        results=results,
        loss_metric=loss_metric,
        integer_columns=integer_columns,
        metadata_problem=problem,
    )
    for message in warnings:
        run.warn(message)
    return run


def read_metadata(path: str | os.PathLike) -> tuple[dict, Optional[str]]:
    """A run's ``run.json`` as a dict (empty when absent or unusable) and what is wrong with it (None
    when nothing is), e.g. ``unreadable (Expecting value: line 1 column 1 (char 0))``."""
    path = Path(path)
    if not path.is_file():
        return {}, None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {}, f"unreadable ({error})"
    if not isinstance(value, dict):
        return {}, "not a JSON object, ignored"
    return value, None


def _read_lines(path: Path, warnings: list[str], cut_history: bool = False) -> tuple[list[tuple[int, Any]], list[str]]:
    """Read a one-JSON-value-per-line file: ``(line_number, value)`` per readable line; warn about the others.

    With ``cut_history``, each ``info.history`` that is a flat list of flat records is cut out of
    the text before parsing, replaced by its index into the returned list of history texts
    (parsed on demand by :func:`parse_history`): histories are most of a log's bytes and only
    the best configurations' are ever shown.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    histories: list[str] = []
    original = text
    if cut_history:

        def keep(match: re.Match) -> str:
            histories.append(match.group(1))
            return f'"history": {len(histories) - 1}'

        text = _HISTORY.sub(keep, text)
    try:  # fast path: every line is valid, parse them all at once
        body = text.rstrip("\n")
        if body and "\n\n" not in body and text.endswith("\n"):
            values = json.loads("[" + body.replace("\n", ",") + "]")
            if len(values) == body.count("\n") + 1:
                return list(enumerate(values, start=1)), histories
    except ValueError:
        pass
    rows = []
    lines = text.split("\n")
    torn_possible = not text.endswith("\n")
    last = len(lines) - 1
    original_lines = original.split("\n") if original is not text else lines
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            try:
                rows.append((index + 1, _loads(line)))
            except ValueError:
                if original_lines[index] == line:
                    raise
                rows.append((index + 1, _loads(original_lines[index])))  # a history the cut got wrong
        except ValueError as error:
            if index == last and torn_possible:
                warnings.append(f"{path}:{index + 1}: incomplete last line skipped (run still being written?)")
            else:
                warnings.append(f"{path}:{index + 1}: not valid JSON, line skipped ({error})")
    return rows, histories


def _loads(line: str) -> Any:
    """``json.loads`` for one log line, without its per-call overhead (it adds up over 100k lines)."""
    value, end = _raw_decode(line, 0 if line[:1] not in " \t" else len(line) - len(line.lstrip()))
    if end != len(line) and line[end:].strip():
        raise ValueError(f"extra data at column {end + 1}")
    return value


def parse_history(history: Any) -> Optional[list[dict]]:
    """A result's per-epoch history as a list of dicts (None when absent or unreadable)."""
    if isinstance(history, str):
        try:
            history = json.loads(history)
        except ValueError:
            logger.warning("an unreadable info.history was ignored")
            return None
    if isinstance(history, list) and history:
        return [entry for entry in history if isinstance(entry, dict)] or None
    return None


def _configs_frame(rows: list[tuple[int, Any]], path: Path, warnings: list[str]) -> pd.DataFrame:
    ids: list[str] = []
    values: list[dict] = []
    picks: list[Any] = []
    for number, row in rows:
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[1], dict)):
            warnings.append(f"{path}:{number}: not a configuration line [config_id, config, config_info], skipped")
            continue
        cid = config_id_text(row[0])
        if cid is None:
            warnings.append(f"{path}:{number}: bad config id, line skipped")
            continue
        ids.append(cid)
        values.append(row[1])
        info = row[2] if isinstance(row[2], dict) else {}
        picks.append(info.get("model_based_pick"))
    frame = pd.DataFrame.from_records(values, index=pd.Index(ids, name="config_id", dtype=object)) if values else (
        pd.DataFrame(index=pd.Index([], name="config_id", dtype=object))
    )
    frame["model_based_pick"] = pd.Series(picks, index=frame.index, dtype=object)
    return frame[~frame.index.duplicated(keep="last")]


def _searched_hyperparameters(metadata: dict, configs: pd.DataFrame) -> list[Hyperparameter]:
    declared = metadata.get("hyperparameters")
    if isinstance(declared, list) and declared:
        found = []
        for item in declared:
            if not isinstance(item, dict) or not item.get("name"):
                continue
            if not item.get("searched", item.get("type") != "constant"):
                continue
            choices = item.get("choices") if isinstance(item.get("choices"), list) else ()
            found.append(
                Hyperparameter(str(item["name"]), str(item.get("type", "categorical")), bool(item.get("log")), tuple(choices))
            )
        return found
    return infer_hyperparameters(configs)


def infer_hyperparameters(configs: pd.DataFrame) -> list[Hyperparameter]:
    """The searched hyperparameters of a log without ``run.json``: the keys whose values vary."""
    found = []
    for name in configs.columns:
        if name == "model_based_pick":
            continue
        column = configs[name]
        values = column.dropna()
        if values.empty or (column.nunique(dropna=False) <= 1):
            continue
        if all(is_number(v) for v in values):
            numbers = values.astype(float)
            integral = all(isinstance(v, int) for v in values)
            positive = numbers[numbers > 0]
            log = bool(len(positive) == len(numbers) and positive.max() / positive.min() >= LOG_SCALE_RATIO)
            found.append(Hyperparameter(str(name), "int" if integral else "float", log))
        else:
            found.append(Hyperparameter(str(name), "categorical"))
    return found


def run_start_time(run: RunLog) -> float:
    """Unix time the run started: ``run.json``'s ``started_at``, or the first submission."""
    first = run.results["submitted"].min()
    started = parse_time(run.metadata.get("started_at"))
    candidates = [t for t in (first, started) if t is not None and not math.isnan(t)]
    return min(candidates) if candidates else math.nan


def parse_time(value: Any) -> Optional[float]:
    """An ISO 8601 time (or unix seconds) as unix seconds; None if absent or unreadable."""
    if is_number(value):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
