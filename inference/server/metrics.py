"""The Prometheus metrics of one inference app, served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: two apps in one process (tests) never clash
        r = self.registry
        self.requests = Counter(
            "parley_inference_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.in_flight = Gauge("parley_inference_requests_in_flight", "Requests being served", registry=r)
        self.busy = Counter(
            "parley_inference_busy_refusals",
            "Requests refused because the model was busy",
            ["endpoint"],
            registry=r,
        )
        self.prompt_tokens = Counter("parley_inference_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("parley_inference_generated_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram(
            "parley_inference_time_to_first_token_seconds",
            "From request to first streamed token, queueing included",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
