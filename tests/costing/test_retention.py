"""Pruning raw events of old closed months leaves every showback and chargeback as it was."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from meterline.costing import (
    Event,
    Org,
    Rollup,
    close_period,
    create_engine,
    create_schema,
    settings_from_dict,
    write_events,
)
from meterline.costing.retention import prune_events
from meterline.reports import EXPORTS, chargeback_report, showback
from tests.conftest import run_cli
from tests.seed import event

CONFIG = {
    "departments": [
        {"id": "research", "cost_center": "CC-100", "teams": [{"id": "nlp"}, {"id": "vision"}]},
        {"id": "product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
    ],
    "chargeback": {"shared_costs": [{"name": "platform", "monthly_usd": "100"}], "default_markup_percent": "5"},
}
NOW = datetime(2026, 11, 10, tzinfo=UTC)
MONTHS = ("2026-07", "2026-08", "2026-09", "2026-10", "2026-11")


@pytest.fixture
def engine(ledger_engine):
    return ledger_engine


def _seed(engine):
    rows = []
    for m, month in enumerate(MONTHS):
        y, mo = int(month[:4]), int(month[5:])
        for i in range(12):
            team = ("nlp", "vision", "web")[i % 3]
            dept = "product" if team == "web" else "research"
            rows.append(event(f"0.{m + 1}{i:02d}123", datetime(y, mo, 1 + i * 2, i, tzinfo=UTC), department=dept,
                              team=team, project=f"p{i % 2}", model=("gpt-4o-mini", "gpt-4.1")[i % 2],
                              input_tokens=100 + i, output_tokens=10 * i, tags="env=prod" if i % 4 else ""))
    write_events(engine, rows)


def _reports(engine, settings):
    org = Org(settings)
    out = {}
    for month in MONTHS:
        out[month] = (
            showback(engine, org, month, now=NOW).as_dict(),
            chargeback_report(engine, settings, month, now=NOW).as_dict(),
            "".join(EXPORTS["chargeback"]["csv"](engine, settings, month)),
            "".join(EXPORTS["chargeback"]["focus"](engine, settings, month)),
        )
    return out


def _count(engine, table, month):
    import sqlalchemy as sa

    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.charge_period == month)).scalar()


def test_pruning_old_closed_months_changes_no_report(engine):
    settings = settings_from_dict(CONFIG)
    _seed(engine)
    for month in ("2026-07", "2026-08", "2026-09"):
        close_period(engine, settings, month, now=NOW)
    before = _reports(engine, settings)
    rollups = {m: _count(engine, Rollup.__table__, m) for m in MONTHS}

    # 45 days before Nov 10 is Sep 26: July and August ended before it, September did not.
    pruned = prune_events(engine, 45, now=NOW)

    assert pruned.months == {"2026-07": 12, "2026-08": 12}
    assert {m: _count(engine, Event.__table__, m) for m in MONTHS} == {
        "2026-07": 0, "2026-08": 0, "2026-09": 12, "2026-10": 12, "2026-11": 12,
    }
    assert {m: _count(engine, Rollup.__table__, m) for m in MONTHS} == rollups
    assert _reports(engine, settings) == before


def test_open_months_are_never_pruned_however_old(engine):
    settings = settings_from_dict(CONFIG)
    _seed(engine)
    close_period(engine, settings, "2026-08", now=NOW)

    pruned = prune_events(engine, 0, now=NOW)

    assert pruned.months == {"2026-08": 12}
    assert _count(engine, Event.__table__, "2026-07") == 12  # older, but its month is open


def test_pruning_twice_deletes_nothing_more(engine):
    settings = settings_from_dict(CONFIG)
    _seed(engine)
    close_period(engine, settings, "2026-07", now=NOW)
    assert prune_events(engine, 0, now=NOW).events == 12
    assert prune_events(engine, 0, now=NOW).events == 0


def test_db_prune_command_deletes_closed_months_and_keeps_showback(tmp_path):
    db = tmp_path / "ledger.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "database": f"sqlite:///{db}"}))
    engine = create_engine(f"sqlite:///{db}")
    create_schema(engine)
    _seed(engine)
    engine.dispose()
    run_cli("period", "close", "2026-07", "--config", str(cfg))
    shown = run_cli("report", "showback", "--month", "2026-07", "--json", "--config", str(cfg)).stdout

    out = run_cli("db", "prune", "--older-than-days", "30", "--config", str(cfg)).stdout

    assert "2026-07: 12 raw events deleted" in out
    assert run_cli("report", "showback", "--month", "2026-07", "--json", "--config", str(cfg)).stdout == shown
    events = run_cli("export", "events", "--month", "2026-07", "--config", str(cfg)).stdout
    assert len(events.strip().splitlines()) == 1  # the header only


def test_db_prune_refuses_a_negative_age(tmp_path):
    res = run_cli("db", "prune", "--older-than-days", "-1", check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
