"""Certificates and kubeconfigs of the simulated cluster: one CA, the API server's serving cert, a client
cert per control-plane identity, and the service-account signing key.

Written with `cryptography` (already a dependency) rather than shelling out to openssl, so the files are
created the same way everywhere. Everything is created once and reused by later `up`s.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Inside the cluster the API server is also "kubernetes.default.svc" at the first service IP; those
# names go into its certificate like kubeadm does, though nothing here ever dials the service IP.
SERVICE_CIDR = "10.96.0.0/16"
FIRST_SERVICE_IP = "10.96.0.1"
VALIDITY = dt.timedelta(days=365)
# A serving cert this close to its end is issued anew by the next `up`/`kserve`.
RENEW_BEFORE = dt.timedelta(days=7)

# Client identities: file stem -> (common name, organisation). The controller-manager and scheduler use
# the identities Kubernetes' built-in RBAC grants them; the admin is in system:masters.
CLIENTS = {
    "admin": ("sluice-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
}


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _load_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]


def _create_ca(pki: Path) -> None:
    key = _key()
    name = _name("sluice-sim-cluster-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pki / "ca.key", key)
    (pki / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(pki: Path, subject: x509.Name, crt: Path, key_file: Path, *,
           dns: Sequence[str] = (), ips: Sequence[str] = ()) -> None:
    """A certificate signed by the cluster's CA: a server cert for `dns`/`ips` when given, else a client cert."""
    ca_cert, ca_key = _load_ca(pki)
    key = _key()
    builder = _builder(subject, ca_cert.subject, key.public_key()).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    if dns or ips:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_file.parent.mkdir(parents=True, exist_ok=True)
    _write_key(key_file, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _valid(crt: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE


def ensure_loopback_server_cert(pki: Path, crt: Path, key_file: Path, common_name: str) -> None:
    """A serving cert for 127.0.0.1 from the cluster's CA (so a caBundle is the CA's own ca.crt), kept
    while valid and signed by the current CA, else issued anew."""
    ca_cert, _ = _load_ca(pki)
    if _valid(crt) and key_file.exists() and x509.load_pem_x509_certificate(crt.read_bytes()).issuer == ca_cert.subject:
        return
    _issue(pki, _name(common_name), crt, key_file, ips=["127.0.0.1"])


def ensure_pki(pki: Path) -> None:
    """Create whatever of the CA, serving cert, client certs and service-account key is missing."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _create_ca(pki)
    if not (pki / "apiserver.crt").exists():
        _issue(pki, _name("kube-apiserver"), pki / "apiserver.crt", pki / "apiserver.key",
               dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local"],
               ips=["127.0.0.1", FIRST_SERVICE_IP])
    for stem, (common_name, org) in CLIENTS.items():
        if not (pki / f"{stem}.crt").exists():
            _issue(pki, _name(common_name, org), pki / f"{stem}.crt", pki / f"{stem}.key")
    if not (pki / "sa.key").exists():
        key = _key()
        _write_key(pki / "sa.key", key)
        (pki / "sa.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )


def write_kubeconfig(path: Path, pki: Path, stem: str, server: str) -> None:
    """A kubeconfig for client identity `stem` (file paths, so rotating nothing means nothing to re-embed)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "sluice-sim", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}
        ],
        "users": [{"name": stem, "user": {
            "client-certificate": str(pki / f"{stem}.crt"), "client-key": str(pki / f"{stem}.key")}}],
        "contexts": [{"name": "sluice-sim", "context": {"cluster": "sluice-sim", "user": stem}}],
        "current-context": "sluice-sim",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
