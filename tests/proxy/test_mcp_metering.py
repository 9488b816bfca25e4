"""The JSON-RPC side of MCP metering, without sockets."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from meterline.costing.config import MCPServerConfig
from meterline.proxy.mcp_metering import (
    Parked,
    Rounds,
    dumps,
    id_key,
    is_request,
    is_response,
    loads,
    messages,
    outcome,
    price,
    set_meta_traceparent,
)
from meterline.proxy.meter import Call
from meterline.proxy.sse import SSEEvents, event_data, replace_event_data


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_replacing_event_data_keeps_the_other_fields_and_line_endings(eol):
    event = b"id: 7" + eol + b"event: message" + eol + b"data: {\"a\":" + eol + b"data: 1}" + eol + eol
    out = replace_event_data(event, b'{"a":2}')
    assert out == b"id: 7" + eol + b"event: message" + eol + b'data: {"a":2}' + eol + eol
    assert event_data(out) == b'{"a":2}'


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_events_split_anywhere_come_out_whole(eol):
    stream = (b"event: message" + eol + b"data: {}" + eol + eol) * 3
    for cut in range(1, len(stream)):
        sse = SSEEvents()
        events = sse.feed(stream[:cut]) + sse.feed(stream[cut:])
        assert b"".join(events) == stream and len(events) == 3, cut


def test_messages_requests_and_responses():
    batch = loads(b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/x"},'
                  b'{"jsonrpc":"2.0","id":"1","result":{}},7]')  # fmt: skip
    msgs = messages(batch)
    assert [is_request(m) for m in msgs] == [True, False, False]
    assert [is_response(m) for m in msgs] == [False, False, True]
    assert id_key(msgs[0]) != id_key(msgs[2])  # 1 and "1" are different ids
    assert messages(loads(b"not json")) == []


def test_rewriting_keeps_big_integers_exact():
    doc = loads(b'{"id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":123456789012345678901234567890}}}')
    assert set_meta_traceparent(doc, "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert b"123456789012345678901234567890" in dumps(doc)
    assert not set_meta_traceparent({"method": "x", "params": [1]}, "tp")  # positional params stay


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ({"id": 1, "result": {"content": []}}, "ok"),
        ({"id": 1, "result": {"content": [], "isError": True}}, "tool_error"),
        ({"id": 1, "error": {"code": -32602, "message": "bad"}}, "protocol_error"),
        ({"id": 1, "result": {"resultType": "input_required", "requestState": "s"}}, "input_required"),
        ({"id": 1, "result": {"resultType": "complete"}}, "ok"),
    ],
)
def test_outcomes(message, status):
    assert outcome(message)[0] == status


def test_prices_per_tool_then_per_call_then_per_method():
    server = MCPServerConfig(url="http://x", price_per_call_usd=Decimal("0.001"),
                             tool_prices={"big": Decimal("0.5")}, method_prices={"resources/read": Decimal("0.0001")})  # fmt: skip
    assert price(server, "tools/call", "big") == Decimal("0.5")
    assert price(server, "tools/call", "small") == Decimal("0.001")
    assert price(server, "resources/read", "") == Decimal("0.0001")
    assert price(server, "tools/list", "") == 0
    assert price(MCPServerConfig(url="http://x"), "tools/call", "t") == 0


def test_a_parked_round_resumes_only_for_the_key_that_started_it():
    rounds = Rounds()
    call = _call(key=SimpleNamespace(id="k1"), started=0.0, request_bytes=5)
    rounds.park("state", Parked(call, 10))
    assert rounds.resume("state", "k2") is None
    parked = rounds.resume("state", "k1", 7)
    assert parked is not None and parked.call.call_id == call.call_id and parked.response_bytes == 10
    assert parked.call.started > 0  # idle time left out
    assert parked.call.request_bytes == 12  # both rounds' requests
    assert rounds.resume("state", "k1") is None  # once


def _call(**fields):
    base = dict.fromkeys(Call._fields, "")
    base |= {"call_id": "c1", "request_bytes": 0, "max_output_tokens": 0, "reserved": Decimal(0), "ts": None, "started": 0.0}
    return Call(**(base | fields))
