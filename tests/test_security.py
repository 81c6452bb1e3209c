"""Transport security with real processes on loopback: certificates, mutual TLS, secure defaults,
no code named over the network, results only from the worker that got the job, bogus connections."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import Pyro4
import pytest

from tests.conftest import ROOT, SPACES, hpo_command
from tests.test_service import free_port, read_lines, start, stop

SYNTHETIC = str(SPACES / "synthetic.yaml")


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls") / "deployment"
    proc = subprocess.run(hpo_command("certs", str(directory), "--host", "127.0.0.1"), capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    return directory


@pytest.fixture(scope="module")
def other_ca_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls") / "other"
    subprocess.run(hpo_command("certs", str(directory), "--host", "127.0.0.1"), check=True, capture_output=True,
                   timeout=60, cwd=str(ROOT))
    return directory


@pytest.fixture
def pyro_tls(tls_dir):
    """This test process talks TLS with the deployment's certificate; plain Pyro4 again afterwards."""
    from hpo.transport import Transport, configure

    configure(Transport(tls_dir=str(tls_dir)))
    yield tls_dir
    configure(Transport())


def wait_for_names(port: int, prefix: str, count: int = 1, timeout: float = 60) -> dict:
    import Pyro4

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with Pyro4.locateNS(host="127.0.0.1", port=port) as ns:
                names = ns.list(prefix=prefix)
            if len(names) >= count:
                return names
        except Pyro4.errors.PyroError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"fewer than {count} names {prefix}* after {timeout} s")


# --- certificates -------------------------------------------------------------------------------


def test_certs_makes_a_ca_and_a_certificate_for_the_hosts(tmp_path, run_hpo):
    from cryptography import x509

    directory = tmp_path / "tls"
    proc = run_hpo("certs", str(directory), "--host", "head.example.org", "--host", "10.1.2.3", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("ca.pem", "ca.key", "cert.pem", "key.pem"):
        assert (directory / name).is_file()
    for key in ("ca.key", "key.pem"):
        assert stat.S_IMODE((directory / key).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "head.example.org" in names.get_values_for_type(x509.DNSName)
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} >= {"10.1.2.3", "127.0.0.1"}
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)

    # nothing is overwritten; --if-missing leaves the directory as it is
    before = (directory / "key.pem").read_bytes()
    again = run_hpo("certs", str(directory), "--host", "x", timeout=60)
    assert again.returncode == 2 and "already holds certificates" in again.stderr and "Traceback" not in again.stderr
    assert run_hpo("certs", str(directory), "--host", "x", "--if-missing", timeout=60).returncode == 0
    assert (directory / "key.pem").read_bytes() == before

    # another host, signed by the same CA
    other = tmp_path / "gpu2"
    assert run_hpo("certs", str(other), "--ca", str(directory), "--host", "gpu2", timeout=60).returncode == 0
    assert not (other / "ca.key").exists()
    x509.load_pem_x509_certificate((other / "cert.pem").read_bytes()).verify_directly_issued_by(ca)


