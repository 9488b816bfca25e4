"""The spool in NATS JetStream (`server.spool_url`): replicas without a persistent disk.

Real `meterline serve` processes, the real nats-server and PostgreSQL on loopback; each test
has a stream of its own (tests/jetstream.py). A replica is SIGKILLed right after its clients
got their responses, its disk deleted, and never restarted: every call it acknowledged reaches
the ledger through the other replica (or the CLI), exactly once.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import ADMIN_KEY, base_config, free_port, run_cli
from tests.replicas.fleet import Load, Relay, assert_each_once, ledger_state, wait_for


def in_ledger(ledger: sa.Engine, call_ids: list[str]) -> bool:
    return set(call_ids) <= set(ledger_state(ledger)["ids"])


def test_a_replica_killed_for_good_loses_nothing_its_sibling_writes_its_calls_once(start_replica, ledger, jetstream):
    a = start_replica("a", server=jetstream)
    b = start_replica("b", server=jetstream)
    _, key = a.create_key()
    wait_for("b to know the key", lambda: _auth_ok(b, key))

    with Load([a, b], key, threads=8) as load:
        load.wait_for_calls(300)
        a.kill()
        shutil.rmtree(a.dir)  # its disk is gone with it
        load.wait_for_calls(50)  # b carries on alone
    # No CLI here (it would drain the stream itself): b's writer must write a's calls.
    wait_for("every acknowledged call in the ledger", lambda: in_ledger(ledger, load.acknowledged))
    state = assert_each_once(ledger, load.acknowledged)
    assert state["events"][0] >= len(load.acknowledged)


def test_calls_acknowledged_while_the_database_was_away_reach_the_export_after_a_sigkill(start_replica, ledger, jetstream, tmp_path):
    relay = Relay(target_port=ledger.url.port or 5432)
    try:
        via_relay = ledger.url.set(port=relay.port).render_as_string(hide_password=False)
        a = start_replica("a", database=via_relay, server=jetstream)
        _, key = a.create_key()
        with Load([a], key, threads=8) as load:
            load.wait_for_calls(50)
            relay.cut()  # the database goes away: events pile up in the stream, calls go on
            wait_for("a to report the ledger degraded", lambda: a.health()["status"] == "degraded")
            load.wait_for_calls(200)
            a.kill()
        shutil.rmtree(a.dir / "spool", ignore_errors=True)
        assert not in_ledger(ledger, load.acknowledged)  # the calls since the cut are only in the stream

        relay.restore()  # the database is back; no replica is
        # A command that reads the ledger writes in what the stream holds first.
        out = a.cli("export", "events", "--month", time.strftime("%Y-%m", time.gmtime()), "--format", "jsonl")
        assert not out.stderr, out.stderr
        exported = [json.loads(line)["call_id"] for line in out.stdout.splitlines()]
        assert set(load.acknowledged) <= set(exported)
        assert len(exported) == len(set(exported))
        assert_each_once(ledger, load.acknowledged)
    finally:
        relay.close()


OUTAGE = 30.0  # seconds the database is away: what issue 18 asks the fleet to ride out


def test_a_replica_killed_for_good_while_the_database_is_away_loses_nothing_and_counts_nothing_twice(start_replica, ledger, jetstream):
    """Two replicas on the stream, PostgreSQL away for 30 s (silent for the first half, refusing
    connections for the second); mid-outage one replica is SIGKILLed, its disk deleted, never
    restarted. Once the database is back, every call a client got a whole answer for is in the
    ledger (and the CLI's export) exactly once, written by the survivor, whose /healthz said
    `degraded` through the outage and `ok` after it."""
    relay = Relay(target_port=ledger.url.port or 5432)
    try:
        via_relay = ledger.url.set(port=relay.port).render_as_string(hide_password=False)
        with ThreadPoolExecutor() as starting:  # side by side: a start is seconds of imports
            a, b = starting.map(lambda name: start_replica(name, database=via_relay, server=jetstream), "ab")
        key = httpx.post(a.url + "/admin/keys", json={"team": "nlp"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["key"]
        wait_for("b to know the key", lambda: _auth_ok(b, key))

        with Load([a, b], key, threads=8) as load, HealthLog(b) as health:
            load.wait_for_calls(50)
            relay.hang()  # the database host stops answering: writes in flight hang
            away_at = time.monotonic()
            wait_for("both replicas to report degraded", lambda: _health(a)["status"] == _health(b)["status"] == "degraded")
            load.wait_for_calls(100)  # both spool into the stream
            a.kill()  # with a batch in hand that its hung transaction never committed
            shutil.rmtree(a.dir)  # its spool folder, config and all: nothing of it comes back
            killed = load.count()
            load.wait_for_calls(100)  # b carries on alone
            time.sleep(max(0.0, away_at + OUTAGE / 2 - time.monotonic()))
            relay.cut()  # now it refuses connections: the hung ones fail
            load.wait_for_calls(50)
            time.sleep(max(0.0, away_at + OUTAGE - time.monotonic()))
            back_at = time.monotonic()
            relay.restore()
            wait_for("b to recover", lambda: _health(b) == {"status": "ok"})
            load.wait_for_calls(50)

        assert back_at - away_at >= OUTAGE
        assert load.count() > killed + 150
        assert all(r.startswith("a:") for r in load.refused), load.refused  # b served through it all
        # /healthz: degraded within seconds (a hung write counts once it is `stall_seconds`
        # old, 5 s), then degraded until the database is back, then ok for good.
        said, outage = health.since("degraded", away_at, back_at)
        assert said - away_at < 10, outage
        assert all(h["status"] == "degraded" and h["http"] == 200 and h["spool"] == "jetstream" and h["ledger"] for h in outage), outage
        _, after = health.since("ok", back_at, time.monotonic())
        assert all(h == {"status": "ok", "http": 200} for h in after), after

        # No CLI yet (it would drain the stream itself): b's writer writes a's calls too.
        wait_for("every acknowledged call in the ledger", lambda: in_ledger(ledger, load.acknowledged))
        assert_each_once(ledger, load.acknowledged)
        out = b.cli("export", "events", "--month", time.strftime("%Y-%m", time.gmtime()), "--format", "jsonl")
        assert not out.stderr, out.stderr
        exported = [json.loads(line)["call_id"] for line in out.stdout.splitlines()]
        assert set(load.acknowledged) <= set(exported)
        assert len(exported) == len(set(exported))
    finally:
        relay.close()


class HealthLog:
    """A replica's /healthz, read every 0.2 s in a thread."""

    def __init__(self, replica: Any):
        self.replica = replica
        self.seen: list[tuple[float, dict[str, Any]]] = []  # (when asked, the body with its HTTP status as "http")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> HealthLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def since(self, status: str, start: float, end: float) -> tuple[float, list[dict[str, Any]]]:
        """When `status` was first seen between `start` and `end`, and every answer from then to `end`."""
        seen = [(t, h) for t, h in self.seen if start <= t <= end]
        first = next((i for i, (_, h) in enumerate(seen) if h["status"] == status), None)
        assert first is not None, f"/healthz never said {status!r}: {[h for _, h in seen]}"
        return seen[first][0], [h for _, h in seen[first:]]

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            when = time.monotonic()
            try:
                r = httpx.get(self.replica.url + "/healthz", timeout=5)
                answer = {**r.json(), "http": r.status_code}
            except httpx.HTTPError as e:  # kept, so a /healthz that stops answering fails the test
                answer = {"status": f"no answer: {type(e).__name__}"}
            self.seen.append((when, answer))


def test_a_broker_away_mid_run_turns_calls_away_with_503_and_healthz_says_why(start_replica, ledger, jetstream, nats_server):
    where = urlsplit(nats_server)
    relay = Relay(target_port=where.port or 4222, target_host=where.hostname or "127.0.0.1")
    try:
        a = start_replica("a", server={**jetstream, "spool_url": f"nats://127.0.0.1:{relay.port}"})
        _, key = a.create_key()
        client = a.client(key)
        ok = _chat(client)
        assert httpx.get(a.url + "/healthz").json() == {"status": "ok"}

        relay.cut()
        health = wait_for("healthz to turn 503", lambda: _health_503(a))
        assert health["status"] == "unavailable" and health["spool"] == "jetstream"
        assert "unreachable" in health["reason"]
        with pytest.raises(openai.APIStatusError) as refused:
            _chat(client)
        assert refused.value.status_code == 503
        assert refused.value.body["code"] == "spool_unavailable"  # type: ignore[index]

        relay.restore()
        wait_for("healthz ok again", lambda: _health(a) == {"status": "ok"})
        after = _chat(client)
        wait_for("both calls in the ledger", lambda: in_ledger(ledger, [ok, after]))
        assert_each_once(ledger, [ok, after])
        assert len(ledger_state(ledger)["ids"]) == 2  # the refused call was never recorded: nothing was spent
    finally:
        relay.close()


def test_serve_with_no_broker_is_one_line_not_a_traceback(tmp_path, jetstream):
    dead = f"nats://127.0.0.1:{free_port()}"
    server = {**jetstream, "spool_url": dead, "jetstream": {**jetstream["jetstream"], "connect_timeout_seconds": 1}}
    cfg = base_config(tmp_path, "http://127.0.0.1:9", server=server)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run_cli("serve", "--config", str(tmp_path / "config.yaml"), "--port", str(free_port()), check=False)
    assert res.returncode != 0
    assert res.stderr.startswith(f"meterline: server.spool_url: cannot reach the NATS broker at {dead}"), res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def _chat(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    raw.parse()
    return raw.headers["x-meterline-call-id"]


def _health(replica: Any) -> dict[str, Any]:
    return httpx.get(replica.url + "/healthz", timeout=5).json()


def _health_503(replica: Any) -> dict[str, Any] | None:
    r = httpx.get(replica.url + "/healthz", timeout=5)
    return r.json() if r.status_code == 503 else None


def _auth_ok(replica: Any, key: str) -> bool:
    return httpx.get(replica.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_an_event_delivered_twice_is_in_the_ledger_once(ledger, jetstream):
    """Duplicates reach the writers (a publish retried past the broker's duplicate window, a
    batch redelivered after its writer died before acking): the ledger's insert is idempotent
    on call_id, and its rollups count the call once."""
    import asyncio

    import orjson

    from meterline.costing.config import JetStreamConfig
    from meterline.costing.jetstream import JetStreamSpool, connect, drain
    from tests.seed import event

    cfg = JetStreamConfig(**jetstream["jetstream"])
    row = event("0.5", team="nlp")

    async def publish() -> None:
        spool = await JetStreamSpool.open(jetstream["spool_url"], cfg)
        await spool.append(row)
        await spool.append(row)  # the same call id: the broker keeps one
        await spool.close()
        nc, js = await connect(jetstream["spool_url"], cfg)
        for n in range(2):  # past the duplicate window: other message ids, the same event
            await js.publish(cfg.subject, orjson.dumps(row), headers={"Nats-Msg-Id": f"again-{n}"})
        info = await js.stream_info(cfg.stream)
        await nc.close()
        assert info.state.messages == 3

    asyncio.run(publish())
    assert asyncio.run(drain(ledger, jetstream["spool_url"], cfg)) == 1  # three delivered, one new
    state = ledger_state(ledger)
    assert state["ids"] == [row["call_id"]]
    assert state["rollups"] == state["events"] == (1, row["cost_pico"])
