"""Keys work on their very first call, without waiting for a refresh; made-up keys cost no flood
of queries; an expired key is refused saying when it expired."""

from __future__ import annotations

from datetime import timedelta

import httpx
import openai
import pytest
import sqlalchemy as sa

from meterline.costing import create_key
from meterline.costing.tables import VirtualKey, utcnow

HOUR = {"server": {"key_refresh_seconds": 3600}}  # no refresh during the test


def chat(proxy, key: str):
    c = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
    return c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_a_key_made_after_the_proxy_started_works_on_its_first_call(make_proxy):
    p = make_proxy(**HOUR)
    _, secret = create_key(p.engine, team="nlp")  # behind the proxy's back: no refresh
    assert chat(p, secret).choices
    assert p.app.state.runtime.keys.lookups == 1


def test_made_up_keys_are_refused_and_retrying_one_costs_no_query(make_proxy):
    p = make_proxy(**HOUR)
    keys = p.app.state.runtime.keys
    with httpx.Client(base_url=p.url) as client:
        for i in range(20):
            for _ in range(5):
                r = client.get("/v1/models", headers={"Authorization": f"Bearer sk-ml-made-up-{i}"})
                assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key")
    assert keys.lookups <= 20  # one per distinct secret at most, none for a retry


def test_an_expired_key_is_refused_with_when_it_expired(make_proxy):
    p = make_proxy(**HOUR)
    row, secret = create_key(p.engine, team="nlp", expires_at=utcnow() + timedelta(hours=1))
    assert chat(p, secret).choices
    past = utcnow() - timedelta(minutes=1)
    with p.engine.begin() as conn:  # as if the hour had passed
        conn.execute(sa.update(VirtualKey.__table__).where(VirtualKey.__table__.c.id == row.id).values(expires_at=past, updated_at=utcnow()))
    p.app.state.runtime.keys.refresh()
    with pytest.raises(openai.AuthenticationError) as e:
        chat(p, secret)
    assert e.value.body["code"] == "invalid_api_key"
    assert f"expired at {past:%Y-%m-%dT%H:%M:%S}Z" in e.value.body["message"]