@pytest.mark.parametrize("args, message", [
    (["--tls", "/nonexistent/tls"], "--tls /nonexistent/tls: not a directory"),
    (["--host", "0.0.0.0"], "--host 0.0.0.0: listening beyond loopback needs TLS"),
])
def test_bad_transport_settings_get_one_line(args, message, run_hpo):
    proc = run_hpo("nameserver", "--port", str(free_port()), *args, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"hpo: {message}" or message in proc.stderr.strip().splitlines()[-1]


def test_insecure_listening_is_allowed_explicitly_with_a_warning(tmp_path):
    nameserver = start("nameserver", "--host", "0.0.0.0", "--port", str(free_port()), "--insecure",
                       log=tmp_path / "ns.log")
    try:
        deadline = time.time() + 30
        while "listening on" not in (tmp_path / "ns.log").read_text():
            assert nameserver.poll() is None and time.time() < deadline, (tmp_path / "ns.log").read_text()
            time.sleep(0.2)
        assert "INSECURE: listening on 0.0.0.0 without TLS" in (tmp_path / "ns.log").read_text()
    finally:
        stop(nameserver)


# --- who may connect ----------------------------------------------------------------------------

CLIENT_SCRIPT = r"""
import json, sys, Pyro4
mode, ca, cert, key, port, worker_uri, dispatcher_uri = sys.argv[1:]
Pyro4.config.COMMTIMEOUT = 5
if mode != "plain":
    Pyro4.config.SSL = True
    Pyro4.config.SSL_CACERTS = ca
    if mode == "other-ca":
        Pyro4.config.SSL_CLIENTCERT, Pyro4.config.SSL_CLIENTKEY = cert, key
import Pyro4.socketutil
Pyro4.socketutil.getSSLcontext(clientcert=Pyro4.config.SSL_CLIENTCERT, clientkey=Pyro4.config.SSL_CLIENTKEY,
                               cacerts=ca).check_hostname = False

def attempt(name, call):
    try:
        call()
        print(json.dumps({"attempt": name, "succeeded": True}))
    except Exception as exc:
        print(json.dumps({"attempt": name, "succeeded": False, "error": type(exc).__name__}))

def ns():
    return Pyro4.locateNS(host="127.0.0.1", port=int(port))

attempt("list", lambda: ns().list())
attempt("register", lambda: ns().register("hpbandster.run_sec.worker.fake", "PYRO:fake@127.0.0.1:1"))
attempt("call_worker", lambda: Pyro4.Proxy(worker_uri).is_busy())
attempt("deliver_result", lambda: Pyro4.Proxy(dispatcher_uri).register_result(
    [0, 0, 0], {"result": {"loss": -1e9, "info": {}}, "exception": None}, "guess"))
"""


@pytest.mark.parametrize("mode", ["plain", "no-certificate", "other-ca"])
def test_clients_without_a_deployment_certificate_are_refused(mode, tmp_path, tls_dir, other_ca_dir, pyro_tls):
    """No certificate, or one of another CA: no listing, registering, calling a worker or delivering."""
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 1\n")
    port = free_port()
    tls = ["--tls", str(tls_dir)]
    nameserver = start("nameserver", "--port", str(port), *tls, log=tmp_path / "ns.log")
    worker = start("worker", "--run-id", "sec", "--nameserver", f"127.0.0.1:{port}", "--work-dir", str(tmp_path),
                   *tls, log=tmp_path / "w.log")
    master = start("master", str(space), "--run-id", "sec", "--nameserver", f"127.0.0.1:{port}", "--results",
                   str(tmp_path / "run"), "--iterations", "1", "--no-progress", *tls, log=tmp_path / "m.log")
    try:
        workers = wait_for_names(port, "hpbandster.run_sec.worker.")
        dispatcher = wait_for_names(port, "hpbandster.run_sec.dispatcher")
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT_SCRIPT, mode, str(tls_dir / "ca.pem"), str(other_ca_dir / "cert.pem"),
             str(other_ca_dir / "key.pem"), str(port), str(next(iter(workers.values()))),
             str(next(iter(dispatcher.values())))],
            capture_output=True, text=True, timeout=90, cwd=str(ROOT))
        outcomes = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert len(outcomes) == 4, proc.stdout + proc.stderr
        assert not [o for o in outcomes if o["succeeded"]], outcomes
        # the legitimate run is unharmed: it finishes, and the fake name was never registered
        import Pyro4

        with Pyro4.locateNS(host="127.0.0.1", port=port) as ns:
            assert "hpbandster.run_sec.worker.fake" not in ns.list(prefix="hpbandster.run_sec.")
        assert master.wait(timeout=120) == 0, (tmp_path / "m.log").read_text()[-3000:]
        lines = read_lines(tmp_path / "run" / "results.json")
        assert len(lines) == 13 and all(r[3]["loss"] > -1e9 for r in lines)
    finally:
        stop(worker, master, nameserver)


