"""Whatever the ledger holds, the chargeback files agree with it and with each other, exactly."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterline.costing import create_engine, create_schema, load_chargeback, settings_from_dict
from meterline.reports import EXPORTS
from tests.seed import event, seed

START = datetime(2026, 6, 1, tzinfo=UTC)
DEPTS = [
    {"id": "research", "cost_center": "CC-100", "teams": [{"id": "nlp"}, {"id": "vision"}]},
    {"id": "product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
]
TEAM_DEPT = {"nlp": "research", "vision": "research", "web": "product", "": ""}

events_st = st.lists(
    st.tuples(
        st.integers(0, 3 * 10**12),  # pico-USD
        st.sampled_from(list(TEAM_DEPT)),
        st.sampled_from(["", "alpha", "=SUM(A1)", "-x"]),
        st.sampled_from(["", "env=prod", "env=dev,owner=@bob"]),
        st.booleans(),  # adjustment
        st.integers(0, 29 * 24),  # hour of the month
    ),
    max_size=40,
)
rules_st = st.fixed_dictionaries(
    {
        "shared_costs": st.lists(
            st.builds(lambda m: {"name": "platform", "monthly_usd": str(m)}, st.decimals(0, 500, places=2)), max_size=1
        ),
        "allocation": st.sampled_from(["proportional", "even"]),
        "markup_percent": st.dictionaries(st.sampled_from(["research", "product"]), st.integers(-30, 30).map(str)),
    }
)


def seed_drawn(engine, rows):
    """Write the events drawn by `events_st` (the statement's property test draws them too)."""
    seed(engine, [
        event(Decimal(pico) / 10**12, START + timedelta(hours=h), department=TEAM_DEPT[team], team=team,
              project=project, tags=tags, adjustment=adj)
        for pico, team, project, tags, adj, h in rows
    ])  # fmt: skip


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=events_st, rules=rules_st)
def test_csv_focus_and_totals_agree_with_the_ledger_for_any_month(tmp_path_factory, rows, rules):
    path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    engine = create_engine(f"sqlite:///{path}")
    create_schema(engine)
    seed_drawn(engine, rows)
    s = settings_from_dict({"departments": DEPTS, "chargeback": rules}, environ={})
    period = "2026-06"

    with engine.connect() as conn:
        ledger_pico = conn.execute(sa.text("SELECT COALESCE(SUM(cost_pico), 0) FROM events")).scalar()
    lines = _csv("".join(EXPORTS["chargeback"]["csv"](engine, s, period)))
    focus = _csv("".join(EXPORTS["chargeback"]["focus"](engine, s, period)))
    cb = load_chargeback(engine, s, period)
    engine.dispose()

    assert sum(Decimal(r["cost_usd"]) for r in lines) == (Decimal(ledger_pico) / 10**12).quantize(Decimal("0.000001"))
    assert sum(int(r["requests"]) for r in lines) == len(rows)
    charge = sum((Decimal(r["charge_usd"]) for r in lines), Decimal(0))
    assert sum((Decimal(r["BilledCost"]) for r in focus), Decimal(0)) == charge
    assert sum(d.charge_usd for d in cb.departments) == charge
    assert sum(d.billed for d in cb.departments) == cb.total
    assert abs(cb.total - charge) < Decimal("0.01")
    for r in lines:
        assert Decimal(r["charge_usd"]) == Decimal(r["cost_usd"]) + Decimal(r["allocated_usd"]) + Decimal(r["markup_usd"])
        assert not r["project"].startswith(("=", "-", "+", "@"))
    assert all(not r["x_Project"].startswith(("=", "-", "+", "@")) for r in focus)
    assert sum(1 for r in lines if r["adjustment"] == "true") == len({(t, p, g) for _, t, p, g, adj, _ in rows if adj})
