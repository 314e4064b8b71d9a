"""A real Kubernetes control plane on this machine, with kwok simulating the nodes: up, status, kserve, down.

Run through ./scripts/sim-cluster.sh. etcd, kube-apiserver (RBAC + Node authorizers, serving certs,
service-account keys), kube-controller-manager, kube-scheduler and kwok run as detached processes
recorded by tasks.deploy.processes (the same bookkeeping as ./deploy-local.sh), all bound to 127.0.0.1
on ports picked once and kept in <state>/ports.json. State lives in .local/sim-cluster/ or
$SLUICE_SIM_DIR. The binaries come from `scripts/setup.sh cluster` (built from Go modules).

Network rule: only 127.0.0.0/8 is ever dialled. Node addresses are 127.0.0.1; pod and service IPs are
labels nobody connects to, which is why `deploy-*.sh` drop webhook and APIService registrations here.

`kserve` runs KServe's real controller manager (simcluster/kserve.py) in a loopback-only network
namespace, and registers its admission webhooks by https://127.0.0.1 URL; `kserve --stop` or `down`
ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from simcluster import kserve, objects, pki  # noqa: E402 - after the path setup above

from tasks.deploy import processes  # noqa: E402
from tasks.deploy.versions import read_versions  # noqa: E402

STATE = Path(os.environ.get("SLUICE_SIM_DIR", ROOT / ".local" / "sim-cluster")).resolve()
RUN_DIR = STATE / "run"
PKI = STATE / "pki"
KUBECONFIG = STATE / "admin.kubeconfig"
CACHE = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice"))
PORT_NAMES = ("etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok", "kserve_webhook")
# Start order; `down` stops in reverse (kwok and controllers before the API server, etcd last).
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# KServe's manager (`kserve`) stops before all of them.
KSERVE_ROLE = processes.Role(name=kserve.SERVICE, stop_order=-len(COMPONENTS))
KSERVE_DIR = STATE / "kserve"
POD_CIDR = "10.244.0.0/16"


def tool(component: str, binary: str) -> Path:
    """Path of a binary built by scripts/setup.sh cluster; exits with the command to run if it is missing."""
    version_key = {"kubernetes": "KUBERNETES_VERSION", "etcd": "ETCD_VERSION", "kwok": "KWOK_VERSION",
                   "helm": "HELM_VERSION", "kserve": "KSERVE_CONTROLLER_VERSION"}[component]
    path = CACHE / "bin" / f"{component}-{read_versions()[version_key]}" / binary
    if not os.access(path, os.X_OK):
        sys.exit(f"error: {path} is missing: build the cluster tools first with `scripts/setup.sh cluster`")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ports() -> dict[str, int]:
    """The ports of this cluster: chosen once, so a second `up` finds the same addresses."""
    path = STATE / "ports.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    for name in PORT_NAMES:
        known.setdefault(name, free_port())
    path.write_text(json.dumps(known, indent=2))
    return known


def api_url(port: dict[str, int]) -> str:
    return f"https://127.0.0.1:{port['apiserver']}"


def commands(port: dict[str, int]) -> dict[str, list[str]]:
    etcd_url = f"http://127.0.0.1:{port['etcd']}"
    peer_url = f"http://127.0.0.1:{port['etcd_peer']}"
    kubeconfig = {stem: str(STATE / f"{stem}.kubeconfig") for stem in pki.CLIENTS}
    control_plane_auth = [  # controllers check their callers against the API server, not in-cluster config
        "--bind-address=127.0.0.1", "--leader-elect=false",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
    ]
    return {
        "etcd": [
            str(tool("etcd", "etcd")), "--name=sim", f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=sim={peer_url}", "--unsafe-no-fsync=true", "--log-level=warn",
        ],
        "kube-apiserver": [
            str(tool("kubernetes", "kube-apiserver")), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port['apiserver']}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}", f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--client-ca-file={PKI / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={PKI / 'sa.pub'}", f"--service-account-signing-key-file={PKI / 'sa.key'}",
            f"--service-cluster-ip-range={pki.SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true", "--profiling=false",
            # The "kubernetes" Service's endpoint would be 127.0.0.1, which Endpoints reject; nothing
            # in the simulated cluster dials it anyway.
            "--endpoint-reconciler-type=none",
        ],
        "kube-controller-manager": [
            str(tool("kubernetes", "kube-controller-manager")), *control_plane_auth,
            f"--kubeconfig={kubeconfig['controller-manager']}",
            f"--authentication-kubeconfig={kubeconfig['controller-manager']}",
            f"--authorization-kubeconfig={kubeconfig['controller-manager']}",
            f"--secure-port={port['controller_manager']}", f"--root-ca-file={PKI / 'ca.crt'}",
            f"--service-account-private-key-file={PKI / 'sa.key'}", "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={PKI / 'ca.crt'}", f"--cluster-signing-key-file={PKI / 'ca.key'}",
            f"--cert-dir={STATE / 'controller-manager-certs'}",
        ],
        "kube-scheduler": [
            str(tool("kubernetes", "kube-scheduler")), *control_plane_auth,
            f"--kubeconfig={kubeconfig['scheduler']}", f"--authentication-kubeconfig={kubeconfig['scheduler']}",
            f"--authorization-kubeconfig={kubeconfig['scheduler']}", f"--secure-port={port['scheduler']}",
            f"--cert-dir={STATE / 'scheduler-certs'}",
        ],
        "kwok": [
            str(tool("kwok", "kwok")), f"--kubeconfig={KUBECONFIG}", "--manage-all-nodes=true",
            f"--config={STATE / 'kwok-stages.yaml'}", "--node-ip=127.0.0.1", f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{port['kwok']}", "--node-lease-duration-seconds=40",
        ],
    }


def health_url(name: str, port: dict[str, int]) -> str:
    return {
        "etcd": f"http://127.0.0.1:{port['etcd']}/health",
        "kube-apiserver": f"{api_url(port)}/readyz",
        "kube-controller-manager": f"https://127.0.0.1:{port['controller_manager']}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{port['scheduler']}/healthz",
        "kwok": f"http://127.0.0.1:{port['kwok']}/healthz",
    }[name]


def _status(url: str) -> int | None:
    if url.startswith("https://"):
        # The API server's cert is ours (verify it); the controllers serve self-signed loopback certs.
        context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
        if "/readyz" not in url:
            context = ssl._create_unverified_context()  # noqa: S323 - loopback health check only
    else:
        context = None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_healthy(service: processes.Service, url: str, timeout: float = 120) -> None:
    try:
        processes.wait_for(service, lambda: _status(url) == 200, timeout=timeout, what=f"healthy at {url}",
                           poll_interval=0.3)
    except (processes.ServiceExited, TimeoutError) as exc:
        sys.exit(f"error: {exc}")


def write_stages() -> None:
    stages_dir = tool("kwok", "kwok").parent / "stages"
    docs = [p.read_text() for p in sorted(stages_dir.glob("*.yaml")) if "kind: Stage" in p.read_text()]
    docs.append(objects.LOAD_BALANCER_STAGE)
    (STATE / "kwok-stages.yaml").write_text("\n---\n".join(doc.strip() for doc in docs) + "\n")


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(  # noqa: S603 - our own arguments
        [str(tool("kubernetes", "kubectl")), f"--kubeconfig={KUBECONFIG}", *args],
        input=stdin, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        if not check:
            return ""
        sys.exit(f"error: kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def ensure_objects() -> None:
    """Nodes, their capacity (status, so patched) and the default StorageClass: server-side applied, idempotent."""
    items = [*objects.nodes(), objects.storage_class(), objects.marker()]
    manifest = {"apiVersion": "v1", "kind": "List", "items": items}
    kubectl("apply", "--server-side", "--field-manager=sluice-sim", "-f", "-", stdin=json.dumps(manifest))
    for node in objects.nodes():
        name = node["metadata"]["name"]
        capacity = objects.node_capacity(name)
        patch = {"status": {"capacity": capacity, "allocatable": capacity}}
        kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")


def up() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    port = ports()
    pki.ensure_pki(PKI)
    for stem in pki.CLIENTS:
        pki.write_kubeconfig(STATE / f"{stem}.kubeconfig", PKI, stem, api_url(port))
    write_stages()
    cmds = commands(port)
    for order, name in enumerate(COMPONENTS):
        key = {"kube-apiserver": "apiserver", "kube-controller-manager": "controller_manager",
               "kube-scheduler": "scheduler"}.get(name, name)
        service, started = processes.ensure(
            RUN_DIR, name, cmds[name], port=port[key],
            role=processes.Role(name=name, stop_order=-order, scheme=health_url(name, port).split(":")[0]),
        )
        wait_healthy(service, health_url(name, port))
        print(f"{name:24} {'started' if started else 'already running'} (pid {service.pid})", file=sys.stderr)
    ensure_objects()
    print(f"# simulated cluster up: {api_url(port)}  (state in {STATE})", file=sys.stderr)
    print_env()
    return 0


def print_env() -> None:
    bins = [tool("kubernetes", "kubectl").parent, tool("helm", "helm").parent]
    print(f"export KUBECONFIG={KUBECONFIG}")
    print(f"export PATH={':'.join(map(str, bins))}:$PATH")
    # Upstream charts collected from their Go modules (deploy-*.sh take them instead of the repositories).
    print(f"export SLUICE_CHARTS_DIR={CACHE / 'charts'}")


def status() -> int:
    states = processes.status(RUN_DIR) if RUN_DIR.exists() else []
    if not states:
        print("simulated cluster: nothing is running")
        return 0
    for state in states:
        print(state.describe())
    if all(s.running for s in states) and KUBECONFIG.exists():
        print(kubectl("get", "nodes", "-o", "wide").rstrip())
    return 0


def kserve_up(timeout: float = 300) -> int:
    """Start (or keep) KServe's manager, wait until its controllers work, register its webhooks."""
    if processes.running(RUN_DIR, "kube-apiserver") is None:
        sys.exit("error: the simulated cluster is not running: run ./scripts/sim-cluster.sh up first")
    missing = [f"CRD {crd}" for crd in kserve.CRDS if not kubectl("get", "crd", crd, "-o", "name", check=False)]
    if not kubectl("get", "configmap", kserve.CONFIG_MAP, "-n", kserve.KSERVE_NAMESPACE, "-o", "name", check=False):
        missing.append(f"ConfigMap {kserve.KSERVE_NAMESPACE}/{kserve.CONFIG_MAP}")
    if missing:
        sys.exit(f"error: KServe is not installed in the simulated cluster ({', '.join(missing)} missing): "
                 "run ./deploy-kserve.sh first (or ./deploy-cluster.sh)")
    port = ports()
    webhook_port = port["kserve_webhook"]
    ca_file = PKI / "ca.crt"
    tmpdir = KSERVE_DIR / "tmp"  # the manager's TMPDIR: controller-runtime finds its serving cert there
    ca_pem = kserve.ensure_serving_cert(kserve.cert_dir(tmpdir), PKI)
    cmd = kserve.command(tool("kserve", "manager"), webhook_port, port["apiserver"])
    if processes.running(RUN_DIR, kserve.SERVICE) is None and processes.port_in_use(webhook_port):
        sys.exit(f"error: port {webhook_port} on 127.0.0.1 (kserve_webhook in {STATE / 'ports.json'}) is taken "
                 "by another process; stop it or pick another port there")
    env = {"POD_NAMESPACE": kserve.KSERVE_NAMESPACE, "TMPDIR": str(tmpdir), "KUBECONFIG": str(KUBECONFIG)}
    service, started = processes.ensure(RUN_DIR, kserve.SERVICE, cmd, env=env, role=KSERVE_ROLE,
                                        meta={"webhooks": kserve.webhook_url(webhook_port)})
    log = Path(service.log)
    try:
        processes.wait_for(
            service, lambda: kserve.workers_started(log) and kserve.webhook_serves(webhook_port, ca_file),
            timeout=timeout, what="running its controllers and webhook server",
        )
    except (processes.ServiceExited, TimeoutError) as exc:
        sys.exit(f"error: {exc}")
    manifest = {"apiVersion": "v1", "kind": "List", "items": kserve.webhook_configurations(webhook_port, ca_pem)}
    kubectl("apply", "--server-side", f"--field-manager={kserve.FIELD_MANAGER}", "-f", "-", stdin=json.dumps(manifest))
    print(f"{service.name:24} {'started' if started else 'already running'} (pid {service.pid}, log {log})",
          file=sys.stderr)
    print(f"# KServe's webhooks registered at {kserve.webhook_url(webhook_port)} "
          f"({kserve.WEBHOOK_KINDS.replace(',', ' and ')} {kserve.WEBHOOK_NAME}); "
          "stop with ./scripts/sim-cluster.sh kserve --stop", file=sys.stderr)
    return 0