# --- no code named over the network -------------------------------------------------------------


@Pyro4.expose
class ResultCollector:
    """Stands in for a dispatcher: collects the results workers deliver."""

    def __init__(self) -> None:
        self.results: list = []
        self.arrived = threading.Event()

    @Pyro4.oneway
    def register_result(self, id=None, result=None, ticket=None):
        self.results.append((id, result, ticket))
        self.arrived.set()


@pytest.mark.parametrize("use_tls", [True, False], ids=["tls", "plain"])
def test_a_worker_refuses_jobs_and_places_it_was_not_configured_with(use_tls, tmp_path, tls_dir):
    """start_computation called directly, naming code or a directory the worker does not allow:
    refused with reason 'job', and nothing is imported."""
    from hpo.transport import Transport, configure

    marker = tmp_path / "imported"
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "evil_marker.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                            "def run(config, context):\n    return {'loss': 0.0, 'info': {}}\n")
    transport = Transport(tls_dir=str(tls_dir)) if use_tls else Transport()
    configure(transport)
    port = free_port()
    env_log = tmp_path / "w.log"
    nameserver = start("nameserver", "--port", str(port), *transport.args(), log=tmp_path / "ns.log")
    worker = subprocess.Popen(hpo_command("worker", "--run-id", "rce", "--nameserver", f"127.0.0.1:{port}",
                                          "--work-dir", str(tmp_path / "root"), *transport.args()),
                              stdout=open(env_log, "w"), stderr=subprocess.STDOUT, cwd=str(ROOT),
                              env={**os.environ, "PYTHONPATH": str(package)}, stdin=subprocess.DEVNULL)
    daemon = None
    try:
        uri = next(iter(wait_for_names(port, "hpbandster.run_rce.worker.").values()))
        callback = ResultCollector()
        daemon = Pyro4.Daemon(host="127.0.0.1")
        daemon.register(callback)
        threading.Thread(target=daemon.requestLoop, daemon=True).start()
        cases = [
            ({"job": "pty:spawn"}, str(tmp_path / "root" / "run" / "work"), "pty:spawn' is not allowed"),
            ({"job": "evil_marker:run"}, str(tmp_path / "root" / "run" / "work"), "evil_marker:run' is not allowed"),
            ({"job": "synthetic"}, str(tmp_path / "elsewhere"), "outside worker"),
        ]
        for i, (context, directory, message) in enumerate(cases):
            callback.arrived.clear()
            with Pyro4.Proxy(uri) as proxy:
                proxy.start_computation(callback, (0, 0, i), config={}, budget=1.0, working_directory=directory,
                                        context=context, ticket="t")
            assert callback.arrived.wait(30), env_log.read_text()
            job_id, result, ticket = callback.results[-1]
            info = result["result"]["info"]
            assert result["exception"] is None and result["result"]["loss"] is None
            assert info["reason"] == "job" and message in info["message"], info
            assert ticket == "t"
        assert not marker.exists()  # the module named over the network was never imported
        # a job the worker knows, in its work root, still runs
        callback.arrived.clear()
        with Pyro4.Proxy(uri) as proxy:
            proxy.start_computation(callback, (1, 0, 0), config={"lr": 0.01, "optimizer": "sgd"}, budget=1.0,
                                    working_directory=str(tmp_path / "root" / "run" / "work"),
                                    context={"job": "synthetic", "max_budget": 1.0}, ticket="t")
        assert callback.arrived.wait(30)
        assert isinstance(callback.results[-1][1]["result"]["loss"], float)
    finally:
        if daemon is not None:
            daemon.shutdown()
        stop(worker, nameserver)
        configure(Transport())


