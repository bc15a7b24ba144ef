"""What an operator watches: Prometheus metrics at ``/metrics`` (prometheus_client), one registry per app.

* ``chatbot_http_requests_total{method, route, status}`` and ``chatbot_http_request_seconds{route}``:
  every request, timed to its last byte (a stream's too); the route is the path template
  (``/sessions/{session_id}/messages``), so session ids never become labels, and ``unmatched`` for a
  request answered before it reached one (refused by the key check or the body limit, or no such route);
* ``chatbot_turns_total{skill, outcome}``: replies by skill (``fallback`` when none fitted, ``asked``
  when the bot asked the user to choose); the fallback rate is
  ``sum(rate(chatbot_turns_total{outcome="fallback"}[5m])) / sum(rate(chatbot_turns_total[5m]))``;
* ``chatbot_turn_seconds{stage}``: routing, waiting for the model (``queue``: it is busy with other
  requests), generating, and the whole turn;
* ``chatbot_tokens_total{kind}``: prompt and completion tokens the models read and wrote;
* ``chatbot_fine_tuning_jobs{status}``: the server's jobs by status, read when scraped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from chatbot.bot import Reply

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, job_counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("chatbot_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("chatbot_http_request_seconds", "time to answer a request, to its last byte", ["route"],
                                 buckets=SECONDS, registry=self.registry)
        self.turns = Counter("chatbot_turns", "replies, by the skill that answered (outcome: answered, fallback, asked)",
                             ["skill", "outcome"], registry=self.registry)
        self.turn_seconds = Histogram("chatbot_turn_seconds", "time of a turn's stages: route, queue (waiting for the model), "
                                      "generate, total", ["stage"], buckets=SECONDS, registry=self.registry)
        self.tokens = Counter("chatbot_tokens", "tokens the models read (prompt) and wrote (completion)", ["kind"], registry=self.registry)
        if job_counts is not None:
            self.registry.register(_JobStates(job_counts))

    def turn(self, reply: Reply) -> None:
        outcome = "asked" if reply.asked else "fallback" if reply.fallback else "answered"
        self.turns.labels(skill=reply.skill or "none", outcome=outcome).inc()
        for stage, ms in (("route", reply.latency.route_ms), ("queue", reply.latency.queue_ms), ("generate", reply.latency.generate_ms),
                          ("total", reply.latency.total_ms)):
            self.turn_seconds.labels(stage=stage).observe(ms / 1000)
        self.tokens.labels(kind="prompt").inc(reply.usage.prompt_tokens)
        self.tokens.labels(kind="completion").inc(reply.usage.completion_tokens)


class _JobStates:
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Any:
        family = GaugeMetricFamily("chatbot_fine_tuning_jobs", "fine-tuning jobs by status", labels=["status"])
        for status, count in sorted(self.counts().items()):
            family.add_metric([status], count)
        yield family


class MetricsMiddleware:
    """Counts and times every request (pure ASGI: a stream is timed to its end)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(method=scope["method"], route=route, status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
