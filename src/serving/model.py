"""The kserve.Model serving the wachttijden MLflow model: load by URI, check and batch requests, answer V1 and V2."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from models.wachttijden.schema import FEATURES
from serving.batcher import AdaptiveBatcher
from serving.explain import explain_columns
from serving.guard import CURRENT_REQUEST, ClientError, PredictionLogger
from serving.prediction_log import REQUEST_ID_HEADER
from serving.request_columns import (
    RequestError,
    columns_from_v1,
    columns_from_v2,
    unknown_category_message,
)
from serving.served import LoggedServer, tensor_of

logger = logging.getLogger("sluice.model_server")

OUTPUT_NAME = "predictions"
# A one-row model call takes another matmul kernel than a batched one; see AdaptiveBatcher.
MIN_CALL_ROWS = 2


@dataclass
class Prepared:
    """A checked request on its way through preprocess -> predict -> postprocess."""

    columns: dict[str, list[str]]
    v2: bool
    response_id: str
    predictions: np.ndarray | None = None
    unseen: dict[str, list[str]] | None = None


class WachttijdenServer(LoggedServer):
    """Serves `models.wachttijden.model.WachttijdenModel` through its traced fast path, batching concurrent requests."""

    def __init__(
        self,
        name: str,
        model_uri: str,
        *,
        model_version: str | None = None,
        max_rows: int = 10_000,
        max_batch_rows: int = 256,
        max_batch_wait_ms: float = 2.0,
        max_explain_rows: int = 100,
        prediction_log: PredictionLogger | None = None,
    ):
        super().__init__(name, model_uri, model_version=model_version, prediction_log=prediction_log,
                         max_batch_wait_ms=max_batch_wait_ms)
        self.max_rows = max_rows
        self.max_batch_rows = max_batch_rows
        self.max_explain_rows = max_explain_rows
        self.open_features: frozenset[str] = frozenset()

    def load(self) -> bool:
        """Load the model; raises models.registry.TrackingServerUnavailable at once when MLflow does not answer."""
        from models.wachttijden.model import load_served_model

        uri = self.pinned_uri()
        self.model, _ = load_served_model(uri)
        # Models logged before open features existed (or loaded by their own older code) have
        # untrained out-of-vocabulary buckets: every feature stays closed for them.
        self.open_features = frozenset(getattr(self.model, "open_features", ()))
        # The first call traces the tf.function; do it now rather than on the first request.
        vocabularies = self.model.vocabularies
        self.model.predict_columns({name: values[:1] * MIN_CALL_ROWS for name, values in vocabularies.items()})
        self.batcher = AdaptiveBatcher(
            self.model.predict_columns,
            max_batch_rows=self.max_batch_rows,
            max_wait_s=self.max_batch_wait_s,
            min_call_rows=MIN_CALL_ROWS,
        )
        logger.info(
            "Loaded %s version %s from %s (open features: %s; explanations: %s)", self.name, self.model_version, uri,
            ", ".join(sorted(self.open_features)) or "none", "yes" if getattr(self.model, "background", None) else "no",
        )
        self.ready = True
        return self.ready

    def unseen_categories(self, columns: dict[str, list[str]]) -> dict[str, list[str]]:
        """Values of open features the model never saw (it answers them through its out-of-vocabulary
        bucket); raises ClientError (400) naming each closed feature's unknown values. Both paths ask this."""
        unknown = self.model.unknown_categories(columns)
        if not unknown:
            return {}
        closed = {name: values for name, values in unknown.items() if name not in self.open_features}
        if closed:
            raise ClientError(unknown_category_message(closed, self.model.vocabularies))
        return unknown

    def get_input_types(self) -> list[dict]:
        return [{"name": name, "datatype": "BYTES", "shape": [-1]} for name in FEATURES]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]}]

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Prepared:
        headers = headers or {}
        request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        context = CURRENT_REQUEST.get()
        try:
            if isinstance(payload, InferRequest):
                tensors = [tensor_of(i, payload.from_grpc) for i in payload.inputs]
                columns = columns_from_v2(tensors, max_rows=self.max_rows)
                prepared = Prepared(columns, True, payload.id or request_id)
            elif isinstance(payload, bytes | str):
                raise RequestError(
                    f"request body is not JSON (Content-Type: {headers.get('content-type')}); send application/json"
                )
            else:
                prepared = Prepared(columns_from_v1(payload, max_rows=self.max_rows), False, request_id)
        except RequestError as exc:
            raise ClientError(str(exc), exc.status_code) from None
        if context is not None:
            context.inputs = prepared.columns
        prepared.unseen = self.unseen_categories(prepared.columns)
        if context is not None:
            context.unseen = prepared.unseen
        return prepared

    async def predict(self, payload: Prepared, headers: dict[str, str] | None = None) -> Prepared:
        payload.predictions = await self.batcher.predict(payload.columns)
        return payload

    async def explain(self, payload: Prepared, headers: dict[str, str] | None = None) -> dict:
        """KServe's V1 :explain: exact Shapley attributions per row (see serving.explain)."""
        answer = await explain_columns(
            payload.columns,
            model=self.model,
            predict=self.batcher.predict,
            max_rows=self.max_explain_rows,
            described_as=f"model {self.name} version {self.model_version or '(unknown)'}",
        )
        return {"model_name": self.name, "model_version": self.model_version, **answer,
                "unseen_categories": payload.unseen or None}

    async def postprocess(
        self, result: Prepared | dict, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> dict | InferResponse:
        if not isinstance(result, Prepared):
            return result  # an :explain answer
        context = CURRENT_REQUEST.get()
        if context is not None:
            context.outputs = result.predictions
        if not result.v2:
            return {"predictions": result.predictions.tolist()}
        output = InferOutput(name=OUTPUT_NAME, shape=[len(result.predictions)], datatype="FP32")
        output.set_data_from_numpy(result.predictions, binary_data=False)
        return InferResponse(
            response_id=result.response_id,
            model_name=self.name,
            model_version=self.model_version,
            infer_outputs=[output],
        )
