"""Agent runs from the traffic: a call that carries back what an earlier response produced joins
that response's run, with no trace context from the client (issue 14).

The openai SDK drives the proxy; the simulated upstream answers a request that offers tools
with a tool call, and a request ending in a tool result with text. The ledger is read after
the writer flushed, as every report reads it."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from meterline.testing.mcp_server import MCPSimServer
from tests.conftest import MCP_AUTH, free_port
from tests.proxy.test_mcp import connect, mcp_config

TOOLS = [{"type": "function", "function": {"name": "echo", "description": "echo", "parameters": {"type": "object", "properties": {}}}}]


def client(proxy: Any, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, default_headers=headers or None)


def by_id(proxy: Any) -> dict[str, dict[str, Any]]:
    return {e["call_id"]: e for e in proxy.events()}


def agent_turns(c: openai.OpenAI, stream: bool) -> tuple[str, str]:
    """Two turns of a tool-calling agent: (first call id, second call id)."""
    messages: list[Any] = [{"role": "user", "content": "look it up"}]
    if stream:
        with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=messages, tools=TOOLS, stream=True) as r:
            first = r.headers["x-meterline-call-id"]
            chunks = [chunk for chunk in r.parse()]
        deltas = [tc for ch in chunks for choice in ch.choices for tc in (choice.delta.tool_calls or [])]
        call = {"id": deltas[0].id, "type": "function", "function": {"name": deltas[0].function.name, "arguments": "{}"}}
    else:
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        first = raw.headers["x-meterline-call-id"]
        tc = raw.parse().choices[0].message.tool_calls[0]
        call = {"id": tc.id, "type": "function", "function": {"name": tc.function.name, "arguments": tc.function.arguments}}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "found"},
    ]
    raw2 = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    assert raw2.parse().choices[0].message.content  # the final answer
    return first, raw2.headers["x-meterline-call-id"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_chat_turn_that_returns_a_tool_result_joins_the_run_of_the_call_that_asked(proxy, stream):
    first, second = agent_turns(client(proxy, proxy.key("nlp")), stream)

    events = by_id(proxy)
    assert events[second]["trace_id"] == events[first]["trace_id"]
    assert events[second]["parent_call_id"] == first
    assert (events[first]["link"], events[second]["link"]) == ("", "continuation")


def test_a_tool_call_id_copied_from_another_teams_traffic_links_nothing(proxy):
    first, _ = agent_turns(client(proxy, proxy.key("nlp")), stream=False)
    theirs = by_id(proxy)[first]
    tc_id = "copied"  # what they can learn of the other run is its ids: replay them under another team
    c = client(proxy, proxy.key("web"))
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], tools=TOOLS)
    tc_id = raw.parse().choices[0].message.tool_calls[0].id
    nlp = client(proxy, proxy.key("nlp"))
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": tc_id, "type": "function", "function": {"name": "echo", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": tc_id, "content": "found"},
    ]
    third = nlp.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages).headers["x-meterline-call-id"]

    events = by_id(proxy)
    assert (events[third]["parent_call_id"], events[third]["link"]) == ("", "")
    assert events[third]["trace_id"] not in {theirs["trace_id"], events[raw.headers["x-meterline-call-id"]]["trace_id"]}


def test_a_responses_call_naming_the_previous_response_continues_its_run(proxy):
    c = client(proxy, proxy.key("nlp"))
    raw = c.responses.with_raw_response.create(model="gpt-4o-mini", input="hello")
    rid = raw.parse().id
    raw2 = c.responses.with_raw_response.create(model="gpt-4o-mini", input="and then?", previous_response_id=rid)
    with c.responses.with_streaming_response.create(model="gpt-4o-mini", input="more", previous_response_id=raw2.parse().id, stream=True) as r:
        third = r.headers["x-meterline-call-id"]
        list(r.parse())
    first, second = raw.headers["x-meterline-call-id"], raw2.headers["x-meterline-call-id"]

    events = by_id(proxy)
    assert {events[i]["trace_id"] for i in (first, second, third)} == {events[first]["trace_id"]}
    assert [events[i]["parent_call_id"] for i in (first, second, third)] == ["", first, second]
    assert [events[i]["link"] for i in (first, second, third)] == ["", "continuation", "continuation"]


def test_calls_naming_one_run_in_the_header_share_it_and_traceparent_still_comes_first(proxy):
    c = client(proxy, proxy.key("nlp"), **{"X-Meterline-Run": "task-42"})
    ids = [
        c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}]).headers["x-meterline-call-id"]
        for i in range(3)
    ]
    tp = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    traced = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}], extra_headers={"traceparent": tp}
    ).headers["x-meterline-call-id"]
    other = client(proxy, proxy.key("nlp"), **{"X-Meterline-Run": "task-43"})
    lone = other.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}]).headers["x-meterline-call-id"]

    events = by_id(proxy)
    run = {events[i]["trace_id"] for i in ids}
    assert len(run) == 1 and events[lone]["trace_id"] not in run
    assert [events[i]["link"] for i in ids] == ["", "header", "header"]
    assert [events[i]["parent_call_id"] for i in ids] == ["", ids[0], ids[0]]
    assert events[traced]["trace_id"] == "ab" * 16


def test_two_proxies_on_one_ledger_link_a_run_whichever_writes_first(make_proxy, tmp_path):
    # Two processes' worth of memory: each proxy sees only its own calls; the ledger links them.
    a = make_proxy()
    b = make_proxy(server={"spool_dir": str(tmp_path / "spool-b")})
    key = a.key("nlp")
    b.app.state.runtime.keys.refresh()
    messages: list[Any] = [{"role": "user", "content": "go"}]
    raw = client(a, key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    tc = raw.parse().choices[0].message.tool_calls[0]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": tc.id, "type": "function", "function": {"name": "echo", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": tc.id, "content": "found"},
    ]
    second = client(b, key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    # A third turn back on the first proxy, which never saw the second: it too finds its run.
    tc2 = second.parse().choices[0].message
    assert tc2.content
    first_id, second_id = raw.headers["x-meterline-call-id"], second.headers["x-meterline-call-id"]

    b.flush()  # the continuation lands before the call it continues
    a.flush()

    events = by_id(a)
    assert events[second_id]["parent_call_id"] == first_id
    assert events[second_id]["link"] == "continuation"
    assert events[second_id]["trace_id"] == events[first_id]["trace_id"]


async def test_an_mcp_tool_call_joins_the_run_of_the_llm_call_that_asked_for_it(make_proxy):
    port = free_port()
    proxy = make_proxy(mcp_servers=mcp_config(f"http://127.0.0.1:{port}/mcp"))
    sim = MCPSimServer(port=port, llm_base_url=proxy.url + "/v1", llm_api_key=proxy.key("web"),
                       expected_auth=MCP_AUTH.removeprefix("Bearer ")).start()  # fmt: skip
    try:
        key = proxy.key("nlp")
        tools = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object", "properties": {}}}}]
        oc = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
        raw = await oc.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], tools=tools)
        tc = raw.parse().choices[0].message.tool_calls[0]
        import json

        async with connect("modern", f"{proxy.url}/mcp/sim", key) as mcp:
            await mcp.call_tool(tc.function.name, json.loads(tc.function.arguments))
            await mcp.call_tool("echo", {"text": "never asked"})
        await oc.close()
    finally:
        sim.stop()

    asked = raw.headers["x-meterline-call-id"]
    events = proxy.events()
    tool_calls = [e for e in events if e["method"] == "tools/call"]
    linked, unasked = tool_calls
    assert (linked["parent_call_id"], linked["link"]) == (asked, "tool_request")
    assert linked["trace_id"] == by_id(proxy)[asked]["trace_id"]
    assert (unasked["parent_call_id"], unasked["link"]) == ("", "")


def test_metrics_count_the_links_made_at_admission(proxy):
    first, second = agent_turns(client(proxy, proxy.key("nlp")), stream=False)
    text = httpx.get(proxy.url + "/metrics").text
    assert 'meterline_run_links_total{link="continuation"} 1.0' in text
    assert "meterline_run_clues " in text and 'meterline_run_links_total{link="tool_request"} 0.0' in text
