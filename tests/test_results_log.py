"""The results log is durable: lines and run.json are synced, run.json is replaced atomically,
files follow the umask, a torn last line is cut, and hpbandster still reads the log."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hpbandster.core.result import json_result_logger, logged_results_to_HBS_result

from hpo import line_sync
from hpo import results as results_module
from hpo.durable_files import read_log_lines, repair_torn_line
from hpo.errors import UserError
from hpo.results import (
    ResultsLog,
    check_free,
    read_run_metadata,
    update_run_metadata,
    write_run_metadata,
)

ROOT = Path(__file__).resolve().parents[1]


def _job(index: int, budget: float = 1.0, loss=0.5):
    return SimpleNamespace(
        id=(0, 0, index),
        kwargs={"config": {"lr": 0.01 * (index + 1), "optimizer": "sgd"}, "budget": budget},
        timestamps={"submitted": 100.0 + index, "started": 101.0 + index, "finished": 102.0 + index},
        result=None if loss is None else {"loss": loss, "info": {"status": "ok"}},
        exception=None if loss is not None else "worker died",
    )


def _log_jobs(log: ResultsLog, jobs) -> None:
    for job in jobs:
        log.new_config(job.id, job.kwargs["config"], {"model_based_pick": False})
        log(job)


def _log_run(directory: Path, jobs) -> ResultsLog:
    log = ResultsLog(directory)
    _log_jobs(log, jobs)
    log.close()
    return log


@pytest.fixture
def synced(monkeypatch):
    """Record the path of every file or directory os.fsync is called on (Linux: /proc/self/fd)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd")
    paths: list[str] = []
    real = os.fsync

    def fsync(fd):
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


# --- durability ---------------------------------------------------------------------------------


