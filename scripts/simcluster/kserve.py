"""KServe's controller manager (the Go binary scripts/build-cluster-tools.sh builds from
github.com/kserve/kserve at KSERVE_CONTROLLER_VERSION) run against the simulated cluster, in place of the
chart's kserve-controller-manager pod (which kwok only pretends to run): `./scripts/sim-cluster.sh kserve`.

The manager always starts controller-runtime's webhook server, and the binary has no flag for its
address: it listens on `:<webhook-port>`, every interface. So it runs in its own network namespace
(netns.py beside this file), where the only interface is a private loopback:

    host 127.0.0.1:<api port>      <- namespace 127.0.0.1:<api port>   (the manager's API calls)
    host 127.0.0.1:<webhook port>  -> namespace 127.0.0.1:9443         (the API server's admission calls)

The metrics and health listeners get fixed 127.0.0.1 ports inside the namespace, so nothing of the
manager's listens on the host at all; the host side of both relays is bound to 127.0.0.1.

KServe's own admission webhooks (the chart's, which the deploy scripts drop in the simulated cluster
because they point at a Service) are registered again with `url: https://127.0.0.1:<webhook port>/…`,
signed by the simulated cluster's own CA: the InferenceService defaulter and validator, the ServingRuntime and
InferenceGraph validators and the pod mutator, as on a real cluster.

This module builds the pieces (certificates, command line, webhook configurations, readiness from the
log); scripts/sim_cluster.py starts, registers and stops them.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
from pathlib import Path

from simcluster import pki

NETNS_SCRIPT = Path(__file__).resolve().with_name("netns.py")
# The service name in the simulated cluster's run folder (so its log is <run>/kserve-controller.log).
SERVICE = "kserve-controller"
# The namespace the chart installs KServe (and its inferenceservice-config ConfigMap) into.
KSERVE_NAMESPACE = "kserve"
CONFIG_MAP = "inferenceservice-config"
CRDS = ("inferenceservices.serving.kserve.io", "inferencegraphs.serving.kserve.io",
        "servingruntimes.serving.kserve.io")
# Inside the namespace, where nothing else listens.
INNER_WEBHOOK_PORT = 9443
INNER_METRICS = "127.0.0.1:8080"
INNER_HEALTH = "127.0.0.1:8081"
WEBHOOK_NAME = "sluice-sim-kserve"
FIELD_MANAGER = "sluice-sim"
WEBHOOK_KINDS = "mutatingwebhookconfiguration,validatingwebhookconfiguration"
# The manager is ready when these controllers log "Starting workers".
CONTROLLERS = frozenset({"inferenceservice", "inferencegraph"})
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


def cert_dir(tmpdir: Path) -> Path:
    """Where controller-runtime looks for its serving cert: $TMPDIR/k8s-webhook-server/serving-certs."""
    return tmpdir / "k8s-webhook-server" / "serving-certs"


def ensure_serving_cert(certs: Path, pki_dir: Path) -> bytes:
    """The serving cert for 127.0.0.1 where controller-runtime looks for it, issued by the simulated
    cluster's CA (simcluster.pki) and kept while valid; returns that CA (PEM) for the webhooks' caBundle."""
    pki.ensure_loopback_server_cert(pki_dir, certs / "tls.crt", certs / "tls.key", "kserve-webhook-server")
    return (pki_dir / "ca.crt").read_bytes()


def manager_args(binary: Path) -> list[str]:
    """The manager's own command line (every listener inside its namespace)."""
    return [
        str(binary),
        f"--webhook-port={INNER_WEBHOOK_PORT}",
        f"--metrics-addr={INNER_METRICS}",
        f"--health-probe-addr={INNER_HEALTH}",
        "--leader-elect=false",
        "--zap-encoder=json",
    ]


def command(binary: Path, webhook_port: int, api_port: int) -> list[str]:
    """The manager inside netns.py: the webhook relayed from the host's 127.0.0.1:<webhook_port>, the API
    server's 127.0.0.1:<api_port> relayed in."""
    return [sys.executable, str(NETNS_SCRIPT), "--front-port", str(webhook_port),
            "--inner-port", str(INNER_WEBHOOK_PORT), "--upstream", str(api_port), "--", *manager_args(binary)]


def manager_part(cmd: list[str]) -> list[str]:
    """The manager's command line out of the recorded service command (what follows netns.py's `--`)."""
    return cmd[cmd.index("--") + 1 :] if "--" in cmd else list(cmd)


def webhook_url(port: int) -> str:
    return f"https://127.0.0.1:{port}"


def webhook_configurations(port: int, ca_pem: bytes) -> list[dict]:
    """KServe's webhooks, each calling the manager at https://127.0.0.1:<port> (never a Service)."""
    bundle = base64.b64encode(ca_pem).decode()

    def hooks(table: dict) -> list[dict]:
        out = []
        for name, (path, group, resource, selector) in table.items():
            hook = {
                "name": name,
                "clientConfig": {"url": f"{webhook_url(port)}{path}", "caBundle": bundle},
                "rules": [{"apiGroups": [group], "apiVersions": ["*"], "resources": [resource],
                           "operations": ["CREATE", "UPDATE"] if group else ["CREATE"]}],
                "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1beta1"],
                "timeoutSeconds": 10,
            }
            if selector:
                hook["objectSelector"] = selector
            out.append(hook)
        return out

    meta = {"name": WEBHOOK_NAME, "labels": {"app.kubernetes.io/part-of": "sluice-sim-cluster",
                                             "app.kubernetes.io/managed-by": FIELD_MANAGER}}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": meta, "webhooks": hooks(MUTATING)},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": meta, "webhooks": hooks(VALIDATING)},
    ]


def log_entries(log: Path, *, current_run: bool = False) -> list[dict]:
    """The manager's JSON log lines (the relays' and the run header's plain text lines are skipped);
    with `current_run`, only those after the last `=== … starting:` header tasks.deploy.processes writes."""
    lines = (log.read_text(errors="replace") if log.exists() else "").splitlines()
    if current_run:
        starts = [i for i, line in enumerate(lines) if line.startswith("=== ") and " starting: " in line]
        lines = lines[starts[-1] + 1 :] if starts else lines
    entries = []
    for line in lines:
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def workers_started(log: Path) -> bool:
    """True once the InferenceService and InferenceGraph controllers of the current run start their workers."""
    started = {e.get("controller") for e in log_entries(log, current_run=True) if e.get("msg") == "Starting workers"}
    return CONTROLLERS <= started


def webhook_serves(port: int, ca_file: Path) -> bool:
    """True when a TLS handshake through the relay reaches the manager's webhook server with our cert."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except (OSError, ssl.SSLError):
        return False
