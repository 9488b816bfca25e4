"""Paced flushes: the same ledger as flat-out ones, pauses only while the budget lasts."""

from __future__ import annotations

import sqlalchemy as sa

import meterline.costing.pacing as pacing
from meterline.costing import create_engine, create_schema
from meterline.costing.ingest import LedgerWriter, write_segment
from meterline.costing.pacing import Pace
from meterline.costing.spool import Spool
from tests.seed import spooled


class Clock:
    """perf_counter and sleep for pacing.py: time moves only when the test or a pause moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses = 0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses += 1
        self.now += seconds


def test_a_pace_pauses_after_each_slice_of_work_and_never_past_its_budget(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pacing, "time", clock)
    pace = Pace(0.01)

    pace()  # no work done yet
    assert clock.pauses == 0
    clock.now += Pace.SLICE_SECONDS / 2
    pace()
    assert clock.pauses == 0
    clock.now += Pace.SLICE_SECONDS
    pace()
    assert clock.pauses == 1

    while clock.now < 100.0 + 0.01:  # work in slices until the budget is spent
        clock.now += Pace.SLICE_SECONDS
        pace()
    spent = clock.pauses
    for _ in range(50):  # from then on: flat out
        clock.now += Pace.SLICE_SECONDS
        pace()
    assert clock.pauses == spent
    assert clock.now - 100.0 <= 0.01 + Pace.SLICE_SECONDS * 51 + Pace.PAUSE_SECONDS


def ledger(engine: sa.Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT call_id, team, model, input_tokens, cost_pico FROM events ORDER BY call_id")).all()
        rollups = conn.execute(sa.text("SELECT team, model, requests, input_tokens, cost_pico FROM rollups_hourly ORDER BY team, model")).all()
    return [tuple(r) for r in events], [tuple(r) for r in rollups]


def test_a_paced_segment_writes_the_ledger_a_flat_out_one_does(tmp_path):
    # Enough rows for every paced step (several insert statements, fits and rollup slices).
    rows = [spooled(team=f"t{i % 7}", model=f"m{i % 3}", input_tokens=i) for i in range(300)]
    got = []
    for name, pace in (("flat", None), ("paced", Pace(10.0))):
        engine = create_engine(f"sqlite:///{tmp_path}/{name}.db")
        create_schema(engine)
        spool = Spool(tmp_path / name)
        for r in rows:
            spool.append(dict(r))
        (path,) = spool.seal()
        written, landed = write_segment(engine, path, tmp_path / name / "rejected", pace)
        assert written == 300 and len(landed) == 300
        got.append(ledger(engine))
        spool.close()
        engine.dispose()
    assert got[0] == got[1]
    assert len(got[0][1]) == 21  # 7 teams x 3 models, one hour


def test_only_the_periodic_flush_is_paced_and_a_backlog_within_one_budget(engine, spool, monkeypatch):
    budgets: list[float] = []
    real = pacing.Pace.__init__

    def recording(self: Pace, budget_seconds: float) -> None:
        budgets.append(budget_seconds)
        real(self, budget_seconds)

    monkeypatch.setattr(pacing.Pace, "__init__", recording)
    writer = LedgerWriter(engine, spool, interval=0.2)
    for _ in range(3):  # a backlog of three segments, as after the database was away
        spool.append(spooled())
        spool.seal()

    assert writer.flush(paced=True) == 3
    assert 0 < budgets[0] <= 0.2 * LedgerWriter.PACED_SHARE
    assert all(b <= a for a, b in zip(budgets, budgets[1:], strict=False))  # one budget shared, spent as it goes

    budgets.clear()
    spool.append(spooled())
    assert writer.flush() == 1  # asked for (a drain, the admin API): flat out
    assert budgets == []
