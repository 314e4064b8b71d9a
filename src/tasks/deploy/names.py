"""How the model's KServe objects and their hosts are named, in the cluster and by the local router."""

from __future__ import annotations

import re

# deploy/kserve/values.yaml: hosts are "<isvc>-<namespace>.<domain>".
DEFAULT_DOMAIN = "sluice.example.com"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_name(name: str, what: str = "name") -> str:
    """Kubernetes object names used as DNS labels: lowercase alphanumerics and '-', max 63."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ValueError(f"invalid {what} {name!r}: must be a DNS label ([a-z0-9-], at most 63 chars)")
    return name


def isvc_name(model_name: str, role: str | None = None) -> str:
    """The InferenceService name of a model in a role ("champion" keeps the bare model name)."""
    base = model_name.lower().replace("_", "-")
    return check_name(base if role in (None, "", "champion") else f"{base}-{role}")


def predictor_host(isvc: str, namespace: str) -> str:
    """Cluster DNS name of an InferenceService's predictor Service in RawDeployment mode."""
    return f"{isvc}-predictor.{namespace}.svc.cluster.local"


def external_host(name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """External host in the cluster's KServe template `{{.Name}}-{{.Namespace}}.{{.IngressDomain}}`."""
    return f"{name}-{namespace}.{domain}"
