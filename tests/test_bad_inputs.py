"""Every bad input gets one line naming the file or flag and the problem, exit code 2, no
traceback, and nothing that was there before is changed.

The corpus is a table: each row is a command line (and the files it needs), the exit code and a
fragment of the one line expected on stderr. Most rows stop before anything starts (``hpo space
check``, ``hpo train``, ``hpo run``/``master``/``worker`` with a bad flag), so the table runs in
about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.conftest import ROOT, SPACES, hpo_command

SYNTHETIC = str(SPACES / "synthetic.yaml")
H = "hyperparameters:\n"
CATEGORICAL = "{type: categorical, choices: [x, y]"


@dataclass
class Row:
    args: list  # "{tmp}" is the test's directory, "{space}" its space.yaml, "{synthetic}" tests/spaces/synthetic.yaml
    expect: str  # a fragment of stderr's last line (after "{tmp}" is filled in)
    files: dict = field(default_factory=dict)  # name -> text (or bytes), written under {tmp} first
    setup: Optional[Callable[[Path], None]] = None
    code: int = 2
    timeout: float = 60


def _run_json_only(tmp: Path) -> None:
    (tmp / "old").mkdir()
    (tmp / "old" / "run.json").write_text(json.dumps({"run_id": "old", "status": "running"}) + "\n")


def _one_class_folder(tmp: Path) -> None:
    from PIL import Image

    folder = tmp / "images" / "only"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")


def _nested(depth: int) -> str:
    return "a: " + "[" * depth + "\n"


def _alias_bomb() -> str:
    """A million values from six lines: each list holds the previous one ten times."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 6):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


FOLDER_SPACE = """\
job: image_classifier
hyperparameters:
  model: resnet18
  weights: none
  dataset: folder
  data_dir: {tmp}/images
  image_size: 16
  batch_size: 2
"""

