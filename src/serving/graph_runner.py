"""Run an InferenceGraph the way KServe's router does, and mirror traffic the way Istio does."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

from serving.forwarding import Answer, CallContext, Forwarder, Targets, error_answer
from serving.graph_spec import ROOT, HttpRoute, InferenceGraph, Step, VirtualService
from serving.prediction_log import KNOWN_ROLES, forward_record
from serving.routing_plan import RoutingPlan

logger = logging.getLogger("sluice.router")

# Graph steps named like this tell the model servers their role, so their logs join into a shadow report.
_STEP_ROLES = {**{role: role for role in KNOWN_ROLES}, "challenger": "shadow"}


def _step_role(step: Step, ctx: CallContext) -> str | None:
    return _STEP_ROLES.get((step.name or "").lower(), ctx.client_role)


def _map_predictions_to_instances(body: bytes) -> bytes:
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body
    if isinstance(decoded, dict) and decoded.get("predictions"):
        decoded["instances"] = decoded.pop("predictions")
        return json.dumps(decoded).encode()
    return body


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class GraphRunner:
    """Executes an InferenceGraph the way KServe's router does (see the README for the differences)."""

    def __init__(self, plan: RoutingPlan, forwarder: Forwarder, targets: Targets):
        self.plan = plan
        self.forwarder = forwarder
        self.targets = targets

    async def run(self, graph: InferenceGraph, body: bytes, ctx: CallContext) -> Answer:
        return await self._node(graph, ROOT, body, ctx)

    async def _step(self, graph: InferenceGraph, step: Step, body: bytes, ctx: CallContext) -> Answer:
        if step.node_name:
            return await self._node(graph, step.node_name, body, ctx)
        if step.service_name and step.service_name not in self.targets.resolve:
            return await self.run(self.plan.graphs[step.service_name], body, ctx)  # a graph calling a graph
        if step.service_name:
            url = self.targets.for_step(step.service_name, ctx)
        else:
            url = self.targets.for_service_url(step.service_url)
        return await self.forwarder.post(
            step.service_name or step.service_url,
            url,
            body,
            ctx,
            _step_role(step, ctx),
            graph.service_client_timeout_s,
        )

    async def _node(self, graph: InferenceGraph, name: str, body: bytes, ctx: CallContext) -> Answer:
        node = graph.nodes[name]
        if node.router_type == "Sequence":
            return await self._sequence(graph, node.steps, body, ctx)
        if node.router_type == "Switch":
            document = _parse_json(body)
            chosen = next((s for s in node.steps if s.condition.exists_in(document)), None)
            if chosen is None:
                return error_answer(404, f"no step of Switch node {name!r} matched the request")
            return await self._step(graph, chosen, body, ctx)
        if node.router_type == "Splitter":
            point = random.randrange(100)
            end = 0
            for step in node.steps:
                end += step.weight
                if point < end:
                    return await self._step(graph, step, body, ctx)
            return error_answer(500, f"Splitter node {name!r} picked no step")
        return await self._ensemble(graph, node.steps, body, ctx)

    async def _sequence(self, graph: InferenceGraph, steps: tuple[Step, ...], body: bytes, ctx: CallContext) -> Answer:
        previous: Answer | None = None
        for i, step in enumerate(steps):
            request = previous.body if (step.data == "$response" and i > 0) else body
            if step.map_predictions_to_instances:
                request = _map_predictions_to_instances(request)
            if step.condition is not None and previous is not None:
                # KServe: a step whose condition does not hold on the previous response ends the sequence.
                if not step.condition.exists_in(_parse_json(previous.body)):
                    return Answer(200, previous.body, previous.content_type)
            answer = await self._step(graph, step, request, ctx)
            if not answer.ok:
                if step.hard:
                    return answer
                logger.warning("soft step %s failed (%s): %s; continuing", step.label, answer.status, answer.error)
            previous = answer
        return previous

    async def _ensemble(self, graph: InferenceGraph, steps: tuple[Step, ...], body: bytes, ctx: CallContext) -> Answer:
        answers = await asyncio.gather(*(self._step(graph, step, body, ctx) for step in steps))
        combined: dict[str, Any] = {}
        for step, answer in zip(steps, answers, strict=True):
            if not answer.ok and step.hard:
                return answer  # the first failed Hard step decides, as in KServe
            parsed = _parse_json(answer.body)
            combined[step.label] = (
                parsed if isinstance(parsed, dict) else {"error": answer.error or "not a JSON object"}
            )
        return Answer(200, json.dumps(combined).encode())


class Mirror:
    """Istio-style mirroring: answer from the routed destination, copy to the mirror without waiting."""

    def __init__(
        self,
        forwarder: Forwarder,
        targets: Targets,
        graphs: GraphRunner,
        *,
        timeout_s: float,
        max_inflight: int,
    ):
        self.forwarder = forwarder
        self.targets = targets
        self.graphs = graphs
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.inflight = 0
        self.stats = {"mirrored": 0, "mirror_dropped": 0, "mirror_failed": 0}
        self._tasks: set[asyncio.Task] = set()

    async def handle(self, vs: VirtualService, body: bytes, ctx: CallContext) -> Answer:
        route = next((r for r in vs.routes if r.matches_path(ctx.path)), None)
        if route is None:
            return error_answer(404, f"no http route of VirtualService {vs.name!r} matches {ctx.path}")
        destination = self._pick(route)
        role = "champion" if route.mirror else ctx.client_role
        if destination in self.graphs.plan.graphs:
            answer = await self.graphs.run(self.graphs.plan.graphs[destination], body, ctx)
        else:
            url = self.targets.for_destination(destination, ctx)
            answer = await self.forwarder.post(destination, url, body, ctx, role, route.timeout_s)
        if route.mirror and random.random() * 100 < route.mirror_percentage:
            # Sent once the champion's answer is on its way (a background task), so the copy's own
            # work never sits in front of the response.
            async def send_copy() -> None:
                self._send_copy(route.mirror, body, ctx)

            answer.after = send_copy
        return answer

    @staticmethod
    def _pick(route: HttpRoute) -> str:
        if len(route.destinations) == 1:
            return route.destinations[0].service
        point, end = random.randrange(100), 0
        for destination in route.destinations:
            end += destination.weight
            if point < end:
                return destination.service
        return route.destinations[-1].service

    def _send_copy(self, service: str, body: bytes, ctx: CallContext) -> None:
        if self.inflight >= self.max_inflight:
            # Never queue behind a slow shadow: drop the copy, count it, and say so in the log.
            self.stats["mirror_dropped"] += 1
            self.forwarder.log.write(
                forward_record(
                    request_id=ctx.request_id,
                    role="shadow",
                    target=service,
                    url="",
                    status_code=None,
                    latency_ms=0.0,
                    error=f"dropped: {self.max_inflight} mirror calls already in flight",
                )
            )
            return
        self.inflight += 1
        self.stats["mirrored"] += 1
        task = asyncio.get_running_loop().create_task(self._copy(service, body, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, service: str, body: bytes, ctx: CallContext) -> None:
        try:
            answer = await self.forwarder.post(
                service, self.targets.for_destination(service, ctx), body, ctx, "shadow", self.timeout_s
            )
            if not answer.ok:
                self.stats["mirror_failed"] += 1
        finally:
            self.inflight -= 1
