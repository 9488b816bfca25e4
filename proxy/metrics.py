"""`GET /metrics`: Prometheus counters of requests, tokens and cost by team and model.

The counters live in a registry owned by the app (not prometheus_client's global one), fed by
a `Meter.on_record` observer. Cost is a float here because Prometheus has no other number;
the ledger, in exact pico-dollars, is the source of truth for money.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

from costing.money import from_pico

from .meter import Call

LABELS = ("department", "team", "model", "kind", "status")
TOKEN_TYPES = {
    "input": "input_tokens",
    "cached_input": "cached_input_tokens",
    "cache_write": "cache_write_tokens",
    "output": "output_tokens",
    "reasoning": "reasoning_tokens",
}

router = APIRouter()


class Metrics:
    """The proxy's Prometheus metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "meterline_requests", "Metered calls.", LABELS, registry=self.registry
        )
        self.tokens = Counter(
            "meterline_tokens",
            "Tokens of metered calls; cached_input and cache_write are part of input, reasoning of output.",
            (*LABELS, "type"),
            registry=self.registry,
        )
        self.cost = Counter(
            "meterline_cost_usd", "Cost of metered calls in USD (the ledger holds the exact amounts).", LABELS, registry=self.registry
        )
        self.unpriced = Counter(
            "meterline_unpriced_requests", "Calls recorded without a price (no price known for the model).", ("model",), registry=self.registry
        )
        self.spooled = Gauge(
            "meterline_ledger_spooled_events", "Events in the local spool, not yet in the ledger database.", registry=self.registry
        )
        self.degraded = Gauge(
            "meterline_ledger_degraded", "1 while the ledger database cannot be written (events stay spooled).", registry=self.registry
        )

    def record(self, event: Mapping[str, Any], call: Call) -> None:
        """A `Meter.on_record` observer."""
        labels = tuple(event[k] or "" for k in LABELS)
        self.requests.labels(*labels).inc()
        for kind, column in TOKEN_TYPES.items():
            n = event[column]
            if n:
                self.tokens.labels(*labels, kind).inc(n)
        self.cost.labels(*labels).inc(float(from_pico(event["cost_pico"])))
        if not event["priced"]:
            self.unpriced.labels(event["model"]).inc()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    rt = request.app.state.runtime
    m: Metrics = rt.metrics
    if rt.spool is not None:
        m.spooled.set(await asyncio.to_thread(rt.spool.pending))
    m.degraded.set(1 if rt.writer is not None and rt.writer.degraded else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
