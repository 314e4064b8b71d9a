"""Read KServe InferenceGraph and Istio VirtualService manifests into checked routing plans for the local router."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serving.gjson_subset import Condition, ConditionError, parse_condition

ROUTER_TYPES = ("Sequence", "Switch", "Ensemble", "Splitter")
DEPENDENCIES = ("Hard", "Soft")
ROOT = "root"


class SpecError(ValueError):
    """A manifest the router cannot run; the message names the object, node/route and field."""


@dataclass(frozen=True)
class Step:
    index: int
    name: str | None
    service_name: str | None
    service_url: str | None
    node_name: str | None
    data: str | None
    condition: Condition | None
    weight: int | None
    dependency: str | None  # None: unset, which KServe treats like Soft
    map_predictions_to_instances: bool = False

    @property
    def label(self) -> str:
        return self.name or str(self.index)

    @property
    def hard(self) -> bool:
        return self.dependency == "Hard"

    @property
    def target(self) -> str:
        return self.node_name or self.service_name or self.service_url or "?"


@dataclass(frozen=True)
class Node:
    name: str
    router_type: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class InferenceGraph:
    name: str
    nodes: Mapping[str, Node]
    service_client_timeout_s: float | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightedDestination:
    service: str
    weight: int


@dataclass(frozen=True)
class HttpRoute:
    index: int
    matches: tuple[Mapping[str, str], ...]  # each {"prefix"|"exact"|"regex": value}; empty = all paths
    destinations: tuple[WeightedDestination, ...]
    mirror: str | None
    mirror_percentage: float
    timeout_s: float | None

    def matches_path(self, path: str) -> bool:
        if not self.matches:
            return True
        for match in self.matches:
            kind, value = next(iter(match.items()))
            if (
                (kind == "prefix" and path.startswith(value))
                or (kind == "exact" and path == value)
                or (kind == "regex" and re.fullmatch(value, path))
            ):
                return True
        return False


@dataclass(frozen=True)
class VirtualService:
    name: str
    routes: tuple[HttpRoute, ...]


def service_key(host: str) -> str:
    """Istio destination host → the name used with --resolve: its first DNS label."""
    return host.split(".", 1)[0]


def _where(kind: str, name: str, detail: str) -> str:
    return f"{kind} {name!r}: {detail}"


def _parse_step(graph: str, node: str, index: int, raw: Any) -> Step:
    where = f"node {node!r} step {index}"
    if not isinstance(raw, Mapping):
        raise SpecError(_where("InferenceGraph", graph, f"{where} must be a mapping"))
    targets = [key for key in ("serviceName", "serviceUrl", "nodeName") if raw.get(key)]
    if len(targets) != 1:
        found = ", ".join(targets) if targets else "none"
        raise SpecError(
            _where(
                "InferenceGraph",
                graph,
                f"{where} needs exactly one of serviceName, serviceUrl, nodeName (found {found})",
            )
        )
    dependency = raw.get("dependency")
    if dependency is not None and dependency not in DEPENDENCIES:
        raise SpecError(
            _where("InferenceGraph", graph, f"{where} field dependency is {dependency!r}; use Hard or Soft")
        )
    data = raw.get("data")
    if data is not None and data not in ("$request", "$response"):
        raise SpecError(
            _where("InferenceGraph", graph, f"{where} field data is {data!r}; use $request or $response")
        )
    condition = None
    if raw.get("condition") is not None:
        try:
            condition = parse_condition(raw["condition"])
        except ConditionError as exc:
            raise SpecError(_where("InferenceGraph", graph, f"{where} field condition: {exc}")) from None
    weight = raw.get("weight")
    if weight is not None and (
        not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100
    ):
        raise SpecError(
            _where("InferenceGraph", graph, f"{where} field weight must be an integer 0-100, got {weight!r}")
        )
    return Step(
        index=index,
        name=raw.get("name"),
        service_name=raw.get("serviceName"),
        service_url=raw.get("serviceUrl"),
        node_name=raw.get("nodeName"),
        data=data,
        condition=condition,
        weight=weight,
        dependency=dependency,
        map_predictions_to_instances=bool(raw.get("mapPredictionsToInstances", False)),
    )


def _check_node(graph: str, node: Node) -> list[str]:
    where = f"node {node.name!r}"
    warnings: list[str] = []
    if not node.steps:
        raise SpecError(_where("InferenceGraph", graph, f"{where} field steps is empty"))
    names = [s.name for s in node.steps if s.name]
    if len(names) != len(set(names)):
        raise SpecError(_where("InferenceGraph", graph, f"{where} has duplicate step names {sorted(names)}"))
    if node.router_type == "Splitter":
        missing = [s.label for s in node.steps if s.weight is None]
        if missing:
            raise SpecError(
                _where("InferenceGraph", graph, f"{where} (Splitter) steps {missing} have no weight")
            )
        total = sum(s.weight for s in node.steps)
        if total != 100:
            raise SpecError(
                _where("InferenceGraph", graph, f"{where} (Splitter) weights sum to {total}, not 100")
            )
    if node.router_type == "Switch":
        missing = [s.label for s in node.steps if s.condition is None]
        if missing:
            raise SpecError(
                _where("InferenceGraph", graph, f"{where} (Switch) steps {missing} have no condition")
            )
    if node.router_type == "Sequence":
        if node.steps[0].condition is not None:
            raise SpecError(
                _where(
                    "InferenceGraph",
                    graph,
                    f"{where} step {node.steps[0].label} field condition: the first step "
                    "of a Sequence has no previous response to test (KServe answers 500 for every request)",
                )
            )
        unset = [s.label for s in node.steps if s.dependency is None]
        if len(node.steps) > 1 and unset:
            warnings.append(
                f"InferenceGraph {graph!r} node {node.name!r}: steps {unset} have no dependency; like KServe, the "
                "router then continues past their error statuses (Soft; a step that does not answer at all still "
                "fails the request with 500). Set dependency: Hard where an error status must fail the request."
            )
    return warnings


def _find_cycle(nodes: Mapping[str, Node]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, trail: list[str]) -> list[str] | None:
        state[name] = 1
        for step in nodes[name].steps:
            if step.node_name is None:
                continue
            if state.get(step.node_name) == 1:
                return [*trail, name, step.node_name]
            if step.node_name not in state:
                found = visit(step.node_name, [*trail, name])
                if found:
                    return found
        state[name] = 2
        return None

    for name in nodes:
        if name not in state:
            found = visit(name, [])
            if found:
                return found
    return None


def parse_inference_graph(manifest: Mapping[str, Any]) -> InferenceGraph:
    name = (manifest.get("metadata") or {}).get("name") or "inference-graph"
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("nodes"), Mapping) or not spec["nodes"]:
        raise SpecError(_where("InferenceGraph", name, "spec.nodes is missing or empty"))
    nodes: dict[str, Node] = {}
    warnings: list[str] = []
    for node_name, raw in spec["nodes"].items():
        if not isinstance(raw, Mapping):
            raise SpecError(_where("InferenceGraph", name, f"node {node_name!r} must be a mapping"))
        router_type = raw.get("routerType")
        if router_type not in ROUTER_TYPES:
            raise SpecError(
                _where(
                    "InferenceGraph",
                    name,
                    f"node {node_name!r} field routerType is {router_type!r}; "
                    f"use one of {', '.join(ROUTER_TYPES)}",
                )
            )
        raw_steps = raw.get("steps")
        if not isinstance(raw_steps, list):
            raise SpecError(_where("InferenceGraph", name, f"node {node_name!r} field steps must be a list"))
        node = Node(
            node_name, router_type, tuple(_parse_step(name, node_name, i, s) for i, s in enumerate(raw_steps))
        )
        warnings += _check_node(name, node)
        nodes[node_name] = node
    if ROOT not in nodes:
        raise SpecError(
            _where("InferenceGraph", name, f"has no node named {ROOT!r} (found: {', '.join(nodes)})")
        )
    for node in nodes.values():
        for step in node.steps:
            if step.node_name is not None and step.node_name not in nodes:
                raise SpecError(
                    _where(
                        "InferenceGraph",
                        name,
                        f"node {node.name!r} step {step.label} field nodeName refers to "
                        f"missing node {step.node_name!r}",
                    )
                )
    cycle = _find_cycle(nodes)
    if cycle:
        raise SpecError(_where("InferenceGraph", name, f"nodes form a cycle: {' -> '.join(cycle)}"))
    timeout = (spec.get("routerTimeouts") or {}).get("serviceClient")
    return InferenceGraph(name, nodes, float(timeout) if timeout else None, tuple(warnings))


def _duration_s(value: Any, where: str) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(value))
    if not match:
        raise SpecError(f"{where} field timeout {value!r} is not a duration like 5s or 500ms")
    number, unit = float(match.group(1)), match.group(2)
    return number / 1000 if unit == "ms" else number * 60 if unit == "m" else number


def parse_virtual_service(manifest: Mapping[str, Any]) -> VirtualService:
    name = (manifest.get("metadata") or {}).get("name") or "virtual-service"
    http = (manifest.get("spec") or {}).get("http")
    if not isinstance(http, list) or not http:
        raise SpecError(_where("VirtualService", name, "spec.http is missing or empty"))
    routes = []
    for index, raw in enumerate(http):
        where = f"http[{index}]"
        destinations = []
        for j, route in enumerate(raw.get("route") or []):
            host = ((route or {}).get("destination") or {}).get("host")
            if not host:
                raise SpecError(
                    _where("VirtualService", name, f"{where}.route[{j}] field destination.host is missing")
                )
            destinations.append(
                WeightedDestination(service_key(host), route.get("weight", 100 if j == 0 else 0))
            )
        if not destinations:
            raise SpecError(_where("VirtualService", name, f"{where} field route is missing or empty"))
        if len(destinations) > 1 and sum(d.weight for d in destinations) != 100:
            total = sum(d.weight for d in destinations)
            raise SpecError(_where("VirtualService", name, f"{where}.route weights sum to {total}, not 100"))
        mirror_host = (raw.get("mirror") or {}).get("host")
        if raw.get("mirror") is not None and not mirror_host:
            raise SpecError(_where("VirtualService", name, f"{where} field mirror.host is missing"))
        percentage = (raw.get("mirrorPercentage") or {}).get("value", 100.0)
        if not isinstance(percentage, int | float) or not 0 <= percentage <= 100:
            raise SpecError(
                _where("VirtualService", name, f"{where} field mirrorPercentage.value must be 0-100")
            )
        matches = []
        for match in raw.get("match") or []:
            uri = (match or {}).get("uri") or {}
            kinds = [k for k in ("prefix", "exact", "regex") if k in uri]
            if len(kinds) != 1:
                raise SpecError(
                    _where("VirtualService", name, f"{where} match needs uri.prefix, uri.exact or uri.regex")
                )
            matches.append({kinds[0]: uri[kinds[0]]})
        routes.append(
            HttpRoute(
                index=index,
                matches=tuple(matches),
                destinations=tuple(destinations),
                mirror=service_key(mirror_host) if mirror_host else None,
                mirror_percentage=float(percentage) if mirror_host else 0.0,
                timeout_s=_duration_s(raw.get("timeout"), _where("VirtualService", name, where)),
            )
        )
    return VirtualService(name, tuple(routes))
