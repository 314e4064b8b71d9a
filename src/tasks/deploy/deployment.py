"""The one result type of a deployment, on either target, and its plain-dict form for XCom."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Deployment:
    """What a deploy step started or applied, where it answers, and (once smoke-tested) what it predicted."""

    target: str  # "local" or "kubernetes"
    model_name: str
    # The name in `urls` that callers use, and the path below it (KServe's graph router serves
    # the graph on its root URL; a model server under /v2/models/<name>/infer).
    entry: str
    entry_path: str
    # The challenger's name in `urls`: the smoke test calls it directly, since mirroring hides its errors.
    challenger: str | None = None
    # role ("champion", "challenger") -> the registered version served in it (ResolvedVersion.to_dict()).
    versions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Local: the services started or kept (name, role, url, pid, started, ...).
    services: tuple[Mapping[str, Any], ...] = ()
    # Kubernetes: the namespace and every object to apply, in builder order.
    namespace: str = ""
    manifests: tuple[Mapping[str, Any], ...] = ()
    # Filled by the wait step: name -> base URL (in-cluster URLs on Kubernetes, loopback locally).
    urls: Mapping[str, str] = field(default_factory=dict)
    # Filled by the smoke test: name -> the checked output's values (one per sample row, or a row's class
    # probabilities one after the other).
    predictions: Mapping[str, list[float]] = field(default_factory=dict)
    # tasks.deploy.use_cases: which smoke request and output fit the served model.
    use_case: str = "wachttijden"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the DAG tasks hand each other through XCom)."""
        return dataclasses.asdict(self) | {
            "services": [dict(s) for s in self.services],
            "manifests": [dict(m) for m in self.manifests],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """The inverse of to_dict."""
        sequences = {"services": tuple(data.get("services", ())), "manifests": tuple(data.get("manifests", ()))}
        return cls(**{**data, **sequences})

    def replace(self, **changes: Any) -> Deployment:
        """A copy with some fields changed (the wait step adds urls, the smoke test predictions)."""
        return dataclasses.replace(self, **changes)
