"""MCP traffic shaped to slip past metering or into another key's session (issue 20 items 6, 7,
14, 19), against a server that echoes ids as JavaScript does (tests/proxy/hostile_mcp.py)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from meterline.costing.money import from_pico
from tests.proxy.hostile_mcp import HostileMCP

PRICE = Decimal("0.01")


@pytest.fixture
def mcp_proxy(make_proxy):
    with HostileMCP() as server:
        proxy = make_proxy(mcp_servers={"js": {"url": server.url, "price_per_call_usd": str(PRICE), "read_timeout": 10}})
        yield proxy, server


def _post(proxy, key: str, body: bytes, **headers) -> httpx.Response:
    return httpx.post(
        proxy.url + "/mcp/js",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                 "accept": "application/json, text/event-stream", **headers},  # fmt: skip
        timeout=30,
    )


def _tool_call(id_text: str, tool: str = "echo") -> str:
    return '{"jsonrpc":"2.0","id":' + id_text + ',"method":"tools/call","params":{"name":"' + tool + '","arguments":{}}}'


def test_a_batch_of_calls_sharing_one_id_is_one_row_each(mcp_proxy):
    """Item 6: 50 results, but 1 ledger row ($0.01 instead of $0.50)."""
    proxy, _ = mcp_proxy
    r = _post(proxy, proxy.key(), ("[" + ",".join(_tool_call("7") for _ in range(50)) + "]").encode())
    assert r.status_code == 200 and len(r.json()) == 50
    rows = [e for e in proxy.events() if e["tool"] == "echo"]
    assert len(rows) == 50 and {e["status"] for e in rows} == {"ok"}
    assert sum(from_pico(e["cost_pico"]) for e in rows) == 50 * PRICE


@pytest.mark.parametrize("id_text", ["1.0", "1e0", "12345678901234567890123", "-0.0", '"1"'])
def test_ids_a_javascript_server_echoes_differently_still_end_their_call(mcp_proxy, id_text):
    """Item 7: the server's normal result was recorded as upstream_error, $0."""
    proxy, _ = mcp_proxy
    r = _post(proxy, proxy.key(), _tool_call(id_text).encode())
    assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "done"
    (row,) = [e for e in proxy.events() if e["tool"] == "echo"]
    assert (row["status"], from_pico(row["cost_pico"])) == ("ok", PRICE)


def test_a_mixed_batch_with_repeated_and_rounded_ids_meters_every_call(mcp_proxy):
    proxy, _ = mcp_proxy
    ids = ["1", "1.0", "1e0", '"1"', "12345678901234567890123", "12345678901234567890124"]
    r = _post(proxy, proxy.key(), ("[" + ",".join(_tool_call(i) for i in ids) + "]").encode())
    assert r.status_code == 200 and len(r.json()) == len(ids)
    rows = [e for e in proxy.events() if e["tool"] == "echo"]
    assert len(rows) == len(ids) and {e["status"] for e in rows} == {"ok"}


def test_a_non_ascii_forwarded_header_is_passed_on_and_the_call_recorded(mcp_proxy):
    """Item 14: httpx refused the str (UnicodeEncodeError, a 500), and the admitted call was
    never recorded."""
    proxy, server = mcp_proxy
    r = _post(proxy, proxy.key(), _tool_call("3").encode(), **{"mcp-name": "caf\u00e9".encode()})
    assert r.status_code == 200
    assert server.headers[-1]["mcp-name"] == "caf\u00e9"  # the UTF-8 bytes as sent
    (row,) = [e for e in proxy.events() if e["tool"] == "echo"]
    assert row["status"] == "ok"


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":' + b"[" * 1000 + b"]" * 1000 + b"}}",
        b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"echo"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"free","name":"echo"}}',
        b"not json",
    ],
    ids=["nested_1000_deep", "duplicate_method", "duplicate_tool_name", "not_json"],
)
def test_a_body_the_proxy_cannot_meter_is_refused_not_forwarded(mcp_proxy, body):
    """Item 14 (RecursionError, a 500) and item 12's duplicate keys, on the MCP route."""
    proxy, server = mcp_proxy
    r = _post(proxy, proxy.key(), body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert server.bodies == []


def test_a_session_answers_only_the_key_that_opened_it(mcp_proxy):
    """Item 19: any key holder presenting someone's Mcp-Session-Id spoke in their session."""
    proxy, server = mcp_proxy
    owner, other = proxy.key("nlp"), proxy.key("web")
    init = _post(proxy, owner, b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}')
    session = init.headers["mcp-session-id"]
    r = _post(proxy, other, _tool_call("1").encode(), **{"mcp-session-id": session})
    assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"
    assert httpx.get(proxy.url + "/mcp/js", headers={"authorization": f"Bearer {other}", "mcp-session-id": session}).status_code == 404
    assert len(server.bodies) == 1  # only the owner's initialize reached the server
    assert _post(proxy, owner, _tool_call("1").encode(), **{"mcp-session-id": session}).status_code == 200
