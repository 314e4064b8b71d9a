"""Prometheus metrics of the prediction log: its health, read from its writer at scrape time, and the
unseen categories it flags (both on KServe's /metrics)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import Counter
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from serving.log_writer import DEGRADED_AFTER, LineWriter

# Counted where the prediction-log line is written, so the fast path, KServe's path and gRPC count
# alike, once per answered request.
UNSEEN_CATEGORY_ROWS = Counter(
    "sluice_unseen_category_rows",
    "Rows answered through the model's out-of-vocabulary bucket: a value of an open feature it never saw",
    ["model_name", "feature"],
)


class LogWriterCollector(Collector):
    """`sluice_prediction_log_write_errors_total` and `sluice_prediction_log_degraded` for one writer."""

    def __init__(self, writer: LineWriter):
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "sluice_prediction_log_write_errors",
            "Prediction-log lines that could not be written and are lost (the answers were still sent)",
            value=self.writer.errors,
        )
        yield GaugeMetricFamily(
            "sluice_prediction_log_degraded",
            f"1 after {DEGRADED_AFTER} failed prediction-log writes in a row, 0 once a write succeeds",
            value=1 if self.writer.degraded else 0,
        )


def register_log_metrics(writer: LineWriter, registry: CollectorRegistry = REGISTRY) -> LogWriterCollector:
    """Expose `writer`'s failure counts on `registry` (KServe serves the default one at /metrics)."""
    collector = LogWriterCollector(writer)
    registry.register(collector)
    return collector


def count_unseen_rows(
    model_name: str, inputs: Mapping[str, Sequence[str]], unseen: Mapping[str, Sequence[str]]
) -> None:
    """Add the rows of `inputs` holding each feature's `unseen` values to UNSEEN_CATEGORY_ROWS."""
    for name, values in unseen.items():
        values = frozenset(values)
        rows = sum(1 for value in inputs[name] if value in values)
        UNSEEN_CATEGORY_ROWS.labels(model_name=model_name, feature=name).inc(rows)


class BatcherCollector(Collector):
    """`sluice_model_calls_total` and `sluice_model_call_rows_total`: how well the batcher coalesces requests
    (rows per call), read from the batcher at scrape time."""

    def __init__(self, model_name: str, batcher: object):
        self.model_name = model_name
        self.batcher = batcher

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, help_text, value in (
            ("sluice_model_calls", "Model calls the batcher made (one per coalesced batch)", self.batcher.batches),
            ("sluice_model_call_rows", "Rows (or images) in those calls, padding excluded", self.batcher.rows),
        ):
            family = CounterMetricFamily(name, help_text, labels=["model_name"])
            family.add_metric([self.model_name], value)
            yield family


def register_batcher_metrics(model_name: str, batcher: object, registry: CollectorRegistry = REGISTRY) -> None:
    """Expose the batcher's call and row counts on `registry` (KServe serves the default one at /metrics)."""
    registry.register(BatcherCollector(model_name, batcher))
