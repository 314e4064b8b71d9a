"""Prometheus metrics for the prediction log's health, read from its writer at scrape time (on KServe's /metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from serving.log_writer import DEGRADED_AFTER, LineWriter


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
