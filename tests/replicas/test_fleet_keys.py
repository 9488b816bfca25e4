"""Keys managed over the admin API on two `meterline serve` replicas sharing PostgreSQL: a new
key works on its first call everywhere, a revocation holds at once where it was made and
within key_refresh_seconds elsewhere, a rotation keeps the key id across replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import openai
import sqlalchemy as sa

from tests.conftest import ADMIN_KEY, FINANCE_KEY
from tests.replicas.fleet import wait_for

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def call(replica, key: str) -> str:
    raw = replica.client(key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return raw.headers["x-meterline-call-id"]


def refused(replica, key: str) -> str | None:
    try:
        call(replica, key)
    except openai.AuthenticationError as e:
        assert e.body["code"] == "invalid_api_key"
        return e.body["message"]
    return None


def test_keys_issued_revoked_and_rotated_over_the_api_on_two_replicas(start_replica, ledger):
    a, b = start_replica("a"), start_replica("b", server={"key_refresh_seconds": 1})
    made = httpx.post(a.url + "/admin/keys", json={"team": "web"}, headers=ADMIN).json()
    first = [call(a, made["key"]), call(b, made["key"])]  # at once, no wait, on both

    rotated = httpx.post(b.url + f"/admin/keys/{made['id']}/rotate", json={"grace_seconds": 3600}, headers=ADMIN).json()
    both = [call(a, rotated["key"]), call(b, rotated["key"]), call(a, made["key"]), call(b, made["key"])]
    ended = httpx.post(a.url + f"/admin/keys/{made['id']}/rotate", json={"grace_seconds": 0}, headers=ADMIN).json()
    assert refused(a, rotated["key"]) and refused(a, made["key"])  # at once where it was rotated
    wait_for("b to drop the replaced secret", lambda: refused(b, rotated["key"]))
    last = call(b, ended["key"])

    assert httpx.delete(a.url + f"/admin/keys/{made['id']}", headers=ADMIN).status_code == 200
    assert refused(a, ended["key"])  # at once on the replica that revoked it
    wait_for("b to refuse the revoked key", lambda: refused(b, ended["key"]))

    for r in (a, b):
        r.cli("db", "current")
        httpx.post(r.url + "/admin/ledger/flush", headers=ADMIN).raise_for_status()
    with ledger.connect() as conn:
        keys = dict(conn.execute(sa.text("SELECT call_id, key_id FROM events")).all())
    assert {keys[c] for c in [*first, *both, last]} == {made["id"]}
    for r in (a, b):
        log = r.log()
        assert all(s not in log for s in (made["key"], rotated["key"], ended["key"], ADMIN_KEY, FINANCE_KEY))


def test_an_expired_key_is_refused_on_every_replica_and_the_finance_key_reads_but_issues_nothing(start_replica, ledger):
    a, b = start_replica("a"), start_replica("b")
    soon = datetime.now(UTC) + timedelta(hours=1)
    made = httpx.post(a.url + "/admin/keys", json={"team": "nlp", "expires_at": soon.isoformat()}, headers=ADMIN).json()
    assert call(b, made["key"])
    past = datetime.now(UTC) - timedelta(seconds=1)
    with ledger.begin() as conn:  # as if the hour had gone by: the replicas read it at their refresh
        conn.execute(sa.text("UPDATE keys SET expires_at = :t, updated_at = now() WHERE id = :id"), {"t": past, "id": made["id"]})
    for r in (a, b):
        message = wait_for(f"{r.name} to refuse the expired key", lambda r=r: refused(r, made["key"]))
        assert f"expired at {past:%Y-%m-%dT%H:%M:%S}Z" in message
    listed = httpx.get(a.url + "/admin/keys", headers=ADMIN).json()["data"]
    assert (listed[0]["status"], listed[0]["expires_at"]) == ("expired", f"{past:%Y-%m-%dT%H:%M:%S}Z")

    fin = {"Authorization": f"Bearer {FINANCE_KEY}"}
    assert httpx.get(b.url + "/admin/usage", params={"month": f"{past:%Y-%m}"}, headers=fin).status_code == 200
    r = httpx.post(b.url + "/admin/keys", json={"team": "nlp"}, headers=fin)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied")
