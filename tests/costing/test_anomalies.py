"""Spend anomalies on a ledger: a known spike injected into a fortnight of working-hours
traffic raises exactly one alert, and the same traffic without it none; on a month of the
demo's traffic, none, and one once a runaway key is injected into it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meterline.costing import anomalies, create_engine
from meterline.costing.config import AlertsConfig
from meterline.reports.guards import month_anomalies
from tests.seed import event, seed

CFG = AlertsConfig(anomalies=True)
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
SPIKE = datetime(2026, 11, 13, 14, tzinfo=UTC)  # a Friday afternoon


def _traffic(rng: random.Random) -> list[dict]:
    """15 days of calls for two teams and three keys, busy in working hours, quiet at night."""
    rows = []
    for h in range(15 * 24):
        ts = START + timedelta(hours=h)
        busy = (1.0 if ts.weekday() < 5 else 0.3) * (1.0 if 8 <= ts.hour < 19 else 0.1)
        for key, team, rate in (("key_a", "nlp", 6), ("key_b", "nlp", 3), ("key_c", "vision", 8)):
            for _ in range(rng.randint(0, int(rate * busy * 2))):
                cost = Decimal(str(round(rng.lognormvariate(-3, 0.8), 6)))  # about 5 cents, a long tail
                rows.append(event(cost, ts + timedelta(seconds=rng.randrange(3600)), key_id=key, team=team))
    return rows


def _runaway(key: str, team: str, start: datetime, hours: int = 2, calls: int = 80) -> list[dict]:
    """An agent stuck in a loop: `calls` calls an hour of 10 cents each."""
    return [
        event("0.10", start + timedelta(hours=h, seconds=i * 3600 // calls), key_id=key, team=team)
        for h in range(hours) for i in range(calls)
    ]  # fmt: skip


@pytest.fixture
def engine(ledger_engine):
    seed(ledger_engine, _traffic(random.Random(3)))
    return ledger_engine


def test_a_fortnight_of_working_hours_raises_no_alarm(engine):
    assert anomalies.spikes(engine, CFG, START, START + timedelta(days=15)) == []


def test_an_injected_runaway_raises_exactly_one_alert_once(engine):
    seed(engine, _runaway("key_a", "nlp", SPIKE))
    found = anomalies.spikes(engine, CFG, START, START + timedelta(days=15))
    assert len(found) == 1, found  # the key's: its team's spike is the same one, told once
    spike = found[0]
    assert spike.scope == ("key", "key_a") and spike.start == SPIKE and spike.hours == 2
    assert spike.spend >= Decimal(8) and spike.median < Decimal(1) and spike.z >= CFG.threshold
    assert "key 'key_a'" in spike.message and "USD" in spike.message
    # Checked while it goes on, twice (two checks, or two replicas): noted once.
    going = anomalies.current(engine, CFG, SPIKE + timedelta(minutes=90))
    assert [(s.scope, s.start) for s in going] == [(("key", "key_a"), SPIKE)]
    assert anomalies.store(engine, going[0], SPIKE + timedelta(minutes=90)) is True
    again = anomalies.current(engine, CFG, SPIKE + timedelta(minutes=100))
    assert anomalies.store(engine, again[0], SPIKE + timedelta(minutes=100)) is False
    assert len(anomalies.noted(engine, SPIKE - timedelta(days=1))) == 1
    # Over: nothing going on.
    assert anomalies.current(engine, CFG, SPIKE + timedelta(hours=4, minutes=30)) == []


def test_a_team_wide_spike_spread_over_its_keys_is_the_teams(engine):
    for i in range(8):  # eight keys, none spiking alone past the floor
        seed(engine, _runaway(f"key_loop{i}", "vision", SPIKE, hours=1, calls=15))
    found = anomalies.spikes(engine, CFG, START, START + timedelta(days=15))
    assert [(s.scope, s.start) for s in found] == [(("team", "vision"), SPIKE)]


def test_one_expensive_call_is_not_a_spike(engine):
    seed(engine, [event("5.00", SPIKE + timedelta(minutes=5), key_id="key_b", team="nlp")])
    assert anomalies.spikes(engine, CFG, START, START + timedelta(days=15)) == []


def test_a_month_of_the_demos_traffic_raises_none_and_an_injected_runaway_one(tmp_path):
    from meterline.demo.run import run_demo

    res = run_demo(tmp_path / "demo", now=datetime(2026, 12, 1, 9, tzinfo=UTC))
    engine = create_engine(f"sqlite:///{tmp_path / 'demo' / 'ledger.db'}")
    try:
        assert month_anomalies(engine, CFG, "2026-11") == []
        with engine.connect() as conn:
            key = conn.exec_driver_sql("SELECT key_id FROM events WHERE team = 'nlp' LIMIT 1").scalar()
        seed(engine, _runaway(key, "nlp", datetime(2026, 11, 24, 10, tzinfo=UTC), hours=3, calls=60))
        found = month_anomalies(engine, CFG, "2026-11")
        assert [(s.scope, s.start, s.hours) for s in found] == [(("key", key), datetime(2026, 11, 24, 10, tzinfo=UTC), 3)]
    finally:
        engine.dispose()
    assert res.ledger_rows > 3000
