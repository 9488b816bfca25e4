"""OpenTelemetry spans for metered calls: ids that match the ledger, GenAI attributes, OTLP export."""

from __future__ import annotations

import gzip
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from meterline.proxy.telemetry import Telemetry, traces_url
from tests.proxy.test_chat import client

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def spans(proxy):
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(SimpleSpanProcessor(exporter), service_name="meterline-test")
    proxy.app.state.runtime.meter.on_record.append(telemetry.record)
    yield exporter
    telemetry.shutdown()


def test_each_call_is_a_span_with_the_ledger_ids_and_genai_attributes(proxy, spans):
    c = client(proxy, proxy.key("vision"), default_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    c.chat.completions.create(model="house", messages=[{"role": "user", "content": "hi sim:cached=2"}])
    (event,) = proxy.events()
    (span,) = spans.get_finished_spans()
    ctx = span.get_span_context()
    assert (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") == (CLIENT_TRACE, event["call_id"])
    assert f"{span.parent.span_id:016x}" == CLIENT_SPAN and span.parent.is_remote
    assert span.name == "chat house-model" and span.kind is SpanKind.CLIENT
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "sim"
    assert a["gen_ai.request.model"] == "house-model"
    assert a["gen_ai.response.model"] == "sim-large"  # what the upstream ran
    assert a["gen_ai.usage.input_tokens"] == event["input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] == event["output_tokens"] > 0
    assert a["gen_ai.usage.cache_read.input_tokens"] == 2
    assert Decimal(a["meterline.cost_usd"]) == Decimal(event["cost_pico"]) / 10**12 > 0
    assert (a["meterline.team"], a["meterline.department"], a["meterline.call_id"]) == ("vision", "research", event["call_id"])
    ts = datetime.fromisoformat(str(event["ts"])).replace(tzinfo=UTC)
    assert span.start_time == (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    assert span.end_time >= span.start_time
    assert span.resource.attributes["service.name"] == "meterline-test"


def test_span_without_traceparent_is_a_root_in_the_calls_trace(proxy, spans):
    client(proxy, proxy.key()).embeddings.create(model="text-embedding-3-small", input="a b c")
    (event,) = proxy.events()
    (span,) = spans.get_finished_spans()
    assert span.parent is None
    assert f"{span.get_span_context().trace_id:032x}" == event["trace_id"]
    assert span.attributes["gen_ai.operation.name"] == "embeddings"


def test_failed_call_span_has_error_status(proxy, spans):
    with pytest.raises(openai.RateLimitError):
        client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:status=429"}])
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "429"


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[str, ExportTraceServiceRequest]]

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        self.got.append((self.path, req))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def otlp_receiver():
    handler = type("Receiver", (_Receiver,), {"got": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.got
    server.shutdown()
    server.server_close()


def test_spans_are_exported_over_otlp_http_when_configured(make_proxy, otlp_receiver):
    url, got = otlp_receiver
    proxy = make_proxy(telemetry={"otlp_endpoint": url, "service_name": "meterline-ci"})
    client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    (event,) = proxy.events()
    proxy.stop()  # shutting down exports what is still batched
    spans = [(p, rs, s) for p, req in got for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    ((path, resource_spans, span),) = spans
    assert path == "/v1/traces"
    assert (span.trace_id.hex(), span.span_id.hex()) == (event["trace_id"], event["call_id"])
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["gen_ai.request.model"].string_value == "gpt-4o-mini"
    assert attrs["gen_ai.usage.output_tokens"].int_value == event["output_tokens"]
    service = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}["service.name"]
    assert service == "meterline-ci"


def test_no_tracer_at_all_without_an_endpoint(proxy):
    assert proxy.app.state.runtime.telemetry is None


def test_traces_url_adds_the_standard_path_once():
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"


def test_mcp_events_become_spans_named_for_their_method_and_tool():
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(SimpleSpanProcessor(exporter))
    base = {
        "ts": datetime(2026, 11, 27, tzinfo=UTC), "kind": "mcp", "provider": "github", "model": "", "project": "",
        "call_id": "00f067aa0ba902b7", "trace_id": CLIENT_TRACE, "parent_span_id": "", "team": "nlp",
        "department": "research", "status": "ok", "usage_source": "reported", "priced": True, "cost_pico": 10**9,
        "http_status": 200, "error": "", "latency_ms": 3,
    }  # fmt: skip
    telemetry.record({**base, "method": "tools/call", "tool": "search"}, None)
    telemetry.record({**base, "method": "tools/list", "tool": "", "call_id": "00f067aa0ba902b8"}, None)
    call, listing = exporter.get_finished_spans()
    assert (call.name, call.attributes["gen_ai.operation.name"], call.attributes["gen_ai.tool.name"]) == (
        "tools/call search", "execute_tool", "search",
    )  # fmt: skip
    assert call.attributes["meterline.cost_usd"] == "0.001000"
    assert (listing.name, listing.attributes["mcp.method.name"]) == ("tools/list", "tools/list")
    assert "gen_ai.tool.name" not in listing.attributes
    telemetry.shutdown()
