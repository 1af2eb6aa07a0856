"""Prometheus metrics: per-method request counts, errors and latency histograms.

With several worker processes the metrics live in ``PROMETHEUS_MULTIPROC_DIR``
(set by ``singleid serve`` before this module is imported), so a scrape of any
worker reports the whole server.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("singleid_grpc_requests_total", "gRPC calls handled, by method and status code",
                   ["method", "code"])
ERRORS = Counter("singleid_grpc_errors_total", "gRPC calls that failed, by method and reason",
                 ["method", "reason"])
LATENCY = Histogram(
    "singleid_grpc_request_duration_seconds", "gRPC call latency by method", ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def observe(method: str, code: str, seconds: float) -> None:
    REQUESTS.labels(method, code).inc()
    LATENCY.labels(method).observe(seconds)


def error(method: str, reason: str) -> None:
    ERRORS.labels(method, reason).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every process's metrics, and its content type."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY  # noqa: PLC0415

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
