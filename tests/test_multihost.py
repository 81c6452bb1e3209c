"""A whole TLS run across network namespaces, with an attacker on the same network.

Five namespaces made for this test only: a hub holding a Linux bridge, and four nodes joined to it
by veth pairs on a private /24 that exists nowhere else: the head (nameserver and master), two
worker hosts, and an attacker. The run must finish with mutual TLS while every attempt of the
attacker (no TLS, TLS without a client certificate, TLS with a certificate of another CA) fails.
Nothing is sent outside loopback and these namespaces; the root namespace's addresses and routes
are never touched (veth pairs are made inside the hub namespace, bridge included).
Needs root and ``ip netns``; skipped, with the reason, where namespaces cannot be made.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, SPACES

SUBNET = "10.254.77"
HEAD_IP, WORKER1_IP, WORKER2_IP, ATTACKER_IP = f"{SUBNET}.1", f"{SUBNET}.11", f"{SUBNET}.12", f"{SUBNET}.66"
NS_PORT = 9090  # free by construction: the head namespace is new
RUN_ID = "multihost"
PREFIX = f"hpbandster.run_{RUN_ID}."
FORGED_LOSS = -12345.0
#: Seconds every synthetic epoch sleeps, so the run is still going while the attacker works.
SECONDS_PER_EPOCH = 0.5
ATTACK_VARIANTS = ("plain", "tls-no-client-cert", "tls-other-ca", "tls-other-ca-trusting-real-ca")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


@dataclass
class Network:
    """Namespaces (node name -> namespace name, address) and the processes started in them."""

    hub: str
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def command(self, node: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.nodes[node][0], *args]

    def env(self) -> dict:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}

    def start(self, node: str, args: list[str], log: Path) -> subprocess.Popen:
        """``python ARGS`` in ``node``'s namespace (``ip netns exec`` execs it: the pid is python's)."""
        with open(log, "w") as out:
            process = subprocess.Popen(self.command(node, sys.executable, *args), stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT),
                                       env=self.env())
        self.processes.append(process)
        return process

    def run(self, node: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(node, sys.executable, *args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=str(ROOT), env=self.env())


def _teardown(network: Network, namespaces: list[str]) -> None:
    for process in network.processes:
        if process.poll() is None:
            process.terminate()
    for process in network.processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    # Anything still inside these namespaces was started by this test (they are its own).
    for namespace in namespaces:
        pids = _ip("netns", "pids", namespace, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
    for namespace in reversed(namespaces):  # veth ends and the bridge vanish with their namespaces
        _ip("netns", "del", namespace, check=False)


@pytest.fixture
def network():
    """Hub namespace with a bridge; head, worker1, worker2 and attacker namespaces on it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("no 'ip' command (iproute2) to make network namespaces")
    base = f"hpo{os.getpid()}{secrets.token_hex(2)}"
    hub = f"{base}hub"
    made: list[str] = []
    network = Network(hub=hub)
    try:
        try:
            _ip("netns", "add", hub)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot make network namespaces: {str(exc).splitlines()[0]}")
        made.append(hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        try:
            _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        except RuntimeError as exc:
            pytest.skip(f"cannot make a bridge in a namespace: {str(exc).splitlines()[0]}")
        _ip("-n", hub, "link", "set", "br0", "up")
        for node, suffix, address in (("head", "h", HEAD_IP), ("worker1", "w1", WORKER1_IP),
                                      ("worker2", "w2", WORKER2_IP), ("attacker", "a", ATTACKER_IP)):
            namespace = f"{base}{suffix}"
            _ip("netns", "add", namespace)
            made.append(namespace)
            port = f"v{suffix}"
            # both ends are made in the hub namespace's view; the node's end lands in the node at once
            _ip("-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("-n", hub, "link", "set", port, "master", "br0")
            _ip("-n", hub, "link", "set", port, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            network.nodes[node] = (namespace, address)
        yield network
    finally:
        _teardown(network, made)


# Run in the head namespace with the deployment's certificates: the names registered for the run, as
# JSON, once the dispatcher and `want` workers are there (or at the deadline).
LIST_NAMES = r"""
import json, sys, time
import Pyro4
from hpo.transport import Transport, configure

tls, host, port, prefix = sys.argv[1:5]
want, timeout = int(sys.argv[5]), float(sys.argv[6])
configure(Transport(tls_dir=tls))
Pyro4.config.COMMTIMEOUT = 5.0
deadline = time.monotonic() + timeout
while True:
    names, error = None, None
    try:
        with Pyro4.Proxy(f"PYRO:Pyro.NameServer@{host}:{port}") as ns:
            names = ns.list(prefix=prefix)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    workers = [n for n in names or {} if n.startswith(prefix + "worker.")]
    ready = names is not None and prefix + "dispatcher" in names and len(workers) >= want
    if ready or time.monotonic() >= deadline:
        print(json.dumps({"names": names, "error": error}))
        break
    time.sleep(0.3)
"""

# Run in the attacker namespace: every attempt of one variant, one JSON line each.
ATTACK = r"""
import errno, json, socket, ssl, sys
import Pyro4, Pyro4.errors

variant, params = sys.argv[1], json.loads(sys.argv[2])
config = Pyro4.config
config.COMMTIMEOUT = 5.0
config.SERIALIZER = "serpent"
config.SSL = variant != "plain"
real, other = params["real"], params["other"]


def use(cert_dir, ca_dir):
    config.SSL_CLIENTCERT, config.SSL_CLIENTKEY = cert_dir + "/cert.pem", cert_dir + "/key.pem"
    config.SSL_CACERTS = ca_dir + "/ca.pem"


if variant == "tls-no-client-cert":               # trusts the real server, presents no certificate
    config.SSL_CACERTS = real + "/ca.pem"
elif variant == "tls-other-ca":                   # a certificate of another CA, trusting that CA
    use(other, other)
elif variant == "tls-other-ca-trusting-real-ca":  # the same certificate, the real (public) CA trusted
    use(other, real)
elif variant == "control":                        # the deployment's own certificate: must get through
    use(real, real)
elif variant != "plain":
    raise SystemExit(f"unknown variant {variant}")

nameserver = f"PYRO:Pyro.NameServer@{params['host']}:{params['port']}"
fake_name = params["prefix"] + "worker.attacker." + variant
forged = {"result": {"loss": params["forged_loss"], "info": {"worker": "attacker"}}, "exception": None}


def kind(exc):
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return "refused"
    if any(isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) for e in chain):
        return "unreachable"
    if any(isinstance(e, (socket.timeout, Pyro4.errors.TimeoutError)) for e in chain):
        return "timeout"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls"
    if any(isinstance(e, Pyro4.errors.ConnectionClosedError) for e in chain):
        return "closed"
    return "error"


def attempt(name, target, call):
    try:
        with Pyro4.Proxy(target) as proxy:
            value = call(proxy)
        outcome = {"ok": True, "value": repr(value)[:200]}
    except Exception as exc:
        outcome = {"ok": False, "kind": kind(exc), "error": f"{type(exc).__name__}: {exc}"[:300]}
    print(json.dumps({"variant": variant, "attempt": name, "target": target, **outcome}), flush=True)


if variant == "control":
    attempt("list", nameserver, lambda ns: sorted(ns.list(prefix=params["prefix"])))
    for uri in params["workers"]:
        attempt("is_busy", uri, lambda w: w.is_busy())
    raise SystemExit(0)

attempt("list", nameserver, lambda ns: ns.list())
attempt("register", nameserver, lambda ns: ns.register(fake_name, f"PYRO:evil@{params['self']}:9999"))
for uri in params["workers"]:
    attempt("is_busy", uri, lambda w: w.is_busy())
    attempt("start_computation", uri, lambda w: w.start_computation(
        Pyro4.Proxy(params["dispatcher"]), [0, 0, 0], config={"optimizer": "sgd"}, budget=1.0,
        working_directory=params["work_dir"], context={"job": "synthetic"}, ticket="forged"))
attempt("register_result", params["dispatcher"],
        lambda d: d.register_result([0, 0, 0], forged, "forged-ticket"))
"""


def _read_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _hpo_certs(directory: Path, *hosts: str) -> None:
    args = [sys.executable, "-m", "hpo", "certs", str(directory)]
    for host in hosts:
        args += ["--host", host]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=str(ROOT), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr


def _log_tail(*paths: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in paths if p.exists())


def test_tls_run_across_namespaces_finishes_and_every_attack_fails(network, tmp_path):
    real, other = tmp_path / "tls", tmp_path / "other-ca"
    _hpo_certs(real, HEAD_IP, WORKER1_IP, WORKER2_IP)
    _hpo_certs(other, ATTACKER_IP)
    space = tmp_path / "synthetic.yaml"  # the synthetic space, with jobs that take a little time
    space.write_text((SPACES / "synthetic.yaml").read_text() + f"  seconds_per_epoch: {SECONDS_PER_EPOCH}\n")
    work = tmp_path / "work"  # the workers' work root; the results directory lies under it
    work.mkdir()
    results = work / "run"
    logs = {name: tmp_path / f"{name}.log" for name in ("nameserver", "master", "worker1", "worker2")}
    nameserver_address = f"{HEAD_IP}:{NS_PORT}"
    hpo = ["-m", "hpo"]

    network.start("head", [*hpo, "nameserver", "--host", HEAD_IP, "--port", str(NS_PORT), "--tls", str(real)],
                  logs["nameserver"])
    master = network.start("head", [*hpo, "master", str(space), "--run-id", RUN_ID, "--nameserver", nameserver_address,
                                    "--host", HEAD_IP, "--results", str(results), "--min-workers", "2",
                                    "--iterations", "2", "--no-progress", "--ping-interval", "1",
                                    "--connect-timeout", "60", "--tls", str(real)], logs["master"])
    workers = [network.start(node, [*hpo, "worker", "--run-id", RUN_ID, "--nameserver", nameserver_address,
                                    "--host", network.nodes[node][1], "--work-dir", str(work),
                                    "--connect-timeout", "60", "--tls", str(real)], logs[node])
               for node in ("worker1", "worker2")]

    def names(want_workers: int, timeout: float) -> dict:
        proc = network.run("head", ["-c", LIST_NAMES, str(real), HEAD_IP, str(NS_PORT), PREFIX, str(want_workers),
                                    str(timeout)], timeout=timeout + 30)
        assert proc.returncode == 0, proc.stderr[-3000:] + _log_tail(*logs.values())
        listing = json.loads(proc.stdout.strip().splitlines()[-1])
        assert listing["names"] is not None, listing["error"] + _log_tail(*logs.values())
        return listing["names"]

    # The dispatcher and both workers registered (bounded wait): the run is under way.
    registered = names(want_workers=2, timeout=60)
    worker_uris = sorted(uri for name, uri in registered.items() if name.startswith(PREFIX + "worker."))
    assert PREFIX + "dispatcher" in registered and len(worker_uris) == 2, (registered, _log_tail(*logs.values()))
    assert all(f"@{ip}:" in " ".join(worker_uris) for ip in (WORKER1_IP, WORKER2_IP)), worker_uris
    params = {"real": str(real), "other": str(other), "host": HEAD_IP, "port": NS_PORT, "prefix": PREFIX,
              "workers": worker_uris, "dispatcher": registered[PREFIX + "dispatcher"], "self": ATTACKER_IP,
              "work_dir": str(results / "forged"), "forged_loss": FORGED_LOSS}

    def attack(variant: str) -> list[dict]:
        proc = network.run("attacker", ["-c", ATTACK, variant, json.dumps(params)], timeout=90)
        assert proc.returncode == 0, f"{variant}: {proc.stderr[-3000:]}"
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    # Control: from the attacker's namespace, the deployment's own certificate gets through, so the
    # failures below are the transport's refusals, not an unreachable or finished run.
    attack_started = time.monotonic()
    control = attack("control")
    assert len(control) == 3 and all(a["ok"] for a in control), control
    attempts = [a for variant in ATTACK_VARIANTS for a in attack(variant)]
    print(f"attacks took {time.monotonic() - attack_started:.1f} s")
    for a in control + attempts:  # shown when the test fails
        print(json.dumps(a))
    assert master.poll() is None, "the run ended before the attacker was done: " + _log_tail(logs["master"])
    assert len(attempts) == len(ATTACK_VARIANTS) * 7, attempts
    succeeded = [a for a in attempts if a["ok"]]
    assert not succeeded, succeeded
    # every attempt reached a live server and was turned away (not refused or unroutable)
    assert all(a["kind"] not in {"refused", "unreachable"} for a in attempts), attempts
    fakes = {f"{PREFIX}worker.attacker.{variant}" for variant in ATTACK_VARIANTS}  # as the attacker names them
    after_attack = names(want_workers=0, timeout=0)
    assert not fakes & set(after_attack), after_attack

    # The run finishes (bounded), with every job of both iterations from the two real workers.
    try:
        code = master.wait(timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail("the master did not finish within 150 s: " + _log_tail(*logs.values()))
    assert code == 0, _log_tail(*logs.values())
    lines = _read_lines(results / "results.json")
    assert len(lines) == 17, _log_tail(logs["master"])  # budgets 1, 3, 9, eta 3: iterations of 9+3+1 and 3+1 jobs
    for config_id, budget, stamps, result, exception in lines:
        assert exception is None, exception
        assert math.isfinite(result["loss"]) and result["loss"] != FORGED_LOSS, result["loss"]
    hostname = socket.gethostname()
    worker_names = {r[3]["info"]["worker"] for r in lines}  # <hostname>:<pid>:<random suffix>
    assert {name.rsplit(":", 1)[0] for name in worker_names} == {f"{hostname}:{w.pid}" for w in workers}
    assert len(worker_names) == 2
    for worker in workers:  # the master shut its workers down
        assert worker.wait(timeout=30) == 0, _log_tail(logs["worker1"], logs["worker2"])
    master_log = logs["master"].read_text()
    assert "does not come from the worker" not in master_log  # no forged result even reached the dispatcher
    assert not fakes & set(names(want_workers=0, timeout=0))
