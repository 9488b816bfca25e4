"""Agent runs assemble themselves from the traffic of real agent SDKs, with no client
instrumentation (issue 14): the OpenAI Agents SDK 0.24 and pydantic-ai 2.68 through
`meterline serve`, checked against the ledger through the CLI.

What the SDKs send (captured from the simulator's recorded requests, and their MCP requests):
- Neither SDK sends `traceparent`, `tracestate` or any run/session header, to the LLM or to MCP.
- Agents SDK, Chat Completions model: every turn resends the whole conversation; the assistant
  message holds `tool_calls` (the ids the LLM minted, arguments as it sent them) and one `tool`
  message per call with its `tool_call_id`. MCP tool results come back as a list of content
  parts (`[{"type": "text", ...}]`), function tools as a string. Streamed: `stream: true` with
  `stream_options.include_usage`. Tools are listed MCP tools first, then function tools.
- Agents SDK, Responses model: no `previous_response_id` (and no `store`) unless the caller
  passes one: each turn resends the input with the `function_call` items (their `id` fc_... and
  `call_id`) and `function_call_output` items by `call_id`. It also sends `include`.
- pydantic-ai 2.68 (`MCPToolset`, which replaced `MCPServerStreamableHTTP`; built on fastmcp):
  Chat: the same shape as the Agents SDK (tool results as strings), always `stream: true`,
  `tool_choice: "auto"`; function tools listed first, then the toolset's. Responses: no
  `previous_response_id` either; its `function_call` items carry `call_id` but no `id`.
- MCP: both use the 2026-07-28 era through the mcp 2.x SDK (`server/discover`, no session).
  Tool names reach `tools/call` unprefixed, with the arguments the LLM produced (the same JSON
  object, key order kept). The Agents SDK lists tools before every turn; pydantic-ai once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from meterline.costing import create_engine, create_schema
from tests.agents import sdks
from tests.agents.conftest import Run, Stack, month
from tests.agents.expect import cost, score

# A socket of one of the agent SDKs' HTTP clients is now and then left to the garbage collector
# (seen once in the full suite, in test_a_runs_cost_is_its_whole_tree...; its maker is not found yet):
# only this message, only here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed transport <_SelectorSocketTransport:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <function _SelectorTransport.__del__:pytest.PytestUnraisableExceptionWarning"),
]

TARGET = 0.95  # issue 14: at least 95% of calls in the right run with the right parent
PROMPT = "sim:tools=3,turns=2"  # every LLM turn asks for all three tools, twice, then answers


async def one_run(stack: Stack, sdk: str, tag: str, *, api: str = "chat", stream: bool = False,
                  llm_transport: Any = None, headers: dict[str, str] | None = None) -> Run:
    run = Run(tag)
    prompt = f"{tag}: plan the trip {PROMPT}"
    kw: dict[str, Any] = {"prompt": prompt, "api": api, "headers": headers, "llm_transport": llm_transport}
    if sdk == "agents":
        await sdks.openai_agents(run, stack.llm_url(), stack.mcp_url(), stack.agent_key, stream=stream, **kw)
    else:
        await sdks.pydantic_ai(run, stack.llm_url(), stack.mcp_url(), stack.agent_key, **kw)
    return run


def assert_linked(stack: Stack, runs: list[Run], *, share: float = 1.0) -> None:
    s = score(runs, stack.subcalls(), stack.events())
    print(s.summary())  # the share, in the test's output (pytest -s, or on failure)
    assert not s.wrong_run, s.summary()
    assert s.share >= share, s.summary()


@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_an_openai_agents_sdk_run_assembles_itself(make_stack, api, stream):
    stack = make_stack()
    run = await one_run(stack, "agents", f"agents-{api}-{stream}", api=api, stream=stream)
    assert sum(m.kind == "llm" for m in run.made) == 3
    assert [m.tool for m in run.made if m.method == "tools/call"] == ["lookup", "summarize"] * 2
    assert_linked(stack, [run])


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_a_pydantic_ai_run_assembles_itself(make_stack, api):
    stack = make_stack()
    run = await one_run(stack, "pydantic-ai", f"pydantic-{api}", api=api)
    assert sum(m.kind == "llm" for m in run.made) == 3
    assert_linked(stack, [run])


MIX = [("agents", "chat", False), ("agents", "chat", True), ("agents", "responses", False),
       ("agents", "responses", True), ("pydantic-ai", "chat", False), ("pydantic-ai", "responses", False)]


async def concurrent_runs(stack: Stack, llm_transport: Any = None) -> list[Run]:
    return list(await asyncio.gather(*(
        one_run(stack, sdk, f"run{i}-{sdk}-{api}{'-stream' if stream else ''}", api=api, stream=stream,
                llm_transport=llm_transport)
        for i, (sdk, api, stream) in enumerate(MIX)
    )))


async def test_concurrent_runs_from_one_key_each_land_in_their_own_run(make_stack):
    stack = make_stack()
    runs = await concurrent_runs(stack)
    assert_linked(stack, runs, share=TARGET)


class Alternate(httpx.AsyncBaseTransport):
    """Sends each request to the next of several proxies (same path): calls of one run alternate."""

    def __init__(self, urls: list[str]):
        self.ports = itertools.cycle([httpx.URL(u).port for u in urls])
        # Idle connections go before the server's keep-alive ends them (no stale-socket ReadError).
        self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(keepalive_expiry=1))
        self.sent: dict[int, int] = defaultdict(int)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = next(self.ports)
        self.sent[port] += 1
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_runs_span_two_replicas_sharing_postgresql(make_stack, postgres_url):
    engine = create_engine(postgres_url)
    create_schema(engine)
    engine.dispose()
    stack = make_stack(replicas=2, database=postgres_url)  # the tool server's sub-calls go to r1
    alternate = Alternate([r.url for r in stack.replicas])
    runs = await concurrent_runs(stack, llm_transport=alternate)
    a, b = stack.replicas
    assert len(alternate.sent) == 2 and min(alternate.sent.values()) >= 8  # both served LLM turns
    # The ledger completes the links one replica's memory could not see, once both writers flushed.
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        s = score(runs, stack.subcalls(), stack.events(a))
        if (s.share >= TARGET and not s.wrong_run) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(1)
    print(s.summary())
    assert not s.wrong_run, s.summary()
    assert s.share >= TARGET, s.summary()
    view = lambda events: {k: (e["trace_id"], e["parent_call_id"], e.get("link")) for k, e in events.items()}  # noqa: E731
    assert view(stack.events(b)) == view(stack.events(a))  # every replica reports the same runs


async def costed_run(stack: Stack) -> tuple[Run, str, dict[str, Any], list[dict[str, Any]]]:
    """One run; (run, its root call, its report runs entry, its ledger rows)."""
    run = await one_run(stack, "agents", "costed", api="chat")
    events = stack.events()
    root = run.made[[m.kind for m in run.made].index("llm")].call_id
    rows = [e for e in events.values() if e["trace_id"] == events[root]["trace_id"]]
    (got,) = [r for r in json.loads(stack.proxy.cli("report", "runs", "--month", month(), "--json").stdout)
              if r["trace_id"] == events[root]["trace_id"]]
    return run, root, got, rows


async def test_a_runs_cost_is_its_whole_tree_in_report_runs_and_report_call(make_stack):
    stack = make_stack()
    run, root, got, rows = await costed_run(stack)
    assert len(rows) >= 9  # 3 turns, 4 tool calls, 2 sub-calls
    total = cost(rows)
    assert Decimal(got["cost_usd"]) == total and got["calls"] == len(rows)
    tree = json.loads(stack.proxy.cli("report", "call", root, "--json").stdout)
    assert Decimal(tree["total_usd"]) == total

    def ids(node: dict[str, Any]) -> set[str]:
        return {node["call_id"]}.union(*(ids(c) for c in node["children"]))

    assert ids(tree) == {e["call_id"] for e in rows}
    text = stack.proxy.cli("report", "call", root).stdout
    assert all(e["call_id"] in text for e in rows)


async def test_a_runs_cost_by_model_and_by_tool_in_report_runs(make_stack):
    stack = make_stack()
    run, root, got, rows = await costed_run(stack)
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    by_tool: dict[str, Decimal] = defaultdict(Decimal)
    for e in rows:
        if e["kind"] == "llm":
            by_model[e["model"]] += Decimal(e["cost_usd"])
        if e["tool"]:
            by_tool[e["tool"]] += Decimal(e["cost_usd"])

    # by model and by tool (issue 14: the same numbers in report runs, the admin API, the dashboard)
    assert {m["model"]: Decimal(m["cost_usd"]) for m in got["by_model"]} == by_model
    # by tool: each tool's own cost, and its sub-calls' (summarize's LLM calls) apart
    subcall_usd = cost([e for e in rows if e["parent_call_id"] in {m.call_id for m in run.made if m.tool == "summarize"}])
    tools = {t["tool"]: t for t in got["by_tool"]}
    assert set(tools) == set(by_tool)
    assert {k: Decimal(t["own_usd"]) for k, t in tools.items()} == by_tool
    assert Decimal(tools["summarize"]["subcall_usd"]) == subcall_usd and Decimal(tools["lookup"]["subcall_usd"]) == 0


def chat(stack: Stack, headers: dict[str, str], text: str = "hello") -> str:
    client = openai.OpenAI(base_url=stack.llm_url(), api_key=stack.agent_key, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model=sdks.MODEL, messages=[{"role": "user", "content": text}], extra_headers=headers
    )
    raw.parse()
    return raw.headers["x-meterline-call-id"]


def test_x_meterline_run_joins_calls_and_traceparent_wins_over_it(make_stack):
    stack = make_stack()
    first = [chat(stack, {"X-Meterline-Run": "nightly-42"}, f"step {i}") for i in range(3)]
    other = chat(stack, {"X-Meterline-Run": "nightly-43"})
    parent = chat(stack, {})
    trace = stack.events()[parent]["trace_id"]
    both = chat(stack, {"X-Meterline-Run": "nightly-42", "traceparent": f"00-{trace}-{parent}-01"})
    events = stack.events()
    joined = [events[c] for c in first]
    assert len({e["trace_id"] for e in joined}) == 1
    assert [e["link"] for e in joined[1:]] == ["header", "header"] and joined[0]["link"] in ("", "header")
    assert events[other]["trace_id"] != joined[0]["trace_id"]
    assert (events[both]["trace_id"], events[both]["parent_call_id"], events[both]["link"]) == (trace, parent, "traceparent")
