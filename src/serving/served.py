"""What every served use case shares: loading by URI (alias pinned to a version) and one prediction-log line per
inference, whichever protocol or path carried it. The use cases (serving.model, serving.image_model) add their
request checks, model call and answers."""

from __future__ import annotations

from typing import Any

import kserve
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb

from serving.batcher import AdaptiveBatcher
from serving.guard import CURRENT_REQUEST, ClientError, PredictionLogger, RequestContext
from serving.request_columns import Tensor

# Only these model URIs are fetched through the MLflow tracking server.
TRACKED_SCHEMES = ("models:/", "runs:/")


def tensor_of(infer_input: Any, from_grpc: bool, *, text: bool = True) -> Tensor:
    """A KServe InferInput as the Tensor the request checks read. gRPC binary contents are not in .data
    (as_dataframe() ignores them): they are decoded here, BYTES elements to text unless `text` is False
    (an image's raw file bytes)."""
    if not from_grpc:
        return Tensor(infer_input.name, infer_input.datatype, infer_input.shape, infer_input.data)
    try:
        data = infer_input.as_numpy()
    except (ValueError, InvalidInput) as exc:
        raise ClientError(f"input {infer_input.name!r}: cannot decode tensor data: {exc}") from None
    if text:
        data = [v.decode("utf-8") if isinstance(v, bytes) else v for v in data.reshape(-1)]
    return Tensor(infer_input.name, infer_input.datatype, list(infer_input.shape), data)


class LoggedServer(kserve.Model):
    """A kserve.Model that pins its model URI on load and writes the prediction log (the guard's LoggedModel)."""

    def __init__(
        self, name: str, model_uri: str, *, model_version: str | None = None,
        prediction_log: PredictionLogger | None = None, max_batch_wait_ms: float = 2.0,
    ):
        super().__init__(name)
        self.model_uri = model_uri
        self.model_version = model_version or ""
        self._version_override = model_version
        self.prediction_log = prediction_log or PredictionLogger()
        self.max_batch_wait_s = max_batch_wait_ms / 1000
        self.model = None
        self.batcher: AdaptiveBatcher | None = None

    def pinned_uri(self) -> str:
        """The URI to load: an alias resolved to a fixed version (recorded as model_version) unless a version
        label was given; raises models.registry.TrackingServerUnavailable at once when MLflow does not answer."""
        from models.registry import pin_model_uri, require_tracking_server

        if self.model_uri.startswith(TRACKED_SCHEMES):
            # MLflow's client would retry a refused connection for ~4 minutes before saying anything.
            require_tracking_server(None)
        if self._version_override:
            return self.model_uri
        uri, self.model_version = pin_model_uri(self.model_uri)
        return uri

    def validate(self, payload: Any) -> Any:
        # preprocess() checks everything; KServe's own check assumes a dict or InferRequest.
        return payload

    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: Any = None) -> Any:
        verb = verb or InferenceVerb.PREDICT
        # An explanation is no prediction: no prediction-log line (the guard has not set a context for it).
        if verb is not InferenceVerb.PREDICT or CURRENT_REQUEST.get() is not None:
            return await super().__call__(body, headers=headers, verb=verb)
        # gRPC requests skip the HTTP guard: log them here instead.
        context = RequestContext.from_headers(headers or {})
        token = CURRENT_REQUEST.set(context)
        try:
            response = await super().__call__(body, headers=headers)
        except Exception as exc:
            self.prediction_log.write(self, context, error=str(exc))
            raise
        finally:
            CURRENT_REQUEST.reset(token)
        self.prediction_log.write(self, context)
        return response
