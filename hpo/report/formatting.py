"""Turning reports into output: a terminal page, Markdown, CSV and strict JSON.

The text, Markdown and HTML outputs share one list of :class:`Section` (a title, a table of
display strings and/or a line of text); CSV holds the best-configurations table only; JSON
holds everything the tables and the summary hold, as raw values (null where missing).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from hpo.report.display import (
    MISSING,
    budget_text,
    budgets_display,
    comparison_display,
    compute_text,
    correlations_display,
    count_text,
    failures_display,
    is_missing,
    shorten,
    top_display,
    trajectory_display,
)
from hpo.report.result_lines import config_id_text
from hpo.report.tables import RunReport, combined_top, comparison_table

#: How many rows of the longer summary tables the text/Markdown/HTML pages show (JSON has all).
FAILURES_SHOWN = 10
TRAJECTORY_SHOWN = 15


@dataclass
class Section:
    """A titled part of the page: a table of display strings, a line of text, or both."""

    title: str
    table: Optional[pd.DataFrame] = None
    text: Optional[str] = None
    level: int = 2


def run_description(report: RunReport) -> str:
    meta = report.run.metadata
    parts = [f"directory {report.run.directory}"]
    if report.status is not None and report.status.state != "unknown":
        parts.insert(0, report.status.text)
    if meta.get("optimizer"):
        parts.append(f"optimizer {meta['optimizer']}")
    if meta.get("min_budget") is not None and meta.get("max_budget") is not None:
        eta = f", eta {budget_text(meta['eta'])}" if meta.get("eta") is not None else ""
        parts.append(f"budgets {budget_text(meta['min_budget'])} to {budget_text(meta['max_budget'])}{eta}")
    if meta.get("job"):
        parts.append(f"job {meta['job']}")
    if meta.get("space_file"):
        parts.append(f"space {meta['space_file']}")
    best_model = meta.get("best_model")
    if isinstance(best_model, dict) and (best_model.get("path") or best_model.get("directory")):
        parts.append(f"best model (config {config_id_text(best_model.get('config_id')) or '?'}) kept in "
                     f"{best_model.get('path') or best_model.get('directory')}")
    if not meta:
        what = f"run.json: {report.run.metadata_problem};" if report.run.metadata_problem else "no run.json:"
        parts.append(f"{what} searched hyperparameters inferred from the configurations")
    return "; ".join(parts)


# --- sections ------------------------------------------------------------------------------------


def sections(reports: list[RunReport]) -> list[Section]:
    """The page: the best configurations first, then each run's summary."""
    found: list[Section] = []
    if len(reports) == 1:
        report = reports[0]
        found.append(Section(f"Run {report.name}", text=run_description(report), level=1))
        found.append(_top_section(report))
    else:
        found.append(Section("Runs compared", table=comparison_display(comparison_table(reports)), level=1))
        hyperparameters = [hp for report in reports for hp in report.run.hyperparameters]
        top = combined_top(reports)
        found.append(
            Section(
                "Best configurations of each run, at its highest budget",
                table=top_display(top, hyperparameters) if len(top) else None,
                text=None if len(top) else "no successful result in any run",
            )
        )
    for report in reports:
        prefix = "" if len(reports) == 1 else f"{report.name}: "
        if len(reports) > 1:
            found.append(Section(f"Run {report.name}", text=run_description(report), level=1))
        found.extend(_summary_sections(report, prefix))
    return found


def _top_section(report: RunReport) -> Section:
    if report.top.empty:
        return Section("Best configurations", text="no successful result yet")
    at_budget = (report.run.results["budget"] == report.top_budget).sum()
    title = (
        f"Best {len(report.top)} configurations at budget {budget_text(report.top_budget)} "
        f"(of {count_text(at_budget)} results at that budget)"
    )
    return Section(title, table=top_display(report.top, report.run.hyperparameters))


def _summary_sections(report: RunReport, prefix: str) -> list[Section]:
    found = [Section(f"{prefix}Budgets", table=budgets_display(report.budgets))]
    failures = report.failures
    if failures.empty:
        found.append(Section(f"{prefix}Failures", text="none"))
    else:
        counts = failures["reason"].value_counts()
        summary = ", ".join(f"{reason} {count}" for reason, count in counts.items())
        more = len(failures) - FAILURES_SHOWN
        text = f"{len(failures)} failed: {summary}" + (f"; the first {FAILURES_SHOWN} shown (all in --format json)" if more > 0 else "")
        found.append(Section(f"{prefix}Failures", table=failures_display(failures.head(FAILURES_SHOWN)), text=text))
    trajectory = report.trajectory
    if trajectory.empty:
        found.append(Section(f"{prefix}Incumbent trajectory", text="no successful result yet"))
    else:
        more = len(trajectory) - TRAJECTORY_SHOWN
        text = f"{len(trajectory)} changes of the incumbent (best loss at the highest budget so far)"
        text += f"; the last {TRAJECTORY_SHOWN} shown" if more > 0 else ""
        found.append(
            Section(f"{prefix}Incumbent trajectory", table=trajectory_display(trajectory.tail(TRAJECTORY_SHOWN)), text=text)
        )
    correlations = report.correlations
    if correlations.empty:
        found.append(Section(f"{prefix}Rank correlation between budgets", text="fewer than two budgets with results"))
    else:
        found.append(
            Section(
                f"{prefix}Rank correlation between budgets",
                table=correlations_display(correlations),
                text="Spearman's rho of the losses of configurations run on both budgets: near 1, the lower budget already ranks them right",
            )
        )
    found.append(_lost_section(report, prefix))
    found.append(Section(f"{prefix}Compute", text=compute_text(report.compute)))
    return found


