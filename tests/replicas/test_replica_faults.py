"""Faults in a fleet on PostgreSQL: a replica killed or stopped, the database cut off mid-load."""

from __future__ import annotations

import threading

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_KEY
from tests.replicas.fleet import Load, Relay, assert_each_once, ledger_state, wait_for


def in_ledger(ledger: sa.Engine, call_ids: list[str]) -> bool:
    return set(call_ids) <= set(ledger_state(ledger)["ids"])


def test_a_replica_killed_mid_load_loses_no_acknowledged_call_once_restarted(start_replica, ledger):
    # a flushes rarely: most of what it acknowledged is only in its spool when it dies.
    a = start_replica("a", server={"flush_interval_ms": 5000})
    b = start_replica("b")
    _, key = a.create_key()
    wait_for("b to know the key", lambda: b.health() and _auth_ok(b, key))

    with Load([a, b], key, threads=12) as load:
        load.wait_for_calls(300)
        a.kill()
        load.wait_for_calls(100)  # b carries on alone
    assert not in_ledger(ledger, load.acknowledged)

    a.start()  # replays its spool before it serves
    state = assert_each_once(ledger, load.acknowledged)
    assert state["events"][0] >= len(load.acknowledged)


def test_sigterm_lets_in_flight_streams_finish_flushes_them_and_exits_zero(start_replica, ledger):
    a = start_replica("a", server={"flush_interval_ms": 600_000})  # only the shutdown flush writes
    _, key = a.create_key()
    client = a.client(key)
    started = threading.Barrier(7, timeout=60)
    finished: list[tuple[str, bytes]] = []

    def slow_stream() -> None:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:chunks=20,delay_ms=50"}], stream=True
        ) as r:
            call_id = r.headers["x-meterline-call-id"]
            started.wait()
            finished.append((call_id, r.read()))

    threads = [threading.Thread(target=slow_stream) for _ in range(6)]
    for t in threads:
        t.start()
    started.wait()  # every stream has its headers: in flight
    code = a.terminate()
    for t in threads:
        t.join()

    assert code == 0, a.log()
    assert len(finished) == 6
    assert all(body.rstrip().endswith(b"data: [DONE]") for _, body in finished)
    assert_each_once(ledger, [call_id for call_id, _ in finished])
    assert not list((a.dir / "spool").glob("*.jsonl"))  # flushed, not left spooled


@pytest.mark.parametrize("fault", ["cut", "hang"])
def test_replicas_keep_serving_while_the_database_is_away_and_lose_nothing_once_it_is_back(start_replica, ledger, fault):
    relay = Relay(target_port=ledger.url.port or 5432)
    try:
        via_relay = ledger.url.set(port=relay.port).render_as_string(hide_password=False)
        a, b = start_replica("a", database=via_relay), start_replica("b", database=via_relay)
        _, key = a.create_key()
        wait_for("b to know the key", lambda: _auth_ok(b, key))

        with Load([a, b], key, threads=12) as load:
            load.wait_for_calls(200)
            relay.cut() if fault == "cut" else relay.hang()
            wait_for("both replicas to report degraded", lambda: _status(a) == _status(b) == "degraded")
            during = load.count()
            if fault == "cut":  # the admin API needs the database: a clean 503, not a 500
                r = httpx.post(a.url + "/admin/ledger/flush", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                assert (r.status_code, r.json()["error"]["code"]) == (503, "ledger_unavailable")
            load.wait_for_calls(300)  # still serving, spooling to disk
            assert not load.refused
            relay.restore()
            wait_for("both replicas to recover", lambda: _status(a) == _status(b) == "ok")
            load.wait_for_calls(100)
        wait_for("every acknowledged call to land", lambda: in_ledger(ledger, load.acknowledged))

        assert load.count() > during
        assert_each_once(ledger, load.acknowledged)
        if fault == "cut":
            assert "ledger database unavailable" in a.log() + b.log()
    finally:
        relay.close()


def test_an_idle_replica_says_the_database_is_gone_and_back(start_replica, ledger):
    relay = Relay(target_port=ledger.url.port or 5432)
    try:
        via_relay = ledger.url.set(port=relay.port).render_as_string(hide_password=False)
        a = start_replica("a", database=via_relay, server={"key_refresh_seconds": 0.5})
        assert _status(a) == "ok"
        relay.cut()  # no call comes: the writer has nothing to write and cannot notice
        wait_for("the idle replica to report degraded", lambda: _status(a) == "degraded")
        assert a.health()["ledger"] and a.health()["spool"] == "disk"
        relay.restore()
        wait_for("the replica to report ok again", lambda: _status(a) == "ok")
    finally:
        relay.close()


def _status(replica) -> str:
    return replica.health()["status"]


def _auth_ok(replica, key: str) -> bool:
    r = httpx.get(replica.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    return r.status_code == 200
