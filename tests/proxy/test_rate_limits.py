"""Rate limits through the real proxy and the openai SDK: refused before the upstream with 429
`rate_limit_exceeded`, Retry-After and OpenAI's `x-ratelimit-*` headers, and the SDK's own
retry then gets through. A minute lasts 2 s here (the limiter's clock seam), so a test sees a
window pass without waiting one."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY

FAST = {"refresh_seconds": 0.1}
BIG_PROMPT = "sim:prompt_tokens=1200"  # the simulator reports 1200 prompt tokens


def _client(proxy, key: str, seen: list[httpx.Response], retries: int = 0) -> openai.OpenAI:
    http = httpx.Client(event_hooks={"response": [seen.append]})
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=retries, http_client=http)


def _ask(client: openai.OpenAI, text: str = "hello"):
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=50
    )


def test_a_team_over_its_tokens_per_minute_is_refused_and_the_sdks_retry_gets_through(make_proxy, upstream):
    proxy = make_proxy(limits=[{"team": "nlp", "tokens_per_minute": 1000}], budgets=FAST)
    proxy.app.state.runtime.rate_limits.set_minute(2.0)
    key = proxy.key(team="nlp")
    seen: list[httpx.Response] = []
    with _client(proxy, key, seen) as client:
        first = _ask(client, BIG_PROMPT)  # under the limit when admitted; 1216 tokens once settled
        assert first.headers["x-ratelimit-limit-tokens"] == "1000"
        before = upstream.requests_seen if hasattr(upstream, "requests_seen") else None
        with pytest.raises(openai.RateLimitError) as refused:
            _ask(client)
        err = refused.value
        assert err.status_code == 429
        assert err.body["code"] == "rate_limit_exceeded" and err.body["type"] == "tokens"
        assert "team 'nlp'" in err.body["message"] and "tokens per minute" in err.body["message"]
        h = err.response.headers
        assert 1 <= int(h["retry-after"]) <= 3 and 0 < int(h["retry-after-ms"]) <= 3000
        assert h["x-ratelimit-limit-tokens"] == "1000" and h["x-ratelimit-remaining-tokens"] == "0"
        assert h["x-meterline-call-id"]
        if before is not None:
            assert upstream.requests_seen == before  # refused before the upstream
    seen.clear()
    with _client(proxy, key, seen, retries=3) as client:
        ok = _ask(client)  # refused first, then let through by the SDK's retry after Retry-After
        assert ok.http_response.status_code == 200
    statuses = [r.status_code for r in seen]
    assert statuses[0] == 429 and statuses[-1] == 200, statuses
    events = proxy.events()
    rejected = [e for e in events if e["status"] == "rejected"]
    assert len(rejected) == statuses.count(429) + 1  # every refusal recorded, at no cost
    assert all(e["cost_pico"] == 0 and "rate limit" in e["error"] for e in rejected)
    assert sum(e["status"] == "ok" for e in events) == 2


def test_a_keys_own_requests_per_minute_set_through_the_admin_api(proxy):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(proxy.url + "/admin/keys", headers=admin, json={"team": "web", "limits": {"requests_per_minute": 3}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["limits"] == {"requests_per_minute": 3}
    seen: list[httpx.Response] = []
    # A key new to the proxy gets its first call before its first lease; a second one at once
    # may be asked to wait for that lease (retry-after-ms, a fraction of a second): the SDK retries.
    with _client(proxy, created["key"], seen, retries=2) as client:
        remaining = [_ask(client).headers["x-ratelimit-remaining-requests"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        assert all(int(r.headers["retry-after-ms"]) <= 1200 for r in seen if r.status_code == 429)
    with _client(proxy, created["key"], seen) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            _ask(client)
        assert refused.value.body["type"] == "requests"
        assert refused.value.response.headers["x-ratelimit-limit-requests"] == "3"
        assert int(refused.value.response.headers["retry-after"]) >= 1
        # Raised: the next call passes at once; taken away: no limit, no headers.
        r = httpx.patch(f"{proxy.url}/admin/keys/{created['id']}", headers=admin, json={"limits": {"requests_per_minute": 10}})
        assert r.status_code == 200 and r.json()["limits"] == {"requests_per_minute": 10}
        assert _ask(client).headers["x-ratelimit-limit-requests"] == "10"
        r = httpx.patch(f"{proxy.url}/admin/keys/{created['id']}", headers=admin, json={"limits": None})
        assert r.status_code == 200 and r.json()["limits"] == {}
        assert "x-ratelimit-limit-requests" not in _ask(client).headers
    use = httpx.get(proxy.url + "/admin/limits", headers=admin).json()["limits"]
    mine = [u for u in use if u["id"] == created["id"]]
    assert mine and mine[0]["metric"] == "requests_per_minute"


def test_bad_limits_are_refused_naming_the_field(proxy):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(proxy.url + "/admin/keys", headers=admin, json={"team": "web", "limits": {"requests_per_minute": -1}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = httpx.post(proxy.url + "/admin/keys", headers=admin, json={"team": "web", "limits": {"calls_per_day": 1}})
    assert r.status_code == 400
    r = httpx.patch(proxy.url + "/admin/keys/key_nope", headers=admin, json={"limits": {"requests_per_minute": 1}})
    assert r.status_code == 404


def test_a_call_with_no_limit_gets_no_ratelimit_headers(make_proxy):
    proxy = make_proxy(limits=[{"team": "nlp", "requests_per_minute": 5}])
    seen: list[httpx.Response] = []
    with _client(proxy, proxy.key(team="web"), seen) as client:
        assert not [h for h in _ask(client).headers if h.startswith("x-ratelimit-")]
    with _client(proxy, proxy.key(team="nlp"), seen) as client:
        assert _ask(client).headers["x-ratelimit-remaining-requests"] == "4"


def test_a_department_limit_counts_its_teams_together_in_usd(make_proxy):
    proxy = make_proxy(limits=[{"department": "research", "usd_per_hour": "0.0000001"}], budgets=FAST)
    seen: list[httpx.Response] = []
    with _client(proxy, proxy.key(team="nlp"), seen) as a, _client(proxy, proxy.key(team="vision"), seen) as b:
        _ask(a, BIG_PROMPT)  # 0.00018 USD: past the department's limit once settled
        with pytest.raises(openai.RateLimitError) as refused:
            _ask(b)
        assert "department 'research'" in refused.value.body["message"]
        assert refused.value.body["type"] == "tokens"


def test_a_streamed_answer_carries_the_ratelimit_headers_too(make_proxy):
    proxy = make_proxy(limits=[{"team": "nlp", "requests_per_hour": 50, "tokens_per_minute": 100000}])
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.key(team="nlp"), max_retries=0) as client:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as resp:
            h = resp.headers
            assert "".join(resp.iter_text())
    assert h["x-ratelimit-limit-requests"] == "50" and h["x-ratelimit-remaining-requests"] == "49"
    assert h["x-ratelimit-limit-tokens"] == "100000" and int(h["x-ratelimit-remaining-tokens"]) < 100000
    assert h["x-ratelimit-reset-requests"].endswith(("s", "ms"))
