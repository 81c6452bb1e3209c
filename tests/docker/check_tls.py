"""Check that a running nameserver really speaks mutual TLS, for the Docker smoke test.

    python check_tls.py HOST:PORT --tls DIR [--owner UID]

Runs inside the master image (it needs hpo and Pyro4), on the host network, against 127.0.0.1.
Passes (exit 0) when

* a client with the deployment's certificates (``--tls DIR``) reaches the nameserver (so the
  refusals below are the TLS's doing, not a wrong address),
* a plain client (no TLS) is refused,
* a client with a certificate of another CA (made here, in a temporary directory) is refused,
* DIR is the service user's (``--owner``) with mode 0700, and key.pem has mode 0600.

Prints one line per check; on failure, what went wrong (exit 1). Every attempt is bounded
(Pyro4's COMMTIMEOUT), and the nameserver is only looked up, never changed.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile

import Pyro4
import Pyro4.errors

from hpo.certificates import make_deployment
from hpo.transport import Transport, configure

TIMEOUT = 10.0


def attempt(host: str, port: int, transport: Transport) -> str | None:
    """None when the nameserver answered a ping over ``transport``, else the error, in one line."""
    configure(transport)
    Pyro4.config.COMMTIMEOUT = TIMEOUT
    try:
        with Pyro4.locateNS(host, port) as ns:
            ns.ping()
        return None
    except Exception as exc:  # noqa: BLE001 -- any failure is a refusal here
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the nameserver")
    parser.add_argument("--tls", required=True, metavar="DIR", help="the deployment's certificates")
    parser.add_argument("--owner", type=int, help="uid that must own DIR and its files")
    args = parser.parse_args()
    host, _, port_text = args.address.rpartition(":")
    port = int(port_text)
    problems = []

    error = attempt(host, port, Transport(tls_dir=args.tls))
    print(f"  with the deployment's certificate: {'answered' if error is None else error}")
    if error is not None:
        problems.append(f"the nameserver did not answer a client with the deployment's certificate ({error})")

    error = attempt(host, port, Transport())
    print(f"  without TLS: {'ANSWERED' if error is None else 'refused (' + error + ')'}")
    if error is None:
        problems.append("a plain (non-TLS) client reached the nameserver")

    with tempfile.TemporaryDirectory() as scratch:
        foreign = os.path.join(scratch, "tls")
        make_deployment(foreign, ["localhost"])
        error = attempt(host, port, Transport(tls_dir=foreign))
    print(f"  with another CA's certificate: {'ANSWERED' if error is None else 'refused (' + error + ')'}")
    if error is None:
        problems.append("a client with a certificate of another CA reached the nameserver")

    info = os.stat(args.tls)
    key = os.stat(os.path.join(args.tls, "key.pem"))
    print(f"  {args.tls}: uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}; "
          f"key.pem: uid {key.st_uid}, mode {stat.S_IMODE(key.st_mode):o}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        problems.append(f"{args.tls} has mode {stat.S_IMODE(info.st_mode):o}, expected 700")
    if stat.S_IMODE(key.st_mode) != 0o600:
        problems.append(f"key.pem has mode {stat.S_IMODE(key.st_mode):o}, expected 600")
    if args.owner is not None and (info.st_uid, key.st_uid) != (args.owner, args.owner):
        problems.append(f"{args.tls} and key.pem are owned by {info.st_uid} and {key.st_uid}, expected {args.owner}")

    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
