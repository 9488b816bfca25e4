"""An upstream that means harm: it redirects, forges our headers, echoes our key, streams without
end. Each test names the item of issue 20 it covers; the streaming caps are in test_caps.py."""

from __future__ import annotations

import httpx

from tests.conftest import PROVIDER_KEY
from tests.proxy.junk_upstream import json_response


def _post(proxy, key: str, marker: str, **extra):
    body = {"model": "junk-model", "messages": [{"role": "user", "content": marker}], **extra}
    return httpx.post(proxy.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_a_redirect_from_an_llm_upstream_reaches_the_client_and_is_not_followed(junk_proxy, junk):
    """Item 11: a 307 would make aiohttp POST the prompt again, to wherever it points."""
    proxy = junk_proxy()
    key = proxy.key()
    before = len(junk.received)
    marker = junk.answer(
        "redirect", b"HTTP/1.1 307 Temporary Redirect\r\nlocation: %s/elsewhere\r\ncontent-length: 0\r\n\r\n" % junk.url.encode()
    )
    r = _post(proxy, key, marker)
    assert r.status_code == 307 and r.headers["location"] == junk.url + "/elsewhere"
    assert len(junk.received) - before == 1  # nothing went to /elsewhere
    (row,) = [e for e in proxy.events() if e["call_id"] == r.headers["x-meterline-call-id"]]
    assert row["status"] == "upstream_error" and row["http_status"] == 307


def test_an_upstream_cannot_set_the_x_meterline_headers_the_client_sees(junk_proxy, junk):
    """Item 15: the client saw `X-Meterline-Cost-USD: 0, 0.0012`."""
    proxy = junk_proxy()
    key = proxy.key()
    body = b'{"model":"junk-model","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":1000}}'
    forged = b"x-meterline-cost-usd: 0\r\nx-meterline-call-id: forged\r\nX-Meterline-Team: other\r\nx-request-id: kept\r\n"
    r = _post(proxy, key, junk.answer("forged", json_response(body, headers=forged)))
    assert r.status_code == 200
    assert r.headers.get_list("x-meterline-cost-usd") == ["0.003"]
    assert r.headers.get_list("x-meterline-call-id") != ["forged"] and len(r.headers.get_list("x-meterline-call-id")) == 1
    assert "x-meterline-team" not in r.headers and r.headers["x-request-id"] == "kept"


def test_an_upstream_header_sent_twice_reaches_the_client_twice_and_hop_by_hop_ones_never(junk_proxy, junk):
    # Headers are relayed as the upstream's raw pairs: each of a repeated one is kept.
    proxy = junk_proxy()
    body = b'{"model":"junk-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}'
    extra = b"Link: <https://a.example>\r\nlink: <https://b.example>\r\nKeep-Alive: timeout=5\r\nServer: junk\r\n"
    r = _post(proxy, proxy.key(), junk.answer("twice", json_response(body, headers=extra)))
    assert r.status_code == 200 and r.json()["model"] == "junk-model"
    assert r.headers.get_list("link") == ["<https://a.example>", "<https://b.example>"]
    assert "keep-alive" not in r.headers and r.headers.get("server") != "junk"
    assert r.headers["content-length"] == str(len(body))


def test_a_provider_key_echoed_in_an_error_body_never_reaches_the_ledger(junk_proxy, junk):
    """Item 17: the client gets the upstream's answer as sent; the ledger's copy is redacted,
    also when the 200-character cut falls inside the key."""
    proxy = junk_proxy()
    key = proxy.key()
    ids = []
    for pad in (0, 141):  # the whole key inside the kept text; the key cut by the limit
        err = b'{"error":{"message":"' + b"x" * pad + b"Incorrect API key provided: " + PROVIDER_KEY.encode() + b'"}}'
        r = _post(proxy, key, junk.answer(f"echo{pad}", json_response(err, status=401)))
        assert r.status_code == 401 and PROVIDER_KEY in r.text
        ids.append(r.headers["x-meterline-call-id"])
    rows = {e["call_id"]: e for e in proxy.events()}
    for cid in ids:
        error = rows[cid]["error"]
        assert "Incorrect API key" in error and "[redacted]" in error
        assert PROVIDER_KEY[:6] not in error
