"""Two `meterline serve` replicas on one PostgreSQL ledger, driven by the openai SDK."""

from __future__ import annotations

import openai
import sqlalchemy as sa

from tests.replicas.fleet import Load, assert_each_once, wait_for


def test_two_replicas_under_concurrent_load_record_every_acknowledged_call_exactly_once(start_replica, ledger):
    a, b = start_replica("a"), start_replica("b")
    _, key = a.create_key()
    wait_for("b to know the key", lambda: _works(b, key))

    with Load([a, b], key, threads=16) as load:
        load.wait_for_calls(400)
    for r in (a, b):
        r.cli("db", "current")  # the CLI reads the same ledger
    wait_for("both spools drained", lambda: a.health()["status"] == b.health()["status"] == "ok" and _flushed(ledger, load))

    state = assert_each_once(ledger, load.acknowledged)
    assert state["events"][0] == len(load.acknowledged) + 1  # and the one probe call
    assert not load.refused


def test_a_key_made_with_the_cli_works_on_every_replica_and_once_revoked_is_refused_by_all(start_replica):
    a, b = start_replica("a"), start_replica("b")
    key_id, key = b.create_key(team="web")

    assert _works(a, key) and _works(b, key)  # on its first call: looked up when not yet cached
    a.cli("keys", "revoke", key_id)

    for r in (a, b):
        wait_for(f"{r.name} to refuse the revoked key", lambda r=r: _refused(r, key))
    other_id, other = a.create_key()
    assert _works(b, other)


def _works(replica, key: str) -> bool:
    try:
        replica.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError:
        return False
    return True


def _refused(replica, key: str) -> bool:
    try:
        replica.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as e:
        assert e.body["code"] == "invalid_api_key"
        return True
    return False


def _flushed(ledger, load: Load) -> bool:
    with ledger.connect() as conn:
        have = {r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))}
    return set(load.acknowledged) <= have
