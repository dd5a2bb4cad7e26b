"""Prometheus metrics, one registry per app (so two apps in one test process never collide).

Request counts and a latency histogram are labelled by the route *template* (``/v1/predict``),
never the raw path, so a scanner probing random URLs cannot blow up the label set: anything that
matched no route is counted as ``unmatched``.
"""

from __future__ import annotations

import time
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; dense below 50 ms where a healthy /v1/predict lives.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        # Every metric in this app's own registry, none in prometheus_client's global one.
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, registry=self.registry)
        self.requests = counter("digitrec_http_requests", "HTTP requests answered", ["method", "route", "status"])
        self.latency = histogram(
            "digitrec_http_request_duration_seconds",
            "Time from request to last response byte",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
        )
        self.predictions = counter(
            "digitrec_predictions",
            "Images answered, by endpoint and outcome (accepted or rejected as not a digit / not a number)",
            ["endpoint", "outcome"],
        )
        self.rejections = counter(
            "digitrec_rejections", "Images rejected instead of guessed, by endpoint", ["endpoint"]
        )
        self.image_errors = counter(
            "digitrec_image_errors",
            "Uploads refused: 413 too large, 415 not an image, 422 unusable image",
            ["endpoint", "status"],
        )
        self.batch_size = histogram(
            "digitrec_inference_batch_size",
            "Images per model call (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.model_info = gauge(
            "digitrec_model_info", "The loaded model (value 1)", ["arch", "weights_sha256", "version"]
        )
        self.ready = gauge("digitrec_ready", "1 once the model is loaded and the service answers")

    def count_outcome(self, endpoint: str, rejected: bool) -> None:
        self.predictions.labels(endpoint, "rejected" if rejected else "accepted").inc()
        if rejected:
            self.rejections.labels(endpoint).inc()


class MetricsMiddleware:
    """Pure ASGI (BaseHTTPMiddleware costs a task per request): times and counts every request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, known_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        # Requests refused before routing (a 413 on the headers alone) still count under their route.
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app dies before answering, the server sends a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route_template(scope, self.known_paths)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)


def _route_template(scope: Scope, known_paths: frozenset[str]) -> str:
    path = getattr(scope.get("route"), "path", None)
    if path is not None:
        return path or "/"
    return scope["path"] if scope["path"] in known_paths else "unmatched"
