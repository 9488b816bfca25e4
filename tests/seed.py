"""Seeding a ledger directly, for report and dashboard tests that need no traffic."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterline.costing import PICO, period_of, write_events

DEFAULTS: dict[str, Any] = {
    "kind": "llm",
    "status": "ok",
    "department": "research",
    "team": "nlp",
    "cost_center": "CC-100",
    "key_team": "",
    "project": "",
    "user": "",
    "key_id": "key_seed",
    "provider": "sim",
    "model": "gpt-4o-mini",
    "tool": "",
    "method": "/chat/completions",
    "input_tokens": 100,
    "cached_input_tokens": 0,
    "output_tokens": 50,
    "reasoning_tokens": 0,
    "cache_write_tokens": 0,
    "priced": True,
    "price_version": "seed",
    "usage_source": "reported",
    "trace_id": "",
    "parent_span_id": "",
    "parent_call_id": "",
    "tags": "",
    "http_status": 200,
    "latency_ms": 10,
    "request_bytes": 100,
    "response_bytes": 200,
    "error": "",
    "adjustment": False,
}


def event(cost_usd: str | Decimal, ts: datetime | None = None, **fields: Any) -> dict[str, Any]:
    ts = ts or datetime.now(UTC)
    row = {**DEFAULTS, **fields, "call_id": fields.get("call_id") or secrets.token_hex(8), "ts": ts}
    row["key_team"] = row["key_team"] or row["team"]
    # As the proxy records it: a linked parent is the call whose span is the parent span.
    row["parent_span_id"] = row["parent_span_id"] or row["parent_call_id"]
    row["cost_pico"] = int(Decimal(cost_usd) / PICO)
    row.setdefault("charge_period", period_of(ts))
    return row


def spooled(**fields: Any) -> dict[str, Any]:
    """An event as the proxy spools it: the writer assigns its period and adjustment."""
    row = event("0.01", **fields)
    del row["charge_period"], row["adjustment"]
    return row


def seed(engine: Any, rows: list[dict[str, Any]]) -> int:
    return write_events(engine, rows)


class RunSeed:
    """The events of one agent run, call by call, as the proxy links them: `llm` and `tool`
    return the call's id for its sub-calls to name as `parent` (with `link` saying how it was
    found); calls are 1.5 s apart, each taking 1.2 s."""

    def __init__(self, number: int, t0: datetime, link_root: str = "", **payer: Any):
        self.number, self.t0, self.payer, self.rows = number, t0, payer, []
        self.trace_id = f"{number:02x}" * 16

    def _add(self, cost: str, parent: str, link: str, parent_span: str, fields: dict[str, Any]) -> str:
        call_id = f"{self.number:02x}{len(self.rows) + 1:014x}"
        ts = self.t0 + timedelta(seconds=1.5 * len(self.rows))
        charged = {k: fields.pop(k) for k in ("department", "team", "cost_center") if k in fields} or self.payer
        self.rows.append(event(
            cost, ts, call_id=call_id, trace_id=self.trace_id, parent_call_id=parent,
            parent_span_id=parent_span or parent, link=link if parent else "", latency_ms=1200,
            **{**self.payer, **charged}, **fields,
        ))  # fmt: skip
        return call_id

    def llm(self, cost: str, parent: str = "", link: str = "", model: str = "gpt-4o", parent_span: str = "", **fields: Any) -> str:
        return self._add(cost, parent, link, parent_span, {"model": model, **fields})

    def tool(self, cost: str, server: str, name: str, parent: str = "", link: str = "", parent_span: str = "", **fields: Any) -> str:
        mcp = {"kind": "mcp", "method": "tools/call", "provider": server, "model": "", "tool": name,
               "input_tokens": 0, "output_tokens": 0}  # fmt: skip
        return self._add(cost, parent, link, parent_span, {**mcp, **fields})


def agent_runs(t0: datetime) -> list[RunSeed]:
    """Agent runs as SDKs make them, linked every way the proxy links calls:

    1. research (team nlp, no client instrumentation): LLM turns linked by `continuation`, the
       tool calls each turn asked for by `tool_request`, and the LLM calls the tool servers
       make while serving them by `traceparent` (their keys are team web's; the root caller pays).
    2. a support bot naming its run in `X-Meterline-Run` (team web): `header` links.
    3. an OpenTelemetry-instrumented client (team vision): its own span is every call's parent
       (roots, in one trace), a tool server's sub-calls linked by `traceparent` and, with no
       signed payer, charged to their key's team (web).
    4. a run of 13 calls (team nlp): a tool call with four LLM sub-calls, another with five
       (one of them a tool call of its own, with an LLM call).
    """
    nlp = {"department": "research", "team": "nlp", "cost_center": "CC-100"}
    web = {"department": "product", "team": "web", "cost_center": "CC-200"}
    vision = {"department": "research", "team": "vision", "cost_center": "CC-100"}
    server = {"key_team": "web"}
    a = RunSeed(0x51, t0, **nlp)
    l1 = a.llm("0.021500")
    t1 = a.tool("0.002000", "docs", "search", l1, "tool_request")
    a.llm("0.000850", t1, "traceparent", "gpt-4o-mini", **server)
    a.llm("0.000910", t1, "traceparent", "gpt-4o-mini", **server)
    t2 = a.tool("0.002000", "docs", "search", l1, "tool_request")
    a.llm("0.000790", t2, "traceparent", "gpt-4o-mini", **server)
    l2 = a.llm("0.034250", l1, "continuation")
    t3 = a.tool("0.004500", "web", "fetch_page", l2, "tool_request")
    a.llm("0.001210", t3, "traceparent", "gpt-4o-mini", **server)
    a.llm("0.001180", t3, "traceparent", "gpt-4o-mini", **server)
    a.llm("0.041875", l2, "continuation")

    b = RunSeed(0x52, t0 + timedelta(minutes=20), **web)
    h1 = b.llm("0.000620", model="gpt-4o-mini")
    h2 = b.llm("0.000730", h1, "header", "gpt-4o-mini")
    b.tool("0.001000", "crm", "lookup_order", h1, "header")
    b.tool("0.001000", "crm", "refund_status", h1, "header")
    b.llm("0.000950", h2, "header", "gpt-4o-mini")

    c = RunSeed(0x53, t0 + timedelta(minutes=40), **vision)
    span = "5" * 16  # the client's own span: not a call in the ledger
    c.llm("0.012000", parent_span=span, model="claude-sonnet-4")
    t5 = c.tool("0.003000", "vision", "detect_objects", parent_span=span)
    c.llm("0.004400", t5, "traceparent", "gpt-4o", key_team="web", **web)
    c.llm("0.003900", t5, "traceparent", "gpt-4o", key_team="web", **web)
    c.llm("0.015500", parent_span=span, model="claude-sonnet-4")

    d = RunSeed(0x54, t0 + timedelta(hours=1), **nlp)
    top = d.llm("0.018000")
    t6 = d.tool("0.002500", "github", "search_issues", top, "tool_request")
    for cost in ("0.000700", "0.000820", "0.000640", "0.000760"):
        d.llm(cost, t6, "traceparent", "gpt-4o-mini", **server)
    t7 = d.tool("0.003000", "github", "summarize_pr", top, "tool_request")
    d.llm("0.002100", t7, "traceparent", "gpt-4o-mini", **server)
    t8 = d.tool("0.000500", "github", "get_file", t7, "traceparent", **server)
    d.llm("0.001900", t8, "traceparent", "gpt-4o-mini", **server)
    d.llm("0.002300", t7, "traceparent", "gpt-4o-mini", **server)
    d.llm("0.002600", t7, "traceparent", "gpt-4o-mini", **server)
    d.llm("0.026000", top, "continuation")
    return [a, b, c, d]
