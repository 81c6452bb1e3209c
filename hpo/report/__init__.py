"""``hpo-report``: tables, summary and plots of BOHB runs, read from their results directories.

Reads logs written by this service and by hpbandster's ``json_result_logger``. Needs pandas for
the tables, plotly for the ``--html`` page and ``hpo dashboard`` (:mod:`hpo.report.figures`),
matplotlib for the ``--plots`` PNGs (each imported only when used); never torch.

    import hpo.report
    trials = hpo.report.load_run("results/run1")   # every result, one row each (a DataFrame)

    from hpo.report import read_run, build_report
    report = build_report(read_run("results/run1"), top=6)
    report.top  # a pandas DataFrame, best first
"""

from hpo.report.loading import RunLog, read_run, read_runs
from hpo.report.status import RunStatus, run_status
from hpo.report.tables import RunReport, build_report
from hpo.report.trials import load_run, trials_frame

__all__ = ["RunLog", "RunReport", "RunStatus", "build_report", "load_run", "read_run", "read_runs", "run_status",
           "trials_frame"]
