"""Item 3 of issue 20: a call is charged to another team only on proof (our signed tracestate
member for that trace and that parent span), never because it names a call id."""

from __future__ import annotations

import httpx

from meterline.costing.config import Settings
from meterline.costing.org import Org
from meterline.costing.prices import PriceBook
from meterline.proxy.meter import Meter
from meterline.proxy.tracestate import payer_member

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _chat(proxy, key: str, **headers: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}", **headers})
    assert r.status_code == 200, r.text
    return r


def _row(proxy, r: httpx.Response) -> dict:
    (row,) = [e for e in proxy.events() if e["call_id"] == r.headers["x-meterline-call-id"]]
    return row


def test_naming_another_teams_call_id_as_parent_charges_nobody_else(proxy):
    """The probe: team outreach sent `traceparent: 00-<random trace>-<victim's call id>-01`
    and 830 calls were charged to victim, who was served on this very replica."""
    victim, attacker = proxy.key("nlp"), proxy.key("web")
    victims_call = _row(proxy, _chat(proxy, victim))
    for trace in (TRACE, victims_call["trace_id"]):  # another trace, or the victim's own
        row = _row(proxy, _chat(proxy, attacker, traceparent=f"00-{trace}-{victims_call['call_id']}-01"))
        assert (row["team"], row["key_team"]) == ("web", "web")


def test_a_signed_member_is_proof_only_for_its_own_trace_and_span(proxy):
    secret = proxy.app.state.runtime.meter.trace_secret
    key = proxy.key("web")
    span = "00f067aa0ba902b7"
    member = payer_member(secret, TRACE, span, "nlp")
    ok = _row(proxy, _chat(proxy, key, traceparent=f"00-{TRACE}-{span}-01", tracestate=f"other=1,{member}"))
    assert (ok["team"], ok["key_team"], ok["parent_call_id"]) == ("nlp", "web", span)
    copied = [
        {"traceparent": f"00-{'1' * 32}-{span}-01", "tracestate": member},  # into another trace
        {"traceparent": f"00-{TRACE}-{'2' * 16}-01", "tracestate": member},  # under another span
        {"traceparent": f"00-{TRACE}-{span}-01", "tracestate": member[:-2] + "AA"},  # forged MAC
        {"traceparent": f"00-{TRACE}-{span}-01", "tracestate": member.replace("bmxw", "dmlzaW9u")},  # another team
    ]
    for headers in copied:
        row = _row(proxy, _chat(proxy, key, **headers))
        assert (row["team"], row["key_team"]) == ("web", "web"), headers


def test_without_a_configured_secret_each_process_signs_with_its_own():
    """No trace secret and no admin key: proof is still required, with a random key no client
    knows (so sub-calls are linked in-process only)."""
    one, two = (Meter(None, PriceBook([]), Org(Settings())) for _ in range(2))  # type: ignore[arg-type]
    assert len(one.trace_secret) == 32 and one.trace_secret != two.trace_secret
