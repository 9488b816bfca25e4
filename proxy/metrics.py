"""`GET /metrics`: Prometheus counters of requests, tokens and cost by team and model.

The counters live in a registry owned by the app (not prometheus_client's global one), fed by
a `Meter.on_record` observer. Cost is a float here because Prometheus has no other number;
the ledger, in exact pico-dollars, is the source of truth for money.

The three counters every call adds to (requests, tokens, cost) are kept as plain numbers per
label set and turned into samples when /metrics is read (`CallCounters`): a prometheus_client
`Counter.inc` takes a lock and checks its argument, about 0.5 µs, and a plain call made four
(requests, input and output tokens, cost). Both sides run on the event loop: nothing is locked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from operator import itemgetter
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.responses import Response

from meterline.costing.run_links import CONTINUATION, HEADER, TOOL_REQUEST, TRACEPARENT

from .meter import Call

LABELS = ("department", "team", "model", "kind", "status")
_labels_of = itemgetter(*LABELS)  # an event's label values (all str): one C call per call
LINKS = (TRACEPARENT, HEADER, CONTINUATION, TOOL_REQUEST)
TOKEN_TYPES = {
    "input": "input_tokens",
    "cached_input": "cached_input_tokens",
    "cache_write": "cache_write_tokens",
    "output": "output_tokens",
    "reasoning": "reasoning_tokens",
}
_tokens_of = itemgetter(*TOKEN_TYPES.values())

PICO_PER_USD = 1e12
# Model names are the client's to choose when a glob routes them (`gpt-4.1*`): past this many
# distinct ones, later names are counted under OTHER, so /metrics stays small (20,000 names
# once made it 98 MB, 6 s of the event loop per scrape). The ledger keeps every name.
MAX_MODELS = 500
OTHER = "other"
MAX_SERIES = 20_000  # label tuples cached; past it, lookups are made per call

router = APIRouter()


class Series:
    """One label set's totals: calls, tokens by type (TOKEN_TYPES' order), cost in pico-USD."""

    __slots__ = ("cost_pico", "created", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = [0] * len(TOKEN_TYPES)
        self.cost_pico = 0  # exact; a float only in the exposition
        self.created = time.time()


class CallCounters(Collector):
    """`meterline_requests`, `meterline_tokens` and `meterline_cost_usd`, by LABELS."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], Series] = {}  # by the labels shown (model bounded)

    def of(self, labels: tuple[str, ...]) -> Series:
        found = self.series.get(labels)
        if found is None:
            found = self.series[labels] = Series()
        return found

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("meterline_requests", "Metered calls.", labels=LABELS)
        tokens = CounterMetricFamily(
            "meterline_tokens",
            "Tokens of metered calls; cached_input and cache_write are part of input, reasoning of output.",
            labels=(*LABELS, "type"),
        )
        cost = CounterMetricFamily(
            "meterline_cost_usd", "Cost of metered calls in USD (the ledger holds the exact amounts).", labels=LABELS
        )
        for labels, s in list(self.series.items()):
            requests.add_metric(labels, s.requests, created=s.created)
            for kind, n in zip(TOKEN_TYPES, s.tokens, strict=True):
                tokens.add_metric((*labels, kind), n, created=s.created)
            cost.add_metric(labels, s.cost_pico / PICO_PER_USD, created=s.created)
        yield from (requests, tokens, cost)


class Metrics:
    """The proxy's Prometheus metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = CallCounters()
        self.registry.register(self.calls)
        self.unpriced = Counter(
            "meterline_unpriced_requests", "Calls recorded without a price (no price known for the model).", ("model",), registry=self.registry
        )
        self.spooled = Gauge(
            "meterline_ledger_spooled_events", "Events in the local spool, not yet in the ledger database.", registry=self.registry
        )
        self.degraded = Gauge(
            "meterline_ledger_degraded", "1 while the ledger database cannot be written (events stay spooled).", registry=self.registry
        )
        self.key_lookups = Gauge(
            "meterline_key_lookups",
            "Ledger queries made since start for secrets the key cache did not know (each may ask for many).",
            registry=self.registry,
        )
        self.anomalies = Counter(
            "meterline_spend_anomalies",
            "Spend anomalies (each spike once fleet-wide, counted by the replica that noted it).",
            ("scope", "id"),
            registry=self.registry,
        )
        self.anomalies_open = Gauge(
            "meterline_spend_anomalies_open", "Teams and keys whose spend is in a spike, at the last check.", registry=self.registry
        )
        self.run_links = Counter(
            "meterline_run_links",
            "Calls placed in an agent run at admission, by how (traceparent, header, continuation, tool_request).",
            ("link",),
            registry=self.registry,
        )
        self._links = {link: self.run_links.labels(link) for link in LINKS}
        self.run_clues_ambiguous = Gauge(
            "meterline_run_clues_ambiguous",
            "Lookups that found a clue two runs produced, so linked nothing (since start).",
            registry=self.registry,
        )
        self.run_clues = Gauge("meterline_run_clues", "Clues the run index holds (bounded).", registry=self.registry)
        self.runs_capped = Gauge("meterline_runs_capped", "Agent runs capped by `runs:` since start.", registry=self.registry)
        self._series: dict[tuple[str, ...], Series] = {}  # by the event's labels (model as sent)
        self._models: set[str] = set()

    def record(self, event: Mapping[str, Any], call: Call, response_model: str) -> None:
        """A `Meter.on_record` observer (on the hot path: label lookups are cached)."""
        labels = _labels_of(event)
        series = self._series.get(labels)
        if series is None:
            series = self.calls.of(labels[:2] + (self.model_label(labels[2]),) + labels[3:])
            if len(self._series) < MAX_SERIES:
                self._series[labels] = series
        series.requests += 1
        tokens = series.tokens
        for i, n in enumerate(_tokens_of(event)):
            if n:
                tokens[i] += n
        series.cost_pico += event["cost_pico"]
        if not event["priced"]:
            self.unpriced.labels(self.model_label(event["model"] or "")).inc()
        if call.link:
            self._links[call.link].inc()

    def model_label(self, model: str) -> str:
        """`model` as a label value: itself for the first MAX_MODELS names, then OTHER."""
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return OTHER


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    rt = request.app.state.runtime
    m: Metrics = rt.metrics
    m.spooled.set(await asyncio.to_thread(rt.spool.pending) if rt.spool_kind == "disk" else rt.spool.pending())
    m.degraded.set(1 if rt.writer.degraded else 0)
    m.key_lookups.set(rt.keys.lookups)
    m.run_clues.set(len(rt.meter.runs))
    m.run_clues_ambiguous.set(rt.meter.runs.ambiguous)
    m.runs_capped.set(rt.run_caps.capped_total)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
