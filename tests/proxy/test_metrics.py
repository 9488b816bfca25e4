"""GET /metrics: Prometheus counters of requests, tokens and cost by team and model."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.test_chat import client


def samples(proxy):
    r = httpx.get(proxy.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def labels(**kw):
    base = {"department": "research", "team": "nlp", "model": "gpt-4o-mini", "kind": "llm", "status": "ok"}
    return tuple(sorted({**base, **kw}.items()))


def test_metrics_count_requests_tokens_and_cost_by_team_and_model(proxy):
    c = client(proxy, proxy.key("nlp"))
    for _ in range(2):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi sim:cached=1,reasoning=2"}])
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:status=429"}])
    c.chat.completions.create(model="mystery-model", messages=[{"role": "user", "content": "x"}])
    events = proxy.events()
    ok = [e for e in events if e["status"] == "ok" and e["model"] == "gpt-4o-mini"]
    m = samples(proxy)
    assert m[("meterline_requests_total", labels())] == 2
    assert m[("meterline_requests_total", labels(status="upstream_error"))] == 1
    assert m[("meterline_tokens_total", labels(type="input"))] == sum(e["input_tokens"] for e in ok)
    assert m[("meterline_tokens_total", labels(type="cached_input"))] == 2
    assert m[("meterline_tokens_total", labels(type="output"))] == sum(e["output_tokens"] for e in ok)
    assert m[("meterline_tokens_total", labels(type="reasoning"))] == 4
    exact = sum(Decimal(e["cost_pico"]) for e in ok) / 10**12
    assert m[("meterline_cost_usd_total", labels())] == pytest.approx(float(exact))
    assert m[("meterline_unpriced_requests_total", (("model", "mystery-model"),))] == 1
    assert m[("meterline_ledger_spooled_events", ())] == 0  # flushed by proxy.events()
    assert m[("meterline_ledger_degraded", ())] == 0


def test_metrics_come_from_the_apps_own_registry(proxy):
    assert proxy.app.state.runtime.metrics.registry is not None
    c = client(proxy, proxy.key("web"))
    c.embeddings.create(model="text-embedding-3-small", input="a b")
    m = samples(proxy)
    assert m[("meterline_requests_total", labels(department="product", team="web", model="text-embedding-3-small", kind="embedding"))] == 1
    assert not any(name == "python_gc_objects_collected_total" for name, _ in m)  # not the global registry