def _lost_section(report: RunReport, prefix: str) -> Section:
    """Jobs whose worker died (each lost attempt; rerun or finally failed) and, for a run that
    stopped early, the configurations that never got a result."""
    title = f"{prefix}Lost and retried jobs"
    status = report.status
    if status is None:
        return Section(title, text="unknown")
    notes = []
    lost = status.lost_attempts
    retried = status.retried
    if not lost.empty:
        gone = int((retried["status"] != "ok").sum()) if not retried.empty else 0
        notes.append(f"{len(lost)} attempt(s) lost with their worker; {len(retried)} job(s) ran again"
                     + (f", {gone} of them failed in the end" if gone else ""))
    elif not retried.empty:
        notes.append(f"{len(retried)} job(s) needed more than one attempt")
    if status.unfinished and status.ended:
        shown = ", ".join(status.unfinished[:FAILURES_SHOWN]) + (" ..." if len(status.unfinished) > FAILURES_SHOWN else "")
        notes.append(f"{len(status.unfinished)} configuration(s) sampled without any result (running or queued when "
                     f"the run stopped): {shown}")
    if not notes:
        return Section(title, text="none")
    table = None
    if not lost.empty:
        table = pd.DataFrame(
            {
                "config": lost["config_id"].astype(str),
                "budget": lost["budget"].map(budget_text),
                "attempt": lost["attempt"].map(count_text),
                "worker": lost["worker"].map(lambda v: MISSING if is_missing(v) else shorten(str(v), 40)),
                "why": lost["reason"].map(lambda v: MISSING if is_missing(v) else str(v)),
            }
        ).head(FAILURES_SHOWN)
    return Section(title, table=table, text="; ".join(notes))


# --- renderers -------------------------------------------------------------------------------------


def render_text(reports: list[RunReport]) -> str:
    out = []
    for section in sections(reports):
        underline = "=" if section.level == 1 else "-"
        out.append(section.title)
        out.append(underline * min(len(section.title), 100))
        if section.text:
            out.append(section.text)
        if section.table is not None:
            out.append(text_table(section.table))
        out.append("")
    return "\n".join(out)


def text_table(table: pd.DataFrame) -> str:
    """A table of display strings for the terminal: numbers right-aligned, words left-aligned."""
    columns = [[str(column), *table[column].astype(str)] for column in table.columns]
    lines = [[] for _ in range(len(table) + 1)]
    for cells in columns:
        width = max(len(cell) for cell in cells)
        numeric = all(_looks_numeric(cell) for cell in cells[1:])
        for line, cell in zip(lines, cells):
            line.append(cell.rjust(width) if numeric else cell.ljust(width))
    return "\n".join("  ".join(line).rstrip() for line in lines)


def _looks_numeric(text: str) -> bool:
    if text == MISSING:
        return True
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def render_markdown(reports: list[RunReport]) -> str:
    out = []
    for section in sections(reports):
        out.append(f"{'#' * section.level} {section.title}\n")
        if section.text:
            out.append(section.text + "\n")
        if section.table is not None:
            out.append(markdown_table(section.table) + "\n")
    return "\n".join(out)


def markdown_table(table: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_csv(reports: list[RunReport]) -> str:
    """The best-configurations table (with a ``run`` column when there are several runs)."""
    table = combined_top(reports) if len(reports) > 1 else reports[0].top
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def report_data(reports: list[RunReport]) -> dict:
    """Everything the report holds, as plain JSON-ready values."""
    runs = []
    for report in reports:
        run = report.run
        runs.append(
            {
                "name": report.name,
                "directory": str(run.directory),
                "metadata": run.metadata or None,
                "hyperparameters": [
                    {"name": hp.name, "type": hp.type, "log": hp.log, "choices": list(hp.choices) or None}
                    for hp in run.hyperparameters
                ],
                "top_budget": report.top_budget,
                "top": _records(report.top),
                "budgets": _records(report.budgets),
                "failures": _records(report.failures),
                "trajectory": _records(report.trajectory),
                "rank_correlations": _records(report.correlations),
                "compute": report.compute,
                "status": None if report.status is None else {
                    "state": report.status.state,
                    "detail": report.status.detail,
                    "lost_attempts": _records(report.status.lost_attempts),
                    "retried": _records(report.status.retried),
                    "unfinished": list(report.status.unfinished),
                },
                "warnings": list(run.warnings),
            }
        )
    data: dict = {"runs": runs}
    if len(reports) > 1:
        data["comparison"] = _records(comparison_table(reports))
    return json_safe(data)


def render_json(reports: list[RunReport]) -> str:
    return json.dumps(report_data(reports), indent=2, allow_nan=False) + "\n"


def _records(table: pd.DataFrame) -> list[dict]:
    return [dict(zip(table.columns, row)) for row in table.itertuples(index=False, name=None)]


def json_safe(value: Any) -> Any:
    """Plain Python values for JSON: numpy scalars unwrapped, NaN/Infinity/NA -> None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
