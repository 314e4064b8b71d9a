"""Drop what a simulated cluster must never register: webhooks and APIServices that point at Services.

In the simulated cluster (scripts/sim-cluster.sh) kwok only pretends pods run, and ClusterIPs and pod
IPs are labels: an admission webhook, a CRD conversion webhook or an aggregated APIService backed by a
Service would make the API server dial an address outside 127.0.0.0/8 (forbidden on these machines),
and fail every write it guards because no server answers. Registrations that use a URL on 127.0.0.1
(webhook servers run as local processes) are kept.

Used as a Helm post-renderer (deploy/helm-plugins/sluice-sim-filter) and by deploy/lib/common.sh for
kubectl-applied manifests when the target is the simulated cluster. Reads YAML on stdin, writes YAML.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import yaml

def _points_at_service(client_config: dict | None) -> bool:
    return bool(client_config) and "service" in client_config


def keep(doc: dict) -> dict | None:
    """The object to apply (possibly changed), or None to drop it."""
    kind = doc.get("kind")
    if kind in {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}:
        webhooks = doc.get("webhooks") or []
        if any(_points_at_service(w.get("clientConfig")) for w in webhooks):
            return None
    if kind == "APIService" and (doc.get("spec") or {}).get("service"):
        return None
    if kind == "CustomResourceDefinition":
        conversion = (doc.get("spec") or {}).get("conversion") or {}
        webhook = conversion.get("webhook") or {}
        if conversion.get("strategy") == "Webhook" and _points_at_service(webhook.get("clientConfig")):
            # Serve the stored version as is: with one served version nothing needs converting.
            doc["spec"]["conversion"] = {"strategy": "None"}
    return doc


def filter_documents(docs: Iterable[dict | None]) -> list[dict]:
    kept = []
    for doc in docs:
        if not doc:
            continue
        if doc.get("kind", "").endswith("List") and "items" in doc:
            doc = {**doc, "items": filter_documents(doc["items"])}
            kept.append(doc)
            continue
        result = keep(doc)
        if result is not None:
            kept.append(result)
    return kept


def main() -> int:
    docs = filter_documents(yaml.safe_load_all(sys.stdin))
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
