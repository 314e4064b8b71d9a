"""The router's plan: the InferenceGraphs and VirtualServices of its spec files, checked as a whole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from serving.graph_spec import InferenceGraph, SpecError, VirtualService, parse_inference_graph, parse_virtual_service


@dataclass
class RoutingPlan:
    """What the router serves: the entry object (a VirtualService if any, else the first graph)."""

    graphs: dict[str, InferenceGraph] = field(default_factory=dict)
    virtual_services: list[VirtualService] = field(default_factory=list)

    @property
    def entry(self) -> InferenceGraph | VirtualService:
        if self.virtual_services:
            return self.virtual_services[0]
        return next(iter(self.graphs.values()))



def services_used(plan: RoutingPlan) -> dict[str, str]:
    """Every service name the plan calls → where it is used (for the --resolve check)."""
    used: dict[str, str] = {}
    for graph in plan.graphs.values():
        for node in graph.nodes.values():
            for step in node.steps:
                if step.service_name:
                    used.setdefault(
                        step.service_name,
                        f"InferenceGraph {graph.name!r} node {node.name!r} "
                        f"step {step.label} field serviceName",
                    )
    for vs in plan.virtual_services:
        for route in vs.routes:
            for d in route.destinations:
                used.setdefault(d.service, f"VirtualService {vs.name!r} http[{route.index}] destination.host")
            if route.mirror:
                used.setdefault(route.mirror, f"VirtualService {vs.name!r} http[{route.index}] mirror.host")
    return used


def check_resolved(plan: RoutingPlan, resolve: Mapping[str, str]) -> None:
    """Every serviceName/host must map to a --resolve URL or to a graph in the plan."""
    for service, where in services_used(plan).items():
        if service not in resolve and service not in plan.graphs:
            raise SpecError(f"{where} names {service!r}, which has no --resolve {service}=URL entry")
    for service, url in resolve.items():
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SpecError(f"--resolve {service}={url}: the URL must look like http://127.0.0.1:8081")


def load_plan(paths: Iterable[str | Path], resolve: Mapping[str, str]) -> RoutingPlan:
    """Parse every YAML document in `paths` and check the whole plan; raises SpecError on the first problem."""
    plan = RoutingPlan()
    for path in paths:
        try:
            documents = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read YAML: {exc}") from None
        for document in documents:
            kind = document.get("kind") if isinstance(document, Mapping) else None
            if kind == "InferenceGraph":
                graph = parse_inference_graph(document)
                plan.graphs[graph.name] = graph
            elif kind == "VirtualService":
                plan.virtual_services.append(parse_virtual_service(document))
            else:
                raise SpecError(f"{path}: kind {kind!r} is neither InferenceGraph nor VirtualService")
    if not plan.graphs and not plan.virtual_services:
        raise SpecError("no InferenceGraph or VirtualService found in the spec files")
    check_resolved(plan, resolve)
    return plan


def parse_resolve(entries: Iterable[str]) -> dict[str, str]:
    resolved = {}
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep or not name or not url:
            raise SpecError(f"--resolve {entry!r} must look like NAME=http://127.0.0.1:8081")
        resolved[name] = url.rstrip("/")
    return resolved
