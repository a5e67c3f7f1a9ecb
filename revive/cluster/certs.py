"""Mutual TLS for a cluster: ``revive cluster certs DIR`` makes a small CA
and one certificate for each role (scheduler, worker, client), each PEM file
holding its certificate and key. Dask checks that the peer's certificate is
signed by the CA on every connection, both ways (``Security`` with
``require_encryption``): whoever lacks a certificate of this CA can neither
submit a task nor join as a worker. The CA's key is not kept: a new member
gets a copy of its role's file, a new CA means new files everywhere."""

import datetime
import os
from pathlib import Path

from ..core.errors import UserError

ROLES = ("scheduler", "worker", "client")
CA = "ca.pem"
DAYS = 3650


def role_file(folder: Path, role: str) -> Path:
    return Path(folder) / f"{role}.pem"


def make(folder: Path) -> "list[Path]":
    """Write DIR/ca.pem and DIR/{scheduler,worker,client}.pem (mode 0600);
    refuses a folder that already holds any of them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    folder = Path(folder)
    targets = [folder / CA, *(role_file(folder, r) for r in ROLES)]
    there = [str(p) for p in targets if p.exists()]
    if there:
        raise UserError(f"cluster certs: {', '.join(there)} already exist; remove them or "
                        "name another folder (new certificates mean copying them to every "
                        "host again)")
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    life = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=DAYS))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "revive cluster"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"revive cluster CA {os.urandom(4).hex()}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(life[0]).not_valid_after(life[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write(folder / CA, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(f"revive {role}"))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(life[0]).not_valid_after(life[1])
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                # Dask does not check host names (its peers are addresses);
                # the CA is what admits a peer.
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"revive-{role}")]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        _write(role_file(folder, role), pem, 0o600)
    return targets


def scheduler_flags(folder: Path) -> "list[str]":
    """`dask scheduler`'s options for this cluster's certificates."""
    folder = Path(folder)
    return ["--tls-ca-file", str(folder / CA), "--tls-cert", str(role_file(folder, "scheduler")),
            "--tls-key", str(role_file(folder, "scheduler"))]


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def security(folder: Path, role: str, what: str):
    """Dask's ``Security`` for ``role`` from DIR/ca.pem and DIR/ROLE.pem;
    ``what`` names the setting in the one-line error."""
    from distributed.security import Security
    folder = Path(folder)
    ca, mine = folder / CA, role_file(folder, role)
    for path in (ca, mine):
        if not path.is_file():
            raise UserError(f"{what}: {path} does not exist; make the cluster's "
                            "certificates with `revive cluster certs DIR` and copy "
                            f"{CA} and {role}.pem here")
        if not os.access(path, os.R_OK):
            raise UserError(f"{what}: {path} is not readable by this user")
    return Security(require_encryption=True, tls_ca_file=str(ca),
                    **{f"tls_{role}_cert": str(mine), f"tls_{role}_key": str(mine)})