ROWS: dict[str, Row] = {
    # --- search-space files: hpo space check -----------------------------------------------------
    "yaml duplicate top-level key": Row(
        ["space", "check", "{space}"], "{space}: line 4: duplicate key 'hyperparameters' (first at line 1)",
        {"space.yaml": H + "  a: 1\nseed: 1\nhyperparameters:\n  b: 2\n"}),
    "yaml duplicate hyperparameter": Row(
        ["space", "check", "{space}"], "{space}: line 4: duplicate key 'lr' in hyperparameters (first at line 2)",
        {"space.yaml": H + "  lr: 0.1\n  optimizer: sgd\n  lr: {type: float, low: 0.1, high: 1}\n"}),
    "yaml duplicate key inside a definition": Row(
        ["space", "check", "{space}"], "duplicate key 'low' in hyperparameters.lr",
        {"space.yaml": H + "  lr: {type: float, low: 0.1, high: 1, low: 0.2}\n"}),
    "yaml nested 5000 deep": Row(
        ["space", "check", "{space}"], "{space}: line 1: lists and mappings nested more than 32 deep",
        {"space.yaml": _nested(5000)}),
    "yaml alias bomb": Row(
        ["space", "check", "{space}"], "more than 100000 values once aliases (*name) are expanded",
        {"space.yaml": _alias_bomb()}),
    "yaml recursive alias": Row(
        ["space", "check", "{space}"], "an alias refers to a value that holds it (a recursive alias)",
        {"space.yaml": "hyperparameters: &h\n  a: *h\n"}),
    "not UTF-8": Row(
        ["space", "check", "{space}"], "{space}: not UTF-8 text (byte 0)", {"space.yaml": b"\xff\xfe h: 1\n"}),
    "space file is a directory": Row(["space", "check", "{tmp}"], "{tmp}: cannot read (Is a directory)"),
    "space file missing": Row(["space", "check", "{tmp}/nope.yaml"], "{tmp}/nope.yaml: no such file"),
    "when cycle of two": Row(
        ["space", "check", "{space}"], "{space}: a, b: their 'when' conditions form a cycle (a when b when a)",
        {"space.yaml": H + f"  a: {CATEGORICAL}, when: {{b: x}}}}\n  b: {CATEGORICAL}, when: {{a: x}}}}\n"}),
    "when cycle of three": Row(
        ["space", "check", "{space}"], "a, b, c: their 'when' conditions form a cycle (a when c when b when a)",
        {"space.yaml": H + f"  a: {CATEGORICAL}, when: {{c: x}}}}\n  b: {CATEGORICAL}, when: {{a: x}}}}\n"
                           f"  c: {CATEGORICAL}, when: {{b: x}}}}\n"}),
    "empty hyperparameter name": Row(
        ["space", "check", "{space}"], "{space}: hyperparameters: '': a hyperparameter name must not be empty",
        {"space.yaml": H + "  \"\": 1\n"}),
    "empty hyperparameter name, explicit key": Row(
        ["space", "check", "{space}"], "hyperparameters: '': a hyperparameter name must not be empty",
        {"space.yaml": H + "  ? ''\n  : 1\n"}),
    "hyperparameter name with a line break": Row(
        ["space", "check", "{space}"], "'a\\nb': a hyperparameter name must not hold control characters",
        {"space.yaml": H + "  \"a\\nb\": 1\n"}),
    "job not installed": Row(
        ["space", "check", "{space}"], "{space}: job: 'imagenet_classifier': no such job installed (installed: ",
        {"space.yaml": "job: imagenet_classifier\n" + H + "  a: 1\n"}),
    "job not a module:callable": Row(
        ["space", "check", "{space}"], "job: 'my jobs:run': not a module:callable",
        {"space.yaml": "job: 'my jobs:run'\n" + H + "  a: 1\n"}),
    "job module not found": Row(
        ["space", "check", "{space}"], "job: 'no_such_package.jobs:run': module no_such_package.jobs not found here",
        {"space.yaml": "job: no_such_package.jobs:run\n" + H + "  a: 1\n"}),
    "forbidden excludes the default": Row(
        ["space", "check", "{space}"],
        "{space}: forbidden[0] excludes the default configuration (optimizer=adamw, regime=frozen): "
        "change a default or the clause",
        {"space.yaml": H + "  optimizer: {type: categorical, choices: [sgd, adamw], default: adamw}\n"
                           "  regime: {type: categorical, choices: [finetune, frozen], default: frozen}\n"
                           "forbidden:\n  - {optimizer: adamw, regime: frozen}\n"}),
    "forbidden excludes every configuration": Row(
        ["space", "check", "{space}"], "forbidden[0] excludes every configuration (every value of optimizer)",
        {"space.yaml": H + "  optimizer: {type: categorical, choices: [sgd, adamw]}\n"
                           "forbidden:\n  - {optimizer: [sgd, adamw]}\n"}),
    "forbidden clauses together exclude every configuration": Row(
        ["space", "check", "{space}"], "forbidden[0], forbidden[1] together exclude every configuration",
        {"space.yaml": H + "  optimizer: {type: categorical, choices: [sgd, adamw]}\n  r: {type: int, low: 1, high: 3}\n"
                           "forbidden:\n  - {optimizer: sgd}\n  - {optimizer: adamw, r: [1, 2, 3]}\n"}),
    "forbidden value not a scalar": Row(
        ["space", "check", "{space}"], "forbidden[0]: a: values must be scalars (got ['x'])",
        {"space.yaml": H + f"  a: {CATEGORICAL}}}\nforbidden:\n  - {{a: [[x]]}}\n"}),
    "forbidden not a list": Row(
        ["space", "check", "{space}"], "{space}: forbidden: must be a list of mappings",
        {"space.yaml": H + f"  a: {CATEGORICAL}}}\nforbidden: {{a: x}}\n"}),
    "choices equal as numbers": Row(
        ["space", "check", "{space}"], "c: choices has duplicates (1 and 1.0)",
        {"space.yaml": H + "  c: {type: categorical, choices: [1, '1', 1.0]}\n"}),
    "int bounds beyond 2**53": Row(
        ["space", "check", "{space}"], "n: int bounds must lie within +-2**53 (got high 1e+30)",
        {"space.yaml": H + "  n: {type: int, low: 0, high: 1e30}\n"}),
    "float range too wide": Row(
        ["space", "check", "{space}"], "x: range too wide",
        {"space.yaml": H + "  x: {type: float, low: -1e308, high: 1e308}\n"}),
    "seed negative": Row(
        ["space", "check", "{space}"], "{space}: seed: must be in 0..4294967295 (got -1)",
        {"space.yaml": "seed: -1\n" + H + "  a: 1\n"}),
    "name not text": Row(
        ["space", "check", "{space}"], "{space}: name: must be text (got list)",
        {"space.yaml": "name: [a, b]\n" + H + "  a: 1\n"}),
    "budget max infinite": Row(
        ["space", "check", "{space}"], "budget.max: must be a number (got inf)",
        {"space.yaml": "budget: {max: .inf}\n" + H + "  a: 1\n"}),
    # --- run ids: one rule everywhere -------------------------------------------------------------
    "run id with @": Row(["master", "{synthetic}", "--run-id", "a@b", "--nameserver", "127.0.0.1:1"],
                         "--run-id 'a@b': not a run id (holds '@'); use 1 to 64 letters, digits, '-' or '_'"),
    "run id with :": Row(["run", "{synthetic}", "--run-id", "a:b"], "--run-id 'a:b': not a run id (holds ':')"),
    "run id with ;": Row(["run", "{synthetic}", "--run-id", "x;rm"], "--run-id 'x;rm': not a run id (holds ';')"),
    "run id with $()": Row(["run", "{synthetic}", "--run-id", "$(id)"],
                           "--run-id '$(id)': not a run id (starts with '$')"),
    "run id empty": Row(["worker", "--run-id", "", "--nameserver", "127.0.0.1:1"], "--run-id '': not a run id (empty)"),
    "run id too long": Row(["run", "{synthetic}", "--run-id", "r" * 65],
                           "not a run id (65 characters, at most 64)"),
    "run id starting with -": Row(["run", "{synthetic}", "--run-id=-x"], "--run-id '-x': not a run id (starts with '-')"),
    "run id with a dot (worker)": Row(["worker", "--run-id", "a.b", "--nameserver", "127.0.0.1:1"],
                                      "--run-id 'a.b': not a run id (holds '.')"),
    # --- results directories ----------------------------------------------------------------------
    "results under a file": Row(["run", "{synthetic}", "--results", "{tmp}/file/x", "--insecure"],
                                "{tmp}/file/x: cannot create the results directory: {tmp}/file is not a directory",
                                {"file": "keep me\n"}),
    "results under /proc": Row(["run", "{synthetic}", "--results", "/proc/hpo-bad-input", "--insecure"],
                               "/proc/hpo-bad-input: cannot create the results directory"),
    "results is a file": Row(["run", "{synthetic}", "--results", "{tmp}/file", "--insecure"],
                             "{tmp}/file: exists and is not a directory", {"file": "keep me\n"}),
    "results holds only an old run.json (run)": Row(
        ["run", "{synthetic}", "--results", "{tmp}/old", "--insecure"],
        "{tmp}/old: already holds a run (run.json; status running); continue it with --resume {tmp}/old, "
        "or pick another --results directory", setup=_run_json_only),
    "results holds only an old run.json (master retried)": Row(
        ["master", "{synthetic}", "--run-id", "old", "--results", "{tmp}/old", "--nameserver", "127.0.0.1:1",
         "--connect-timeout", "1"],
        "{tmp}/old: already holds a run (run.json; status running); continue it with --resume {tmp}/old",
        setup=_run_json_only),
    # --- workers and devices ----------------------------------------------------------------------
    "workers beyond the host": Row(["run", "{synthetic}", "--workers", "1000", "--results", "{tmp}/w"],
                                   "--workers 1000: more than this host runs well (at most "),
    "workers zero": Row(["run", "{synthetic}", "--workers", "0", "--results", "{tmp}/w"], "--workers: must be >= 1 (got 0)"),
    "devices not a device": Row(["run", "{synthetic}", "--devices", "gpu0", "--results", "{tmp}/w"],
                                "--devices 'gpu0': 'gpu0' is not a device (cpu, cuda, cuda:N, mps)"),
    "devices with an empty entry": Row(["run", "{synthetic}", "--devices", "cpu,,cpu", "--results", "{tmp}/w"],
                                       "--devices 'cpu,,cpu': an empty entry"),
    "job flag names nothing installed": Row(["run", "{synthetic}", "--job", "nosuch", "--results", "{tmp}/w"],
                                            "--job 'nosuch': no such job installed"),
    # --- hpo train --------------------------------------------------------------------------------
    "train budget zero": Row(["train", "{synthetic}", "--budget", "0"], "--budget: must be a finite number > 0 (got 0)"),
    "train budget infinite": Row(["train", "{synthetic}", "--budget", "inf"],
                                 "--budget: must be a finite number > 0 (got inf)"),
    "max budget infinite": Row(["run", "{synthetic}", "--max-budget", "inf", "--results", "{tmp}/w"],
                                     "command line: budget.max: must be a finite number (got inf)"),
    "seed flag out of range": Row(["run", "{synthetic}", "--seed", "-1", "--results", "{tmp}/w"],
                                  "--seed: must be in 0..4294967295 (got -1)"),
    "folder data set with one class": Row(
        ["train", "{space}", "--budget", "1", "--device", "cpu"],
        "hpo: job failed (data): data_dir '{tmp}/images': one class ('only'); a classifier needs at least 2",
        {"space.yaml": FOLDER_SPACE}, setup=_one_class_folder, timeout=180),
}


