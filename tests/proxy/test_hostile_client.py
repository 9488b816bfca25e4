"""A key holder who means harm: bodies and headers shaped to confuse metering, bill another
team or stop the proxy. Each test names the item of issue 20 it covers; the streaming and
connection caps are in test_caps.py, trace context in test_payer_proof.py."""

from __future__ import annotations

import httpx
import pytest


def _chat(proxy, key: str, content: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        content=content,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **(headers or {})},
        timeout=30,
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"gpt-4o-mini","model":"house-model","messages":[]}',
        b'{"model":"gpt-4o-mini","messages":[],"m\\u006fdel":"house-model"}',
        b'{"model":"gpt-4o-mini","stream":false,"messages":[],"stream":true}',
        b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false,"include_usage":true}}',
    ],
    ids=["model", "escaped", "stream", "nested"],
)
def test_a_body_naming_a_metered_field_twice_is_refused(proxy, body):
    """Item 12: orjson keeps the last `model`, an upstream may keep the first."""
    r = _chat(proxy, proxy.key(), body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert "twice" in r.json()["error"]["message"]


def test_bodies_with_escapes_and_repeated_words_still_pass(proxy):
    body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"the model said \\u00e9 \\"model\\""}]}'
    r = _chat(proxy, proxy.key(), body.encode())
    assert r.status_code == 200


def test_utf8_attribution_headers_are_stored_as_sent(proxy):
    """Item 18: they were decoded as latin-1 (`JosÃ©`)."""
    key = proxy.key()
    headers = {
        "x-meterline-user": "José Núñez".encode(),
        "x-meterline-project": "北京".encode(),
        "x-meterline-tags": "équipe=données".encode(),
    }
    r = _chat(proxy, key, b'{"model":"gpt-4o-mini","messages":[]}', headers)
    assert r.status_code == 200
    (row,) = proxy.events()
    assert (row["user"], row["project"], row["tags"]) == ("José Núñez", "北京", "équipe=données")


def test_a_non_ascii_tracestate_signature_is_ignored_not_a_500(proxy):
    """Item 14: hmac.compare_digest raised TypeError on a non-ASCII str."""
    key = proxy.key()
    headers = {
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "tracestate": "meterline=bmxw.\xe9\xe9\xe9".encode("latin-1"),
    }
    r = _chat(proxy, key, b'{"model":"gpt-4o-mini","messages":[]}', headers)
    assert r.status_code == 200
    (row,) = proxy.events()
    assert row["team"] == "nlp" and row["parent_call_id"] == ""


def test_client_chosen_model_names_cannot_grow_metrics_or_the_log_without_bound(proxy, monkeypatch, caplog):
    """Item 9: 20,000 names matched by a glob made /metrics 98 MB and logged a line each."""
    from meterline.proxy import meter, metrics

    monkeypatch.setattr(metrics, "MAX_MODELS", 5)
    monkeypatch.setattr(meter, "MAX_WARNED", 3)
    key = proxy.key()
    for i in range(12):
        _chat(proxy, key, b'{"model":"gpt-4.1-probe-%d","messages":[]}' % i)
    text = httpx.get(proxy.url + "/metrics").text
    models = {line.split('model="')[1].split('"')[0] for line in text.splitlines() if line.startswith("meterline_requests_total")}
    assert len(models) == 6 and "other" in models
    assert 'model="other"' in [ln for ln in text.splitlines() if ln.startswith("meterline_unpriced_requests_total")][-1]
    warned = [r for r in caplog.records if "no price for" in r.getMessage()]
    assert len(warned) == 4 and "no longer warning" in warned[-1].getMessage()
    assert len(proxy.events()) == 12  # the ledger keeps every name
    assert {e["model"] for e in proxy.events()} == {f"gpt-4.1-probe-{i}" for i in range(12)}
