"""Certificates for mutual TLS between hpo processes: a deployment CA and the certificates it signs.

A TLS directory (what ``--tls DIR`` reads) holds three files:

* ``ca.pem``: the deployment's CA certificate; a peer is trusted exactly when the CA signed it;
* ``cert.pem`` and ``key.pem``: this host's certificate (for serving and for connecting: every
  hpo process is both a server and a client) and its private key (mode 0600).

``hpo certs DIR --host ...`` makes a CA (``ca.pem`` and ``ca.key``, the key that signs; keep it
off worker hosts) and a certificate for the listed hosts. ``--ca DIR`` signs with an existing CA
instead, to add a host later. Keys are elliptic-curve (P-256): fast to make, small, and accepted
by every TLS stack Python links against.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from pathlib import Path
from typing import Iterable, Optional, Sequence

from hpo.errors import UserError

CA_CERT, CA_KEY = "ca.pem", "ca.key"
CERT, KEY = "cert.pem", "key.pem"
#: The files a process needs: what ``--tls DIR`` reads.
TLS_FILES = (CA_CERT, CERT, KEY)
#: Always in a certificate's names, so processes of one host reach each other on loopback too.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _crypto():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return x509, hashes, serialization, ec


def _subject_names(hosts: Iterable[str]) -> list:
    x509 = _crypto()[0]
    names, seen = [], set()
    for host in [*hosts, *LOOPBACK_NAMES]:
        host = host.strip().strip("[]")
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (0600 from the start, not chmod'ed later)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_bytes(key) -> bytes:
    _, _, serialization, _ = _crypto()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_bytes(cert) -> bytes:
    return cert.public_bytes(_crypto()[2].Encoding.PEM)


def _builder(subject, issuer, public_key, days: int):
    x509 = _crypto()[0]
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def make_ca(directory: Path, name: str = "hpo deployment CA", days: int = 3650) -> None:
    """Write ``ca.pem`` and ``ca.key`` (0600) into ``directory``."""
    x509, hashes, _, ec = _crypto()
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (_builder(subject, subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(directory / CA_KEY, _key_bytes(key))
    (directory / CA_CERT).write_bytes(_cert_bytes(cert))


def make_host_certificate(directory: Path, ca_directory: Path, hosts: Sequence[str], days: int = 825) -> None:
    """Write ``cert.pem`` and ``key.pem`` (0600), signed by the CA in ``ca_directory``, for ``hosts``
    (names or IP addresses, as subject alternative names; loopback names are always added)."""
    x509, hashes, serialization, ec = _crypto()
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((ca_directory / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_directory / CA_KEY).read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = (list(hosts) or ["localhost"])[0][:64]
    cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), ca_cert.subject,
                     key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(directory / KEY, _key_bytes(key))
    (directory / CERT).write_bytes(_cert_bytes(cert))


def make_deployment(directory: str | os.PathLike, hosts: Sequence[str], ca_directory: Optional[str] = None,
                    days: int = 825, if_missing: bool = False) -> bool:
    """Make a TLS directory for ``hosts``: a new CA (or the one in ``ca_directory``) and a certificate.

    Refuses a directory that already holds certificates (nothing is overwritten); with ``if_missing``
    such a directory is left as it is and False returned. True when certificates were written."""
    target = Path(directory)
    existing = [name for name in (*TLS_FILES, CA_KEY) if (target / name).exists()]
    if existing:
        if if_missing and all((target / name).is_file() for name in TLS_FILES):
            return False
        raise UserError(f"{target}: already holds certificates ({', '.join(existing)}); "
                        "choose another directory (nothing was overwritten)")
    if ca_directory is not None:
        ca = Path(ca_directory)
        missing = [name for name in (CA_CERT, CA_KEY) if not (ca / name).is_file()]
        if missing:
            raise UserError(f"--ca {ca}: missing {', '.join(missing)} (a directory made by 'hpo certs')")
    try:
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        if ca_directory is None:
            make_ca(target)
            ca = target
        else:
            shutil.copyfile(ca / CA_CERT, target / CA_CERT)
        make_host_certificate(target, ca, hosts, days=days)
    except OSError as exc:
        raise UserError(f"{target}: cannot write certificates ({exc.strerror or exc})") from None
    return True


def certificate_summary(directory: str | os.PathLike) -> str:
    """One line: the subject alternative names of ``DIR/cert.pem`` and its expiry."""
    x509 = _crypto()[0]
    cert = x509.load_pem_x509_certificate((Path(directory) / CERT).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    shown = [str(n.value) for n in names]
    return f"for {', '.join(shown)}; valid until {cert.not_valid_after_utc:%Y-%m-%d}"
