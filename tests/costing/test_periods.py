"""Closing a month while the proxy keeps writing: every event is billed once, in the snapshot or later."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterline.costing import (
    PeriodClosed,
    close_period,
    create_engine,
    create_schema,
    load_chargeback,
    settings_from_dict,
    write_events,
)
from meterline.costing.months import charge_period
from tests.seed import event

TS = datetime(2026, 8, 20, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    create_schema(engine)
    yield engine
    engine.dispose()


def _late(i):
    row = event("1", TS, call_id=f"{i:016x}")
    del row["charge_period"], row["adjustment"]
    return row


def test_events_written_while_a_month_closes_are_in_its_snapshot_or_adjustments_next_month(engine):
    settings = settings_from_dict({"departments": [{"id": "research", "teams": [{"id": "nlp"}]}]}, environ={})
    written = []
    some_written = threading.Event()

    def writer():
        for batch in range(40):
            rows = [_late(batch * 5 + j) for j in range(5)]
            write_events(engine, rows, periods=charge_period)
            written.extend(rows)
            if batch == 5:
                some_written.set()

    t = threading.Thread(target=writer)
    t.start()
    some_written.wait(30)
    frozen = close_period(engine, settings, "2026-08")
    t.join(60)
    with pytest.raises(PeriodClosed):
        close_period(engine, settings, "2026-08")

    billed = sum(ln.cost_usd for ln in frozen.lines)
    later = load_chargeback(engine, settings, "2026-09").lines
    assert all(ln.adjustment for ln in later)
    assert billed + sum(ln.cost_usd for ln in later) == Decimal(len(written)) == 200
    assert {r["charge_period"] for r in written} <= {"2026-08", "2026-09"}
    assert sum(1 for r in written if r["adjustment"]) == sum(ln.requests for ln in later)