def test_module_callable_jobs_run_when_the_worker_names_them(tmp_path, run_hpo):
    """A space whose job is module:callable runs under `hpo run` (its workers get the space)."""
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "myjob.py").write_text("def run(config, context):\n"
                                      "    return {'loss': float(context.budget), 'info': {'mine': True}}\n")
    space = tmp_path / "custom.yaml"
    space.write_text(Path(SYNTHETIC).read_text().replace("job: synthetic", "job: myjob:run"))
    proc = run_hpo("run", str(space), "--results", str(tmp_path / "run"), "--iterations", "1", "--no-progress",
                   env={"PYTHONPATH": str(package)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_lines(tmp_path / "run" / "results.json")
    assert lines and all(r[3]["info"].get("mine") for r in lines)


# --- results only from the worker that got the job ----------------------------------------------


def test_a_forged_result_for_a_running_job_is_dropped(tmp_path, tls_dir, pyro_tls):
    """Even a holder of a deployment certificate cannot deliver a result for a job it was not given."""
    import Pyro4

    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 0.5\n")
    port = free_port()
    tls = ["--tls", str(tls_dir)]
    nameserver = start("nameserver", "--port", str(port), *tls, log=tmp_path / "ns.log")
    worker = start("worker", "--run-id", "forge", "--nameserver", f"127.0.0.1:{port}", "--work-dir", str(tmp_path),
                   *tls, log=tmp_path / "w.log")
    master = start("master", str(space), "--run-id", "forge", "--nameserver", f"127.0.0.1:{port}", "--results",
                   str(tmp_path / "run"), "--iterations", "1", "--no-progress", *tls, log=tmp_path / "m.log")
    forged = {"result": {"loss": -12345.0, "info": {"forged": True}}, "exception": None}
    try:
        uri = next(iter(wait_for_names(port, "hpbandster.run_forge.dispatcher").values()))
        deadline = time.time() + 60
        while "at budget" not in (tmp_path / "w.log").read_text():  # the first job is running
            assert time.time() < deadline, (tmp_path / "w.log").read_text()
            time.sleep(0.1)
        with Pyro4.Proxy(uri) as dispatcher:
            for index in range(9):  # every job of the first stage, running or queued
                dispatcher.register_result([0, 0, index], forged, "a-guessed-ticket")
                dispatcher.register_result([0, 0, index], forged)
            dispatcher.register_result([7, 7, 7], forged, "x")  # unknown job
        assert master.wait(timeout=120) == 0, (tmp_path / "m.log").read_text()[-3000:]
    finally:
        stop(worker, master, nameserver)
    lines = read_lines(tmp_path / "run" / "results.json")
    assert len(lines) == 13
    assert not [r for r in lines if r[3] and r[3]["info"].get("forged")]
    assert len({(tuple(r[0]), r[1]) for r in lines}) == 13  # one result per job, no duplicates
    log = (tmp_path / "m.log").read_text()
    assert "does not come from the worker the job was dispatched to" in log
    assert "no such job is running" in log


def test_a_late_result_from_an_attempt_declared_lost_is_named_as_such_and_dropped(caplog):
    """A frozen worker declared lost may wake and deliver: its old ticket no longer counts, and the log
    says it is a late result (not a forgery); the retry's result finishes the job once."""
    import logging

    from hpbandster.core.dispatcher import Job

    from hpo.dispatcher import ServiceDispatcher

    finished = []
    dispatcher = ServiceDispatcher(finished.append, run_id="late", nameserver="127.0.0.1", nameserver_port=1,
                                   logger=logging.getLogger("test.dispatcher"))
    job = Job((0, 0, 0), config={}, budget=1.0, working_directory=".")
    job.worker_name, job.ticket, job.attempt = "frozen-host", "first-ticket", 1
    dispatcher.running_jobs[job.id] = job
    dispatcher._attempt_lost(job, "worker did not answer")
    late = {"result": {"loss": 1.0, "info": {}}, "exception": None}
    with caplog.at_level(logging.WARNING, logger="test.dispatcher"):
        dispatcher.register_result([0, 0, 0], late, "first-ticket")  # while the job waits for a worker
    assert "late result for job (0, 0, 0) from attempt 1 on frozen-host, declared lost (worker did not answer); " \
           "the job runs again or has finished" in caplog.text
    assert dispatcher.waiting_jobs.get_nowait() is job and job.attempt == 2
    job.worker_name, job.ticket = "other-host", "second-ticket"  # handed out again
    dispatcher.running_jobs[job.id] = job
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test.dispatcher"):
        dispatcher.register_result([0, 0, 0], late, "first-ticket")
    assert not finished and job.id in dispatcher.running_jobs
    assert "late result for job (0, 0, 0) from attempt 1 on frozen-host, declared lost (worker did not answer); " \
           "attempt 2 keeps the job" in caplog.text
    assert "does not come from the worker" not in caplog.text and "no such job" not in caplog.text
    dispatcher.register_result([0, 0, 0], {"result": {"loss": 2.0, "info": {}}, "exception": None}, "second-ticket")
    assert finished == [job] and job.result["loss"] == 2.0
    assert "first-ticket" not in str(job.lost_attempts)  # tickets stay out of the attempts log
    dispatcher.register_result([0, 0, 1], late, "first-ticket")  # another job's id with that ticket: not late
    assert "no such job is running" in caplog.text


# --- bounded: bogus connections -----------------------------------------------------------------


def _listening_ports(pids: set[int]) -> list[int]:
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
    ports = set()
    for line in out.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            address = line.split()[3]
            if address.startswith("127."):
                ports.add(int(address.rsplit(":", 1)[1]))
    return sorted(ports)


def _tree(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(current)], capture_output=True, text=True).stdout
        todo += [int(p) for p in out.split()]
    return found


def test_a_burst_of_bogus_connections_does_not_stop_a_run(tmp_path):
    """Junk bytes, half-open silent connections and TLS clients without certificates, against every
    port of a TLS run (nameserver, dispatcher, workers), while it runs: it still finishes."""
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 0.2\n")
    results = tmp_path / "run"
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "2", "--results", str(results),
                                       "--run-id", "burst", "--iterations", "2", "--no-progress"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    held = []
    try:
        deadline = time.time() + 60
        ports: list[int] = []
        while len(ports) < 4 and time.time() < deadline:  # nameserver, dispatcher, two workers
            time.sleep(0.5)
            ports = _listening_ports(_tree(run.pid))
        assert len(ports) >= 4, ports
        no_cert = ssl.create_default_context()
        no_cert.check_hostname, no_cert.verify_mode = False, ssl.CERT_NONE
        for round_ in range(5):  # bounded: 5 rounds x ports x 8 connections
            for port in ports:
                for kind in range(8):
                    try:
                        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    except OSError:
                        continue
                    if kind % 3 == 0:
                        held.append(sock)  # silent: never completes a handshake
                        continue
                    try:
                        if kind % 3 == 1:
                            sock.sendall(os.urandom(512))
                        else:
                            with no_cert.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                                tls.sendall(b"PYRO" + os.urandom(64))
                    except OSError:
                        pass
                    finally:
                        sock.close()
            time.sleep(0.5)
        _, err = run.communicate(timeout=180)
    finally:
        for sock in held:
            sock.close()
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err[-3000:]
    lines = read_lines(results / "results.json")
    assert len(lines) == 17 and all(r[3] is not None and r[3]["loss"] is not None for r in lines)


def test_a_silent_connection_does_not_block_the_nameserver(tmp_path, tls_dir, pyro_tls):
    """The TLS handshake runs in the connection's thread: clients that connect and say nothing do
    not keep the next client from being served."""
    import Pyro4

    port = free_port()
    nameserver = start("nameserver", "--port", str(port), "--tls", str(tls_dir), log=tmp_path / "ns.log")
    silent = []
    try:
        wait_for_names(port, "Pyro.NameServer")
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        Pyro4.config.COMMTIMEOUT = 5
        try:
            with Pyro4.locateNS(host="127.0.0.1", port=port) as ns:
                assert "Pyro.NameServer" in ns.list()
        finally:
            Pyro4.config.COMMTIMEOUT = 0.0
    finally:
        for sock in silent:
            sock.close()
        stop(nameserver)
