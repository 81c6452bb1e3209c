"""hpo-report's plots (PNG, matplotlib Agg) and its self-contained HTML page."""

from __future__ import annotations

from hpo.report.cli import main
from hpo.report.loading import read_run
from hpo.report.plots import hyperparameters_figure, incumbent_figure, learning_curves_figure
from hpo.report.tables import build_report
from report_logs import LogWriter, write_standard_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_are_written_as_png_files(tmp_path, capsys):
    run_dir = write_standard_run(tmp_path / "run1")
    plots = tmp_path / "out" / "plots"
    assert main([str(run_dir), "--plots", str(plots)]) == 0
    assert f"hpo-report: wrote 4 plots to {plots}" in capsys.readouterr().err
    names = sorted(path.name for path in plots.iterdir())
    assert names == ["hyperparameters.png", "incumbent.png", "learning_curves.png", "loss_vs_budget.png"]
    for path in plots.iterdir():
        assert path.read_bytes().startswith(PNG_MAGIC)
        assert path.stat().st_size > 10_000  # something was drawn


def test_figures_have_titled_axes_and_log_axes_where_the_space_is_log_scaled(tmp_path):
    report = build_report(read_run(write_standard_run(tmp_path / "run1")))
    space = hyperparameters_figure(report)
    scales = {axes.get_title(): axes.get_xscale() for axes in space.axes if axes.get_visible()}
    assert scales == {"optimizer": "linear", "lr": "log", "momentum": "linear", "batch_size": "log"}
    optimizer_axes = next(axes for axes in space.axes if axes.get_title() == "optimizer")
    assert [label.get_text() for label in optimizer_axes.get_xticklabels()] == ["sgd", "adamw"]  # the space's order
    curves = learning_curves_figure(report)
    loss_axes, accuracy_axes = curves.axes
    assert loss_axes.get_xlabel() == "epoch" and "accuracy" in accuracy_axes.get_ylabel()
    assert len(loss_axes.get_lines()) == 2 * len(report.top)  # train and validation per configuration
    trajectory = incumbent_figure([report])
    assert "wall time" in trajectory.axes[0].get_xlabel() and "[minutes]" in trajectory.axes[0].get_xlabel()
    assert all(axes.get_title() and axes.get_ylabel() for axes in trajectory.axes)


def test_no_learning_curves_without_histories(tmp_path):
    log = LogWriter(tmp_path / "run")
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    log.ok(cid, 1, 0.5, history=None)
    assert learning_curves_figure(build_report(read_run(tmp_path / "run"))) is None


def test_plots_of_several_runs_and_an_html_page_together(tmp_path, capsys):
    """PNGs per run plus a common incumbent plot; the HTML page (plotly, see test_report_html) beside them."""
    first = write_standard_run(tmp_path / "a", run_id="vgg16")
    second = write_standard_run(tmp_path / "b", run_id="resnet50")
    page = tmp_path / "report" / "index.html"
    plots = tmp_path / "plots"
    assert main([str(first), str(second), "--html", str(page), "--plots", str(plots)]) == 0
    assert len(list(plots.iterdir())) == 7  # a common incumbent plot + 3 per run
    assert all(path.read_bytes().startswith(PNG_MAGIC) for path in plots.iterdir())
    assert {path.name for path in plots.iterdir()} >= {"incumbent.png", "vgg16-learning_curves.png", "resnet50-hyperparameters.png"}
    text = page.read_text()
    assert "<th>optimizer</th>" in text and "(0, 0, 2)" in text


def test_plots_directory_that_is_a_file_is_exit_code_2(tmp_path, capsys):
    run_dir = write_standard_run(tmp_path / "run1")
    (tmp_path / "taken").write_text("")
    assert main([str(run_dir), "--plots", str(tmp_path / "taken")]) == 2
    assert "taken: exists and is not a directory" in capsys.readouterr().err



def _run_with_a_diverged_job(directory):
    """The standard run plus one job whose validation loss went to 5,500 (at budget 1 and 3)."""
    from report_logs import LogWriter as Writer

    write_standard_run(directory)
    log = Writer.__new__(Writer)
    log.directory, log.max_budget, log.clock, log.next_index = directory, 9, 1_800_000_000.0, {1: 0}
    wild = log.config(iteration=1, optimizer="sgd", lr=0.09, momentum=0.99, batch_size=16)
    log.ok(wild, 1, 5500.0)
    log.ok(wild, 3, 5400.0)
    return build_report(read_run(directory))


def _points_above(axes, y: float) -> int:
    return sum(int((collection.get_offsets()[:, 1] > y).sum()) for collection in axes.collections)


def test_one_diverged_job_does_not_flatten_the_loss_plots(tmp_path):
    from hpo.report.plots import loss_vs_budget_figure

    report = _run_with_a_diverged_job(tmp_path / "run1")
    figure = loss_vs_budget_figure(report)
    axes = figure.axes[0]
    low, high = axes.get_ylim()
    assert axes.get_yscale() == "linear" and 0.2 < low < 0.3 and 1.0 < high < 1.3  # the others span the axis
    labels = axes.get_legend_handles_labels()[1]
    assert "loss above the axis" in labels and "diverged" in labels and "failed / crashed / lost" in labels
    assert _points_above(axes, high) == 0  # the 5,500s are drawn at the edge, inside the figure
    outliers = next(c for c in axes.collections if c.get_label() == "loss above the axis")
    assert len(outliers.get_offsets()) == 2 and outliers.get_offsets()[:, 1].max() <= high
    space = hyperparameters_figure(report)
    for panel in (a for a in space.axes if a.get_visible()):
        assert panel.get_ylim()[1] < 1.3, panel.get_title()
        assert {"loss above the axis", "diverged"} <= set(panel.get_legend_handles_labels()[1]), panel.get_title()
    trajectory = incumbent_figure([report])
    assert all(axes.get_ylim()[1] < 1.3 for axes in trajectory.axes)


def test_learning_curves_of_a_diverged_configuration_are_clipped(tmp_path):
    log = LogWriter(tmp_path / "run")
    tame = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    log.ok(tame, 3, 0.4)
    wild = log.config(optimizer="sgd", lr=0.09, momentum=0.9, batch_size=32)
    history = [{"epoch": e, "train_loss": 0.5, "val_loss": value} for e, value in ((1, 0.6), (2, 0.55), (3, 4000.0))]
    log.ok(wild, 3, 0.5, history=history)
    for other, loss in ((0.45, 0.45), (0.47, 0.47)):
        log.ok(log.config(optimizer="sgd", lr=other / 10, momentum=0.9, batch_size=32), 3, loss)
    loss_axes = learning_curves_figure(build_report(read_run(tmp_path / "run"))).axes[0]
    assert loss_axes.get_ylim()[1] < 2
    assert "loss above the axis" in loss_axes.get_legend().get_texts()[0].get_text()
