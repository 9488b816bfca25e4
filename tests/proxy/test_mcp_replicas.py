"""Two proxy replicas on one ledger: a tool call served by one, its LLM sub-calls by the other."""

from __future__ import annotations

import base64

import openai

from meterline.testing.mcp_server import MCPSimServer
from tests.conftest import MCP_AUTH, free_port
from tests.proxy.test_mcp import connect, mcp_config, tool_rows


def replicas(make_proxy, tmp_path, port):
    a, b = (
        make_proxy(mcp_servers=mcp_config(f"http://127.0.0.1:{port}/mcp"), server={"spool_dir": str(tmp_path / name)})
        for name in ("spool-a", "spool-b")
    )
    return a, b


async def test_subcalls_served_by_another_replica_are_linked_and_charged_to_the_root_caller(make_proxy, tmp_path):
    port = free_port()
    a, b = replicas(make_proxy, tmp_path, port)
    agent = a.key("nlp")
    tool_key = a.key("web")
    b.app.state.runtime.keys.refresh()
    with MCPSimServer(port=port, llm_base_url=b.url + "/v1", llm_api_key=tool_key,
                      expected_auth=MCP_AUTH.removeprefix("Bearer ")):  # fmt: skip
        async with connect("modern", f"{a.url}/mcp/sim", agent) as client:
            await client.call_tool("summarize", {"text": "t", "calls": 2})
    b.flush()
    events = a.events()
    (tool,) = tool_rows(events)
    llm = [e for e in events if e["kind"] == "llm"]
    assert len(llm) == 2
    for e in llm:
        assert e["parent_call_id"] == tool["call_id"]
        assert (e["team"], e["department"], e["key_team"]) == ("nlp", "research", "web")


async def test_a_payer_claim_without_a_valid_signature_is_ignored(make_proxy, tmp_path):
    _, b = replicas(make_proxy, tmp_path, free_port())
    key = b.key("web")
    forged = "meterline=" + base64.urlsafe_b64encode(b"nlp").decode().rstrip("=") + ".AAAAAAAAAAAAAAAAAAAAAA"
    llm = openai.OpenAI(base_url=b.url + "/v1", api_key=key, max_retries=0)
    llm.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": forged},
    )
    (row,) = b.events()
    assert (row["team"], row["parent_call_id"]) == ("web", "")
