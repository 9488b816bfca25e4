"""OpenTelemetry spans for metered calls, with the GenAI semantic-convention attributes.

One span per recorded call, emitted after the fact from `Meter.on_record` (start time = the
call's start). The span's trace id and span id are the call's `trace_id` and `call_id`, and
its parent is the client's `traceparent`, so a trace in the user's backend lines up with the
ledger row and with the `traceparent` the upstream received.

The TracerProvider belongs to the app (never `trace.set_tracer_provider`: no global state), and
exists only when `telemetry.otlp_endpoint` is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from meterline.costing.config import TelemetryConfig
from meterline.costing.money import exact, from_pico

from .meter import Call

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# gen_ai.operation.name for each route the proxy meters.
OPERATIONS = {
    "/chat/completions": "chat",
    "/responses": "chat",
    "/completions": "text_completion",
    "/embeddings": "embeddings",
}


class _CallIds(IdGenerator):
    """Hands the SDK the ids of the call being exported instead of random ones."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id

    def is_trace_id_random(self) -> bool:
        return True  # ours come from `secrets` (costing.attribution) or the client's traceparent


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a collector's base URL gets the standard `/v1/traces` path."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Telemetry:
    """Parameters:
    processor: where finished spans go (a BatchSpanProcessor over OTLP in production; tests
        hand in a SimpleSpanProcessor over an in-memory exporter).
    service_name: the `service.name` resource attribute.
    """

    def __init__(self, processor: SpanProcessor, service_name: str = "meterline"):
        self._ids = _CallIds()
        self._lock = threading.Lock()
        self.provider = TracerProvider(
            sampler=ALWAYS_ON,
            resource=Resource.create({"service.name": service_name}),
            id_generator=self._ids,
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("meterline.proxy")

    @classmethod
    def otlp(cls, config: TelemetryConfig, exporter: SpanExporter | None = None) -> Telemetry:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            assert config.otlp_endpoint
            exporter = OTLPSpanExporter(endpoint=traces_url(config.otlp_endpoint))
        return cls(BatchSpanProcessor(exporter), config.service_name)

    def record(self, event: Mapping[str, Any], call: Call | None, response_model: str = "") -> None:
        """A `Meter.on_record` observer: one finished span for the recorded call."""
        start = _ns(event["ts"])
        mcp = event["kind"] == "mcp"
        if mcp:  # an MCP message: its JSON-RPC method, and a tool call is an execute_tool
            operation = "execute_tool" if event["tool"] else event["method"]
            name = f"{event['method']} {event['tool']}".strip()
        else:
            operation = OPERATIONS.get(event["method"], "chat")
            name = f"{operation} {event['model']}"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": event["provider"],
            "gen_ai.system": event["provider"],  # the pre-1.37 name, still read by many backends
            "meterline.call_id": event["call_id"],
            "meterline.team": event["team"],
            "meterline.department": event["department"],
            "meterline.kind": event["kind"],
            "meterline.status": event["status"],
            "meterline.usage_source": event["usage_source"],
            "meterline.priced": event["priced"],
            "meterline.cost_usd": exact(from_pico(event["cost_pico"])),
        }
        if event["project"]:
            attrs["meterline.project"] = event["project"]
        if mcp:
            attrs["mcp.method.name"] = event["method"]
            if event["tool"]:
                attrs["gen_ai.tool.name"] = event["tool"]
        else:
            attrs |= {
                "gen_ai.request.model": event["model"],
                "gen_ai.response.model": response_model or event["model"],
                "gen_ai.usage.input_tokens": event["input_tokens"],
                "gen_ai.usage.output_tokens": event["output_tokens"],
                "gen_ai.usage.cache_read.input_tokens": event["cached_input_tokens"],
                "gen_ai.usage.cache_creation.input_tokens": event["cache_write_tokens"],
                "gen_ai.usage.reasoning.output_tokens": event["reasoning_tokens"],
            }
        if event["http_status"]:
            attrs["http.response.status_code"] = event["http_status"]
        parent = _parent(event)
        with self._lock:  # the id generator holds this call's ids while the span is made
            self._ids.trace_id = int(event["trace_id"], 16)
            self._ids.span_id = int(event["call_id"], 16)
            span = self._tracer.start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=attrs, start_time=start)
        if event["status"] in ("upstream_error", "rejected"):
            span.set_attribute("error.type", str(event["http_status"] or event["status"]))
            span.set_status(Status(StatusCode.ERROR, event["error"] or event["status"]))
        span.end(end_time=start + event["latency_ms"] * 1_000_000)

    def shutdown(self) -> None:
        """Export what is buffered, then stop (blocking: call it off the event loop)."""
        self.provider.shutdown()


def _ns(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _parent(event: Mapping[str, Any]) -> Any:
    """The client's span (from its traceparent) as the parent, or a root span in our trace."""
    if not event["parent_span_id"]:
        return trace.set_span_in_context(trace.INVALID_SPAN)
    ctx = SpanContext(
        trace_id=int(event["trace_id"], 16),
        span_id=int(event["parent_span_id"], 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx))
