"""KServe's controller manager (the Go binary scripts/build-cluster-tools.sh builds from
github.com/kserve/kserve at KSERVE_CONTROLLER_VERSION) run against the simulated cluster.

The manager always starts controller-runtime's webhook server, and the binary has no flag for its
address: it listens on `:<webhook-port>`, every interface. So it runs in its own network namespace
(src/tests/serving/router_netns.py), where the only interface is a private loopback:

    host 127.0.0.1:<api port>      <- namespace 127.0.0.1:<api port>   (the manager's API calls)
    host 127.0.0.1:<webhook port>  -> namespace 127.0.0.1:9443         (the API server's admission calls)

The metrics and health listeners are given 127.0.0.1 ports inside the namespace, so nothing of the
manager's listens on the host at all; the host side of both relays is bound to 127.0.0.1. Inside the
namespace no address outside 127.0.0.0/8 is even routable.

KServe's own admission webhooks (the chart's, which the deploy scripts drop in the simulated cluster
because they point at a Service) are registered again with `url: https://127.0.0.1:<webhook port>/…`,
signed by a CA made here: the InferenceService defaulter and validator, the ServingRuntime and
InferenceGraph validators and the pod mutator, as on a real cluster.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.support.processes import REPO_ROOT, free_port, start_process, stop_process, wait_until

NETNS_SCRIPT = REPO_ROOT / "src" / "tests" / "serving" / "router_netns.py"
INNER_WEBHOOK_PORT = 9443
# The namespace the chart installs KServe (and its inferenceservice-config ConfigMap) into.
KSERVE_NAMESPACE = "kserve"
WEBHOOK_NAME = "sluice-test-kserve"
# KServe's chart (files/kserve/resources.yaml): webhook name -> (path, API group, resources, object selector).
MUTATING = {
    "inferenceservice.kserve-webhook-server.defaulter": (
        "/mutate-serving-kserve-io-v1beta1-inferenceservice", "serving.kserve.io", "inferenceservices", None),
    "inferenceservice.kserve-webhook-server.pod-mutator": (
        "/mutate-pods", "", "pods",
        {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}]}),
}
VALIDATING = {
    "inferenceservice.kserve-webhook-server.validator": (
        "/validate-serving-kserve-io-v1beta1-inferenceservice", "serving.kserve.io", "inferenceservices", None),
    "servingruntime.kserve-webhook-server.validator": (
        "/validate-serving-kserve-io-v1alpha1-servingruntime", "serving.kserve.io", "servingruntimes", None),
    "inferencegraph.kserve-webhook-server.validator": (
        "/validate-serving-kserve-io-v1alpha1-inferencegraph", "serving.kserve.io", "inferencegraphs", None),
}


def pinned(key: str) -> str:
    for line in (REPO_ROOT / "deploy" / "versions.env").read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    raise KeyError(f"deploy/versions.env has no {key}")


def manager_binary() -> Path:
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return cache / "bin" / f"kserve-{pinned('KSERVE_CONTROLLER_VERSION')}" / "manager"


def api_server_port(kubeconfig: str) -> int:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    assert server.hostname == "127.0.0.1", f"the cluster's API server must be on loopback, not {server.hostname}"
    return server.port or 443


def write_serving_cert(cert_dir: Path) -> bytes:
    """A CA and a serving cert for 127.0.0.1 where controller-runtime looks for them; returns the CA (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: str, key, signer, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("sluice-test-kserve-webhook-ca", "sluice-test-kserve-webhook-ca", ca_key, ca_key, ca=True)
    cert = build("127.0.0.1", "sluice-test-kserve-webhook-ca", key, ca_key, ca=False)
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (cert_dir / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (cert_dir / "tls.key").chmod(0o600)
    return ca.public_bytes(serialization.Encoding.PEM)


def webhook_configurations(port: int, ca_pem: bytes) -> list[dict]:
    """KServe's webhooks, each calling the manager at https://127.0.0.1:<port> (never a Service)."""
    bundle = base64.b64encode(ca_pem).decode()

    def hooks(table: dict) -> list[dict]:
        out = []
        for name, (path, group, resource, selector) in table.items():
            hook = {
                "name": name,
                "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle},
                "rules": [{"apiGroups": [group], "apiVersions": ["*"], "resources": [resource],
                           "operations": ["CREATE", "UPDATE"] if group else ["CREATE"]}],
                "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1beta1"],
                "timeoutSeconds": 10,
            }
            if selector:
                hook["objectSelector"] = selector
            out.append(hook)
        return out

    meta = {"name": WEBHOOK_NAME, "labels": {"app.kubernetes.io/part-of": "sluice-tests"}}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": meta, "webhooks": hooks(MUTATING)},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": meta, "webhooks": hooks(VALIDATING)},
    ]


@dataclass
class KServeController:
    proc: subprocess.Popen
    log: Path
    command: list[str]
    webhook_port: int


def log_entries(log: Path) -> list[dict]:
    """The manager's JSON log lines (the relay's own lines are plain text and skipped)."""
    entries = []
    for line in (log.read_text(errors="replace") if log.exists() else "").splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def _kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    result = subprocess.run(["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")


def _workers_started(log: Path) -> bool:
    started = {e.get("controller") for e in log_entries(log) if e.get("msg") == "Starting workers"}
    return {"inferenceservice", "inferencegraph"} <= started


@contextmanager
def running_controller(env: dict[str, str], workdir: Path) -> Iterator[KServeController]:
    """Start the manager with the cluster's admin kubeconfig (env["KUBECONFIG"]); stop it and remove its
    webhook registrations (first, so no API request waits on a stopped server) on exit."""
    binary = manager_binary()
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"{binary} is missing: build it with `bash scripts/build-cluster-tools.sh kserve`")
    tmp = workdir / "tmp"
    ca_pem = write_serving_cert(tmp / "k8s-webhook-server" / "serving-certs")
    webhook_port = free_port()
    manager = [
        str(binary),
        f"--webhook-port={INNER_WEBHOOK_PORT}",
        f"--metrics-addr=127.0.0.1:{free_port()}",
        f"--health-probe-addr=127.0.0.1:{free_port()}",
        "--leader-elect=false",
        "--zap-encoder=json",
    ]
    command = [sys.executable, str(NETNS_SCRIPT), "--front-port", str(webhook_port),
               "--inner-port", str(INNER_WEBHOOK_PORT), "--upstream", str(api_server_port(env["KUBECONFIG"])),
               "--", *manager]
    log = workdir / "kserve-manager.log"
    proc = start_process(command, log_path=log, env={
        **env, "POD_NAMESPACE": KSERVE_NAMESPACE, "TMPDIR": str(tmp),
    })
    registered = False
    try:
        wait_until(lambda: _workers_started(log), timeout=180, what="KServe controller manager", proc=proc,
                   log_path=log)
        manifest = {"apiVersion": "v1", "kind": "List", "items": webhook_configurations(webhook_port, ca_pem)}
        registered = True  # (a half-done apply is removed too)
        _kubectl(env, "apply", "--server-side", "--field-manager=sluice-tests", "-f", "-", stdin=json.dumps(manifest))
        yield KServeController(proc=proc, log=log, command=manager, webhook_port=webhook_port)
    finally:
        if registered:
            _kubectl(env, "delete", "mutatingwebhookconfiguration,validatingwebhookconfiguration", WEBHOOK_NAME,
                     "--ignore-not-found")
        stop_process(proc)
