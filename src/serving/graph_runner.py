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


_INVALID = object()  # what _parse_json returns for a body that is not JSON (JSON null is None)
# The body KServe's router answers when it cannot route a request (its status is 500, or 404 when
# no Switch condition matches); clients see the same fields locally.
ROUTING_FAILED = "Failed to process request"


class RoutingError(Exception):
    """Ends the whole graph request with KServe's routing error: a status and a cause."""

    def __init__(self, status: int, cause: str):
        super().__init__(cause)
        self.status = status
        self.cause = cause


def routing_error_answer(exc: RoutingError) -> Answer:
    body = {"error": ROUTING_FAILED, "cause": exc.cause}
    return Answer(exc.status, json.dumps(body, separators=(",", ":")).encode(), error=exc.cause)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(body: bytes) -> Any:
    """The parsed document, or _INVALID for anything a strict JSON parser (GJSON's check) refuses."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        return _INVALID


def _compact(value: Any) -> bytes:
    # Go's encoding/json writes maps with sorted keys and no spaces; matching it keeps bodies alike.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _map_predictions_to_instances(body: bytes) -> bytes:
    """KServe decodes the body into a struct of just `predictions` and `instances` (keys matched
    without regard to case) and, when predictions is a non-empty list, sends {"instances": predictions}
    alone; a body that does not decode into that struct goes on unchanged."""
    decoded = _parse_json(body)
    if not isinstance(decoded, dict):
        return body
    predictions = None
    for key, value in decoded.items():
        if key.lower() in ("predictions", "instances") and not isinstance(value, list | None):
            return body
        if key.lower() == "predictions":
            predictions = value
    if not predictions:
        return body
    return json.dumps({"instances": predictions}, separators=(",", ":")).encode()


class GraphRunner:
    """Executes an InferenceGraph the way KServe's router does (see the README for the differences)."""

    def __init__(self, plan: RoutingPlan, forwarder: Forwarder, targets: Targets):
        self.plan = plan
        self.forwarder = forwarder
        self.targets = targets

    async def run(self, graph: InferenceGraph, body: bytes, ctx: CallContext) -> Answer:
        try:
            return await self._node(graph, ROOT, body, ctx)
        except RoutingError as exc:
            logger.warning("InferenceGraph %s: %s (%s)", graph.name, exc.cause, exc.status)
            return routing_error_answer(exc)

    async def _step(self, graph: InferenceGraph, step: Step, body: bytes, ctx: CallContext) -> Answer:
        if step.node_name:
            try:
                return await self._node(graph, step.node_name, body, ctx)
            except RoutingError as exc:
                # KServe answers a node's own status (a Switch's 404) only at the root; a step that
                # failed to route fails its caller with 500.
                raise RoutingError(500, exc.cause) from None
        if step.service_name and step.service_name not in self.targets.resolve:
            # A graph calling a graph answers like a service would: its routing errors are HTTP answers.
            return await self.run(self.plan.graphs[step.service_name], body, ctx)
        if step.service_name:
            url = self.targets.for_step(step.service_name, ctx)
        else:
            url = self.targets.for_service_url(step.service_url)
        answer = await self.forwarder.post(
            step.service_name or step.service_url,
            url,
            body,
            ctx,
            _step_role(step, ctx),
            graph.service_client_timeout_s,
        )
        if not answer.reached:
            # KServe fails the request on a transport error even for a Soft step: only an HTTP
            # answer with an error status counts as a step's failure that Soft lets pass.
            raise RoutingError(500, answer.error or f"{url} did not answer")
        return answer

    async def _node(self, graph: InferenceGraph, name: str, body: bytes, ctx: CallContext) -> Answer:
        node = graph.nodes[name]
        if node.router_type == "Sequence":
            return await self._sequence(graph, node.steps, body, ctx)
        if node.router_type == "Switch":
            document = _parse_json(body)
            chosen = None
            if document is not _INVALID:  # KServe matches no condition on a body that is not JSON
                chosen = next((s for s in node.steps if s.condition.exists_in(document)), None)
            if chosen is None:
                raise RoutingError(404, "None of the routes matched with the switch condition")
            return await self._step(graph, chosen, body, ctx)
        if node.router_type == "Splitter":
            point = random.randrange(100)
            end = 0
            for step in node.steps:
                end += step.weight
                if point < end:
                    return await self._step(graph, step, body, ctx)
            raise RoutingError(500, "no route was selected by the splitter")
        return await self._ensemble(graph, node.steps, body, ctx)

    async def _sequence(self, graph: InferenceGraph, steps: tuple[Step, ...], body: bytes, ctx: CallContext) -> Answer:
        previous: Answer | None = None
        for step in steps:
            request = previous.body if (step.data == "$response" and previous is not None) else body
            if step.map_predictions_to_instances:
                request = _map_predictions_to_instances(request)
            if step.condition is not None:
                document = _parse_json(previous.body) if previous is not None else _INVALID
                if document is _INVALID:
                    raise RoutingError(500, "invalid response")
                # KServe: a step whose condition does not hold on the previous response ends the
                # sequence with that response and 200, whatever the previous status was.
                if not step.condition.exists_in(document):
                    return Answer(200, previous.body, previous.content_type)
            answer = await self._step(graph, step, request, ctx)
            if not answer.ok:
                if step.hard:
                    return answer
                logger.warning("soft step %s failed (%s): %s; continuing", step.label, answer.status, answer.error)
            previous = answer
        return previous

    async def _ensemble(self, graph: InferenceGraph, steps: tuple[Step, ...], body: bytes, ctx: CallContext) -> Answer:
        # A step that cannot be routed (RoutingError) fails the node before any step's status is looked at.
        answers = await asyncio.gather(*(self._step(graph, step, body, ctx) for step in steps))
        parsed = [_parse_json(answer.body) for answer in answers]
        for step, document in zip(steps, parsed, strict=True):
            if not isinstance(document, dict | None):
                # KServe decodes every step's body into a JSON object (null decodes to nothing).
                raise RoutingError(500, f"step {step.label} did not answer a JSON object")
        for step, answer, document in zip(steps, answers, parsed, strict=True):
            if not answer.ok and step.hard:
                return Answer(answer.status, _compact(document))  # the first failed Hard step decides
        return Answer(200, _compact({step.label: document for step, document in zip(steps, parsed, strict=True)}))


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