def _snapshot(root: Path) -> dict:
    state = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        content = path.read_bytes() if path.is_file() else None
        state[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, content)
    return state


def _fill(text: str, tmp: Path) -> str:
    return (text.replace("{tmp}", str(tmp)).replace("{space}", str(tmp / "space.yaml"))
            .replace("{synthetic}", SYNTHETIC))


def test_the_corpus_is_large_enough():
    assert len(ROWS) >= 30


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_one_line_and_changes_nothing(name, tmp_path):
    row = ROWS[name]
    for file_name, content in row.files.items():
        target = tmp_path / file_name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(_fill(content, tmp_path))
    if row.setup:
        row.setup(tmp_path)
    before = _snapshot(tmp_path)
    proc = subprocess.run(hpo_command(*[_fill(a, tmp_path) for a in row.args]), capture_output=True, text=True,
                          timeout=row.timeout, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == row.code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hpo: "), proc.stderr[-3000:]
    assert _fill(row.expect, tmp_path) in last, last
    after = _snapshot(tmp_path)
    changed = [path for path, state in before.items() if after.get(path) != state and path != "."]
    assert not changed, f"modified: {changed}"
    created = [path for path in after if path not in before and Path(path).name in ("configs.json", "results.json",
                                                                                     "run.json")]
    assert not created, f"created: {created}"
    assert not Path("/proc/hpo-bad-input").exists()


# --- Ctrl-C reaches hpo even when its parent ignored SIGINT -----------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_stops_a_worker_started_with_sigint_ignored(tmp_path):
    proc = subprocess.Popen(hpo_command("worker", "--run-id", "w1", "--nameserver", "127.0.0.1:1",
                                        "--connect-timeout", "120", "--work-dir", str(tmp_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                            preexec_fn=_ignore_sigint)
    try:
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "hpo: interrupted" and "Traceback" not in err


@pytest.mark.slow
def test_sigint_stops_hpo_run_started_with_sigint_ignored(tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 0.5\n")
    results = tmp_path / "run"
    proc = subprocess.Popen(hpo_command("run", str(space), "--workers", "1", "--results", str(results),
                                        "--run-id", "ign1", "--no-progress", "--insecure"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                            preexec_fn=_ignore_sigint)
    try:
        deadline = time.time() + 90
        while not ((results / "results.json").exists() and (results / "results.json").read_text()):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.time() < deadline, "no result within 90 s"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert json.loads((results / "run.json").read_text())["status"] == "interrupted"