def _wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_new_files_sync_their_directory_and_lines_are_readable_at_once(tmp_path, monkeypatch):
    directory = tmp_path / "run"
    monkeypatch.setattr(line_sync, "SYNC_INTERVAL", 3600.0)  # the background syncer stays asleep
    paths: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (paths.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    log = ResultsLog(directory)
    assert str(directory) in paths, "creating the log files must sync the directory"
    assert str(tmp_path) in paths, "creating the results directory must sync its parent"
    paths.clear()
    job = _job(0)
    log.new_config(job.id, job.kwargs["config"], {})
    log(job)
    log(_job(1))  # a config the master did not announce: its line is written first
    assert paths == [], "the caller (the master, holding its lock) never waits for an fsync"
    assert [line[0] for line in read_log_lines(directory / "configs.json")] == [[0, 0, 0], [0, 0, 1]]
    assert [line[0] for line in read_log_lines(directory / "results.json")] == [[0, 0, 0], [0, 0, 1]]
    log.flush()
    assert sorted(paths) == [str(directory / "configs.json"), str(directory / "results.json")]


def test_lines_are_synced_in_the_background_soon_after_they_are_written(tmp_path, synced):
    directory = tmp_path / "run"
    log = ResultsLog(directory)
    synced.clear()
    job = _job(0)
    log.new_config(job.id, job.kwargs["config"], {})
    assert _wait_until(lambda: str(directory / "configs.json") in synced), "configs.json never synced"
    synced.clear()
    log(job)
    assert _wait_until(lambda: str(directory / "results.json") in synced), "results.json never synced"
    log.close()


def test_close_syncs_every_line_written_before_it(tmp_path, synced, monkeypatch):
    monkeypatch.setattr(line_sync, "SYNC_INTERVAL", 3600.0)
    directory = tmp_path / "run"
    log = ResultsLog(directory)
    synced.clear()
    _log_jobs(log, [_job(0), _job(1)])
    log.close()
    assert str(directory / "configs.json") in synced and str(directory / "results.json") in synced
    log.close()  # twice is fine


def test_a_failed_background_fsync_is_raised_by_close(tmp_path, monkeypatch):
    log = ResultsLog(tmp_path / "run")

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    log(_job(0))
    with pytest.raises(OSError, match="Input/output error"):
        log.close()


def test_a_log_file_deleted_mid_run_is_made_again_and_its_directory_synced(tmp_path, synced):
    log = ResultsLog(tmp_path / "run")
    (tmp_path / "run" / "results.json").unlink()
    synced.clear()
    log(_job(0))
    assert str(tmp_path / "run" / "results.json") in synced and str(tmp_path / "run") in synced
    assert len(read_log_lines(tmp_path / "run" / "results.json")) == 1


def test_run_json_is_synced_renamed_then_its_directory_synced(tmp_path, synced, monkeypatch):
    events: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        events.append(f"replace {Path(src).name} -> {Path(dst).name}")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_run_metadata(tmp_path, {"status": "running"})
    tmp_synced = [p for p in synced if Path(p).name.startswith(".run.json.")]
    assert len(tmp_synced) == 1, synced
    assert events == [f"replace {Path(tmp_synced[0]).name} -> run.json"]
    assert synced[-1] == str(tmp_path), "the directory is synced after the rename"
    assert read_run_metadata(tmp_path) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"], "no temporary file is left"


def test_a_failure_between_write_and_rename_leaves_the_old_run_json(tmp_path, monkeypatch):
    write_run_metadata(tmp_path, {"status": "running", "jobs": 1})
    before = (tmp_path / "run.json").read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_run_metadata(tmp_path, {"status": "finished", "jobs": 2})
    assert (tmp_path / "run.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_process_killed_between_write_and_rename_leaves_the_old_run_json(tmp_path):
    """A real crash: the process dies (os._exit) right before the rename."""
    write_run_metadata(tmp_path, {"status": "running", "jobs": 1})
    before = (tmp_path / "run.json").read_bytes()
    script = textwrap.dedent(f"""
        import os
        from hpo.results import write_run_metadata
        os.replace = lambda src, dst: os._exit(9)
        write_run_metadata({str(tmp_path)!r}, {{"status": "finished", "jobs": 2}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), timeout=60)
    assert proc.returncode == 9
    assert (tmp_path / "run.json").read_bytes() == before
    assert json.loads(before)["status"] == "running"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "run.json"]
    assert all(name.startswith(".run.json.") for name in leftovers), leftovers  # hidden, complete, ignored
    with pytest.raises(UserError, match="already holds a run"):
        check_free(tmp_path)


def test_update_run_metadata_merges_and_keeps_the_rest(tmp_path):
    write_run_metadata(tmp_path, {"run_id": "r1", "status": "running", "started_at": "t0"})
    assert update_run_metadata(tmp_path, status="finished", finished_at="t1") == {
        "run_id": "r1", "status": "finished", "started_at": "t0", "finished_at": "t1"}
    assert read_run_metadata(tmp_path)["status"] == "finished"
    (tmp_path / "run.json").write_text("{torn")
    assert read_run_metadata(tmp_path) == {}
    with pytest.raises(UserError, match="run.json: cannot read"):
        update_run_metadata(tmp_path, status="interrupted")
    assert (tmp_path / "run.json").read_text() == "{torn"


# --- modes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    directory = tmp_path / "run"
    _log_run(directory, [_job(0)])
    write_run_metadata(directory, {"status": "running"})
    write_run_metadata(directory, {"status": "finished"})  # replaced: still the umask's mode
    for name in ("configs.json", "results.json", "run.json"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == mode, name
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777 & ~mask


# --- hpbandster compatibility ---------------------------------------------------------------------


def test_lines_are_hpbandsters_and_its_loader_reads_them(tmp_path):
    jobs = [_job(0, 1.0, 0.9), _job(1, 1.0, 0.4), _job(1, 3.0, 0.3), _job(2, 1.0, None), _job(3, 1.0, math.nan)]
    _log_run(tmp_path / "ours", jobs)
    theirs = json_result_logger(str(tmp_path / "theirs"))
    for job in jobs[:4]:  # hpbandster writes NaN, which is not JSON: compare the JSON-native ones
        theirs.new_config(job.id, job.kwargs["config"], {"model_based_pick": False})
        theirs(job)
    for name in ("configs.json", "results.json"):
        ours = [json.loads(line) for line in (tmp_path / "ours" / name).read_text().splitlines()]
        theirs_lines = [json.loads(line) for line in (tmp_path / "theirs" / name).read_text().splitlines()]
        if name == "results.json":  # ours adds info.state (for DeepCAVE) and a result for a crashed job
            assert [line[3]["info"]["state"] for line in ours] == ["SUCCESS"] * 3 + ["CRASHED"] * 2
            assert ours[3][3] == {"loss": None, "info": {"status": "failed", "reason": "crashed",
                                                         "message": "worker died", "state": "CRASHED"}}
            for line in ours:
                line[3]["info"].pop("state")
            ours[3][3] = None
        assert ours[: len(theirs_lines)] == theirs_lines
    result = logged_results_to_HBS_result(str(tmp_path / "ours"))
    runs = result.get_all_runs()
    assert len(runs) == 5
    assert sorted(r.loss for r in runs if r.loss is not None) == [0.3, 0.4, 0.9]
    assert result.get_id2config_mapping()[(0, 0, 1)]["config"] == {"lr": 0.02, "optimizer": "sgd"}
    assert "NaN" not in (tmp_path / "ours" / "results.json").read_text()


def test_hpbandster_reads_a_log_after_its_torn_line_is_cut(tmp_path):
    directory = tmp_path / "run"
    _log_run(directory, [_job(0), _job(1)])
    with open(directory / "results.json", "a") as fh:
        fh.write('[[0, 0, 2], 1.0, {"submitted": 1')
    with pytest.raises(ValueError):
        logged_results_to_HBS_result(str(directory))
    warning = repair_torn_line(directory / "results.json")
    assert warning.startswith(f"{directory / 'results.json'}: line 3: cut a torn last line")
    assert len(logged_results_to_HBS_result(str(directory)).get_all_runs()) == 2


# --- torn lines -----------------------------------------------------------------------------------

TORN = {
    # name: (content, what is kept, line number cut, why)
    "no line end": (b'[1]\n[2]\n[3, 4', b"[1]\n[2]\n", 3, "no line end"),
    "valid JSON but no line end": (b"[1]\n[2]", b"[1]\n", 2, "no line end"),
    "zeros from a crash": (b"[1]\n" + b"\0" * 4096, b"[1]\n", 2, "no line end"),
    "zeros then a line end": (b"[1]\n[2]\n\0\0\0\n", b"[1]\n[2]\n", 3, "not a JSON list"),
    "half a value with a line end": (b'[1]\n{"a": \n', b"[1]\n", 2, "not a JSON list"),
    "a blank last line": (b"[1]\n\n", b"[1]\n", 2, "not a JSON list"),
    "not a list": (b"[1]\n42\n", b"[1]\n", 2, "not a JSON list"),
    "the only line": (b"[1, 2", b"", 1, "no line end"),
    "not UTF-8": (b"[1]\n\xff\xfe\n", b"[1]\n", 2, "not a JSON list"),
    "a long torn line (several chunks)": (b"[1]\n[2]\n[\"" + b"x" * (3 << 20), b"[1]\n[2]\n", 3, "no line end"),
    "a long whole line then a torn one": (b"[\"" + b"x" * (3 << 20) + b"\"]\n[9", b"[\"" + b"x" * (3 << 20) + b"\"]\n",
                                          2, "no line end"),
}


@pytest.mark.parametrize("case", sorted(TORN))
def test_a_torn_last_line_is_cut_and_every_complete_line_kept(case, tmp_path, synced):
    content, kept, line, why = TORN[case]
    path = tmp_path / "results.json"
    path.write_bytes(content)
    synced.clear()
    warning = repair_torn_line(path)
    assert path.read_bytes() == kept
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"{path}: line {line}: cut a torn last line ({len(content) - len(kept) - (why != 'no line end')} bytes, {why})")
    assert str(path) in synced
    assert repair_torn_line(path) is None, "a repaired file is whole"


@pytest.mark.parametrize("content", [b"", b"[1]\n", b"[1]\n[2, {\"a\": 3}]\n", b"[\"" + b"y" * (2 << 20) + b"\"]\n"])
def test_a_whole_file_is_left_alone(content, tmp_path):
    path = tmp_path / "configs.json"
    path.write_bytes(content)
    mtime = path.stat().st_mtime_ns
    assert repair_torn_line(path) is None
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime


def test_a_missing_file_needs_no_repair(tmp_path):
    assert repair_torn_line(tmp_path / "results.json") is None
    assert not (tmp_path / "results.json").exists()


def test_read_log_lines_skips_nothing_silently(tmp_path):
    path = tmp_path / "results.json"
    assert read_log_lines(path) == []
    path.write_text('[1, 2]\n[[0, 0, 1], {"a": 1}]\n')
    assert read_log_lines(path) == [[1, 2], [[0, 0, 1], {"a": 1}]]
    path.write_text('[1]\n{oops\n[3]\n')
    with pytest.raises(UserError, match=r"results.json: line 2: not valid JSON"):
        read_log_lines(path)
    path.write_text('[1]\n"text"\n')
    with pytest.raises(UserError, match=r"line 2: expected a JSON list, got str"):
        read_log_lines(path)
    path.write_text('[1]\n[2')
    with pytest.raises(UserError, match=r"line 2: torn last line"):
        read_log_lines(path)


def test_resuming_a_log_cuts_torn_lines_and_keeps_its_configs(tmp_path):
    directory = tmp_path / "run"
    _log_run(directory, [_job(0), _job(1)])
    write_run_metadata(directory, {"status": "interrupted"})
    with open(directory / "configs.json", "a") as fh:
        fh.write("[[0, 0, 2], {\"lr\"")
    log = ResultsLog(directory, resume=True)
    assert len(log.repairs) == 1 and "configs.json: line 3: cut a torn last line" in log.repairs[0]
    assert log.config_ids == {(0, 0, 0), (0, 0, 1)}
    log.new_config((0, 0, 1), {"lr": 1}, {})  # already logged: not again
    log(_job(2))
    assert [line[0] for line in read_log_lines(directory / "configs.json")] == [[0, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert len(logged_results_to_HBS_result(str(directory)).get_all_runs()) == 3
    with pytest.raises(UserError, match="no such results directory"):
        ResultsLog(tmp_path / "nothing", resume=True)


# --- the results directory ------------------------------------------------------------------------


def test_a_directory_holding_only_run_json_is_refused_and_left_alone(tmp_path):
    write_run_metadata(tmp_path / "run", {"status": "running"})
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(UserError) as info:
        ResultsLog(tmp_path / "run")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'run'}: already holds a run (run.json; status running)")
    assert f"--resume {tmp_path / 'run'}" in message and "another --results directory" in message
    assert (tmp_path / "run" / "run.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.json"]


def test_empty_log_files_left_by_a_failed_start_do_not_hold_a_run(tmp_path):
    (tmp_path / "configs.json").touch()
    (tmp_path / "results.json").touch()
    (tmp_path / "logs").mkdir()
    _log_run(tmp_path, [_job(0)])
    assert len(read_log_lines(tmp_path / "results.json")) == 1


def test_non_empty_logs_hold_a_run(tmp_path):
    (tmp_path / "results.json").write_text("[1]\n")
    with pytest.raises(UserError, match=r"already holds a run \(results.json\); continue it with --resume"):
        check_free(tmp_path)


@pytest.mark.parametrize("where, message", [
    ("file/x", "cannot create the results directory: {tmp}/file is not a directory"),
    ("file/x/y", "cannot create the results directory: {tmp}/file is not a directory"),
    ("file", "exists and is not a directory"),
])
def test_results_path_at_or_under_a_file(tmp_path, where, message):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(UserError, match=message.format(tmp=tmp_path)):
        check_free(tmp_path / where)
    assert (tmp_path / "file").read_text() == "keep"


def test_results_under_proc_cannot_be_created():
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(UserError, match="/proc/hpo-test: cannot create the results directory"):
        check_free("/proc/hpo-test")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_results_directory(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        with pytest.raises(UserError, match="not writable"):
            check_free(tmp_path / "ro")
        with pytest.raises(UserError, match="cannot create the results directory"):
            check_free(tmp_path / "ro" / "run")
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_module_keeps_the_file_names(tmp_path):
    assert results_module.LOG_FILES == ("configs.json", "results.json") and results_module.RUN_FILE == "run.json"