def unregister_webhooks(*, check: bool = True) -> bool:
    """Delete KServe's webhook registrations (before stopping the manager, so no API request waits on a
    stopped server); False when the API server is not running."""
    if processes.running(RUN_DIR, "kube-apiserver") is None:
        return False
    kubectl("delete", kserve.WEBHOOK_KINDS, kserve.WEBHOOK_NAME, "--ignore-not-found", "--request-timeout=20s",
            check=check)
    return True


def kserve_stop() -> int:
    removed = unregister_webhooks()
    stopped = processes.stop(RUN_DIR, kserve.SERVICE) if RUN_DIR.exists() else False
    hooks = "webhook registrations removed" if removed else "API server not running, webhooks left as they are"
    print(f"{kserve.SERVICE}: {'stopped' if stopped else 'was not running'}; {hooks}")
    return 0


def down(purge: bool) -> int:
    if processes.running(RUN_DIR, kserve.SERVICE) is not None:
        # Else they would outlive it in etcd and refuse every InferenceService after the next `up`.
        unregister_webhooks(check=False)
    stopped = processes.stop_all(RUN_DIR) if RUN_DIR.exists() else []
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    if purge and STATE.exists():
        # Certificates and etcd data go too: the next `up` builds a new, empty cluster.
        with tempfile.TemporaryDirectory(dir=STATE.parent) as trash:
            STATE.rename(Path(trash) / "old")
        print(f"removed {STATE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sim-cluster.sh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start (or converge) the control plane and nodes; prints the env to use")
    sub.add_parser("status", help="what runs")
    sub.add_parser("env", help="print the export lines for KUBECONFIG and PATH")
    kserve_parser = sub.add_parser("kserve", help="run KServe's controller manager and register its webhooks")
    kserve_parser.add_argument("--stop", action="store_true", help="remove its webhook registrations and stop it")
    down_parser = sub.add_parser("down", help="stop every process `up` started, by PID")
    down_parser.add_argument("--purge", action="store_true", help="also delete certificates and etcd data")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up()
    if args.command == "status":
        return status()
    if args.command == "env":
        print_env()
        return 0
    if args.command == "kserve":
        return kserve_stop() if args.stop else kserve_up()
    return down(args.purge)


if __name__ == "__main__":
    sys.exit(main())
