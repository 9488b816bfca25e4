"""Each error the contract names, in OpenAI's shape, through the real SDK or raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.proxy.test_chat import client


def test_missing_and_unknown_keys_are_401(proxy):
    for key in ("", "sk-ml-not-a-real-key"):
        r = httpx.post(proxy.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}, headers={"Authorization": f"Bearer {key}"} if key else {})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}


def test_revoked_key_is_refused_within_seconds(proxy):
    from meterline.costing import list_keys, revoke_key

    key = proxy.key()
    c = client(proxy, key)
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    revoke_key(proxy.engine, list_keys(proxy.engine)[-1].id)
    import time

    deadline = time.monotonic() + 5
    while True:
        try:
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        except openai.AuthenticationError as e:
            assert e.code == "invalid_api_key"
            break
        assert time.monotonic() < deadline, "revoked key still accepted after 5 s"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"model": 5, "messages": []}', b'{"model": "gpt-4o-mini", "stream": "yes"}'],
)
def test_bad_bodies_are_400_invalid_request(proxy, body):
    key = proxy.key()
    r = httpx.post(proxy.url + "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


def test_unknown_model_is_404_model_not_found(proxy):
    with pytest.raises(openai.NotFoundError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="no-such-model", messages=[])
    assert e.value.code == "model_not_found"


def test_upstream_http_error_is_passed_through_and_recorded(proxy):
    with pytest.raises(openai.RateLimitError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:status=429"}])
    assert e.value.status_code == 429
    (event,) = proxy.events()
    assert (event["status"], event["http_status"], event["cost_pico"]) == ("upstream_error", 429, 0)
    assert event["usage_source"] == "estimated"  # the provider's error reported no usage


def test_unreachable_upstream_is_502(make_proxy):
    from tests.conftest import free_port

    proxy = make_proxy(providers={"sim": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "api_key_env": "SIM_API_KEY"}})
    with pytest.raises(openai.APIStatusError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502 and e.value.code == "upstream_unavailable"
    (event,) = proxy.events()
    assert event["status"] == "upstream_error"
    # Nothing reached a provider, so nothing was reported: estimated, at 0 tokens and $0.
    assert (event["usage_source"], event["input_tokens"], event["output_tokens"], event["cost_pico"]) == ("estimated", 0, 0, 0)


def test_hanging_upstream_is_504(make_proxy, upstream):
    proxy = make_proxy(providers={"sim": {"base_url": upstream.url + "/v1", "api_key_env": "SIM_API_KEY", "read_timeout": 0.5}})
    with pytest.raises(openai.APIStatusError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:hang=1"}])
    assert e.value.status_code == 504 and e.value.code == "upstream_timeout"


def test_body_over_the_limit_is_413(make_proxy):
    proxy = make_proxy(server={"max_body_bytes": 1024})
    with pytest.raises(openai.APIStatusError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 4096}])
    assert e.value.status_code == 413 and e.value.code == "request_too_large"
