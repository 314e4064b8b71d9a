"""The kserve.Model serving the xray image classifier: PNG/JPEG or tensor requests, batched model calls, class
probabilities, and an occlusion heat map on :explain. Sibling of serving.model (the tabular use case): the same
guard, prediction log, batcher and KServe glue."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from models.xray.schema import CHANNELS, IMAGE_SIZE
from serving.batcher import AdaptiveBatcher
from serving.guard import CURRENT_REQUEST, ClientError, PredictionLogger
from serving.image_request import ImageBatch, batch_from_v1, batch_from_v2
from serving.occlusion import DEFAULT_PATCH, DEFAULT_STRIDE, OcclusionPlan, heat_map_png, png_b64
from serving.prediction_log import REQUEST_ID_HEADER
from serving.request_columns import RequestError
from serving.served import LoggedServer, tensor_of

logger = logging.getLogger("sluice.model_server")

PROBABILITIES = "probabilities"
CLASS = "class"
IMAGES = "images"  # the batcher's one column: model inputs [n, S, S, 1]


@dataclass
class PreparedImages:
    """A checked request on its way through preprocess -> predict -> postprocess."""

    batch: ImageBatch
    v2: bool
    response_id: str
    probabilities: np.ndarray | None = None


class XrayServer(LoggedServer):
    """Serves `models.xray.model.XrayModel`, batching the images of concurrent requests into one model call."""

    def __init__(
        self,
        name: str,
        model_uri: str,
        *,
        model_version: str | None = None,
        max_images: int = 64,
        max_batch_images: int = 64,
        max_batch_wait_ms: float = 2.0,
        max_explain_images: int = 4,
        prediction_log: PredictionLogger | None = None,
    ):
        super().__init__(name, model_uri, model_version=model_version, prediction_log=prediction_log,
                         max_batch_wait_ms=max_batch_wait_ms)
        self.max_images = max_images
        self.max_batch_images = max_batch_images
        self.max_explain_images = max_explain_images
        # Decoding and resizing PNG/JPEG is CPU work (Pillow releases the GIL); off the event loop it
        # overlaps the model call of the previous batch instead of stalling every connection.
        self._decoder = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")

    def load(self) -> bool:
        """Load the model; raises models.registry.TrackingServerUnavailable at once when MLflow does not answer."""
        from models.xray.model import load_served_model

        uri = self.pinned_uri()
        self.model, _ = load_served_model(uri)
        if self.model.image_size != IMAGE_SIZE:
            # Requests are decoded by models.xray.images.to_model_input, which makes IMAGE_SIZE inputs.
            raise ValueError(f"{uri} takes {self.model.image_size} px inputs; this server sends {IMAGE_SIZE} px")
        # The first call traces the tf.function; do it now rather than on the first request.
        self.model.predict_batch(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), np.float32))
        self.batcher = AdaptiveBatcher(
            lambda columns: self.model.predict_batch(columns[IMAGES]),
            max_batch_rows=self.max_batch_images,
            max_wait_s=self.max_batch_wait_s,
        )
        logger.info("Loaded %s version %s from %s (classes: %s)", self.name, self.model_version, uri,
                    ", ".join(self.model.classes))
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [{"name": "image", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(self.model.classes)]},
            {"name": CLASS, "datatype": "BYTES", "shape": [-1]},
        ]

    def _parse(self, payload: Any, headers: dict[str, str]) -> PreparedImages:
        request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        if isinstance(payload, InferRequest):
            tensors = [tensor_of(i, payload.from_grpc, text=False) for i in payload.inputs]
            batch = batch_from_v2(tensors, IMAGE_SIZE, max_images=self.max_images)
            return PreparedImages(batch, True, payload.id or request_id)
        if isinstance(payload, bytes | str):
            raise RequestError(
                f"request body is not JSON (Content-Type: {headers.get('content-type')}); send application/json"
            )
        return PreparedImages(batch_from_v1(payload, IMAGE_SIZE, self.model.classes, max_images=self.max_images),
                              False, request_id)

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> PreparedImages:
        context = CURRENT_REQUEST.get()
        try:
            prepared = await asyncio.get_running_loop().run_in_executor(
                self._decoder, self._parse, payload, headers or {}
            )
        except RequestError as exc:
            raise ClientError(str(exc), exc.status_code) from None
        if context is not None:
            context.inputs = prepared.batch.log_inputs()
        return prepared

    async def predict(self, payload: PreparedImages, headers: dict[str, str] | None = None) -> PreparedImages:
        payload.probabilities = await self.batcher.predict({IMAGES: payload.batch.inputs})
        return payload

    async def explain(self, payload: PreparedImages, headers: dict[str, str] | None = None) -> dict:
        """KServe's V1 :explain: per image the probabilities and an occlusion heat map of the explained class
        (the predicted one unless the instance names a "class"); every occluded copy goes through the batcher."""
        batch = payload.batch
        if len(batch.inputs) > self.max_explain_images:
            raise ClientError(
                f"request has {len(batch.inputs)} images; :explain takes at most {self.max_explain_images} per "
                "request (each costs a few hundred model evaluations); send fewer images per request", 413,
            )
        probabilities = await self.batcher.predict({IMAGES: batch.inputs})
        classes = self.model.classes
        explanations = []
        for image, probs, wanted in zip(batch.inputs, probabilities, batch.explain_classes, strict=True):
            index = classes.index(wanted) if wanted else int(np.argmax(probs))
            plan = OcclusionPlan(image, DEFAULT_PATCH, DEFAULT_STRIDE)
            scores = [await self.batcher.predict({IMAGES: chunk}) for chunk in plan.chunks(self.max_batch_images)]
            grid = plan.grid(float(probs[index]), np.concatenate(scores)[:, index])
            png = await asyncio.get_running_loop().run_in_executor(
                self._decoder, heat_map_png, image, plan.pixel_map(grid)
            )
            explanations.append({
                CLASS: classes[int(np.argmax(probs))],
                PROBABILITIES: dict(zip(classes, map(float, probs), strict=True)),
                "explained_class": classes[index],
                "grid": np.round(grid, 6).tolist(),
                "heat_map_png": png_b64(png),
                "heat_map_size": [int(image.shape[1]), int(image.shape[0])],
            })
        return {"model_name": self.name, "model_version": self.model_version, "method": "occlusion",
                "patch": DEFAULT_PATCH, "stride": DEFAULT_STRIDE, "explanations": explanations}

    async def postprocess(
        self, result: PreparedImages | dict, headers: dict[str, str] | None = None,
        response_headers: dict | None = None,
    ) -> dict | InferResponse:
        if not isinstance(result, PreparedImages):
            return result  # an :explain answer
        context = CURRENT_REQUEST.get()
        probabilities = result.probabilities
        if context is not None:
            context.outputs = probabilities
        classes = self.model.classes
        predicted = [classes[i] for i in np.argmax(probabilities, axis=1)]
        if not result.v2:
            return {"predictions": [
                {CLASS: label, PROBABILITIES: dict(zip(classes, map(float, row), strict=True))}
                for label, row in zip(predicted, probabilities, strict=True)
            ]}
        # The column order of the probabilities, so a client needs no metadata call to read them.
        probs = InferOutput(name=PROBABILITIES, shape=list(probabilities.shape), datatype="FP32",
                            parameters={"classes": ",".join(classes)})
        probs.set_data_from_numpy(probabilities, binary_data=False)
        labels = InferOutput(name=CLASS, shape=[len(predicted)], datatype="BYTES", data=predicted)
        return InferResponse(
            response_id=result.response_id, model_name=self.name, model_version=self.model_version,
            infer_outputs=[probs, labels],
        )
