"""Credits over random ledgers and grants: never more drawn than granted, and not a cent made
or lost between the ledger, the chargeback, FOCUS and the statements."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterline.costing import create_engine, create_schema, load_chargeback, settings_from_dict
from meterline.costing.credit_ledger import all_grants, drawdown
from meterline.costing.credits import Grant, Spend, draw_down
from meterline.reports import EXPORTS
from meterline.reports.statement import statement
from tests.seed import event, seed

START = datetime(2026, 6, 1, tzinfo=UTC)
DEPTS = [
    {"id": "research", "cost_center": "CC-100", "teams": [{"id": "nlp"}, {"id": "vision"}]},
    {"id": "product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
]
TEAM_DEPT = {"nlp": "research", "vision": "research", "web": "product"}
SCOPES = [("team", "nlp"), ("team", "vision"), ("team", "web"), ("department", "research"), ("department", "product")]

grant_st = st.builds(
    lambda i, scope, amount, start_h, length_h, prio, recurring, rollover: Grant(
        id=f"g{i}", scope=scope, amount_pico=amount, effective_from=START - timedelta(days=40) + timedelta(hours=start_h),
        expires=None if length_h is None else START + timedelta(hours=start_h + length_h, seconds=7 * i),
        priority=prio, recurring=recurring, rollover_max_pico=rollover if recurring else None,
    ),  # fmt: skip
    st.integers(0, 10**6),
    st.sampled_from(SCOPES),
    st.integers(0, 5 * 10**12),
    st.integers(0, 80 * 24),
    st.one_of(st.none(), st.integers(1, 60 * 24)),
    st.integers(0, 2),
    st.booleans(),
    st.integers(0, 3 * 10**12),
)
grants_st = st.lists(grant_st, max_size=5, unique_by=lambda g: g.id)
spend_st = st.lists(
    st.tuples(st.integers(0, 90 * 24 * 60), st.sampled_from(list(TEAM_DEPT)), st.integers(0, 2 * 10**12)), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(grants=grants_st, spend=spend_st)
def test_what_is_drawn_never_exceeds_what_was_granted_or_spent(grants, spend):
    base = START - timedelta(days=40)
    # Each bucket a line of its own (line=(n,)), so what it drew can be read back.
    buckets = [Spend(base + timedelta(minutes=m), TEAM_DEPT[t], t, "p", pico, (n,)) for n, (m, t, pico) in enumerate(spend)]
    d = draw_down(grants, buckets, base + timedelta(days=100))
    for inst in d.instances:
        assert 0 <= inst.drawn_pico <= inst.amount_pico
        assert inst.carried_pico <= (inst.grant.rollover_max_pico or 0)
    for g in grants:
        assert d.drawn(g.id) <= d.granted(g.id)
    total = sum(i.drawn_pico for i in d.instances)
    assert total <= sum(s.pico for s in buckets)
    assert sum(d.by_day.values()) == sum(d.by_period.values()) == sum(d.by_line.values()) == total
    # Greedy: a grant that still has credit at the end had it at every earlier call it could
    # take, so each such call was drawn in full.
    for s in buckets:
        usable = [i for i in d.instances if i.grant.scope in (("team", s.team), ("department", s.department)) and i.counts_at(s.ts)]
        if any(i.remaining_pico > 0 for i in usable):
            assert d.by_line.get(("p", s.department, s.team, *s.line), 0) == s.pico


events_st = st.lists(
    st.tuples(
        st.integers(0, 3 * 10**12),  # pico-USD
        st.sampled_from(list(TEAM_DEPT)),
        st.sampled_from(["", "alpha"]),
        st.integers(0, 29 * 24 * 60),  # minute of the month
    ),
    max_size=30,
)
config_grants_st = st.lists(
    st.fixed_dictionaries(
        {
            "scope": st.sampled_from(SCOPES),
            "amount": st.decimals(0, 5, places=6),
            "day": st.integers(1, 28),
            "priority": st.integers(0, 2),
            "recurring": st.booleans(),
        }
    ),
    max_size=4,
)
cards_st = st.lists(
    st.fixed_dictionaries(
        {
            "department": st.sampled_from(["research", "product"]),
            "effective_from": st.sampled_from(["2026-01-01", "2026-06-10", "2026-06-20"]),
            "rates": st.lists(
                st.one_of(
                    st.builds(lambda r: {"flat_usd": str(r)}, st.decimals(0, 1000, places=3)),
                    st.builds(
                        lambda a, r1, r2, mode: {mode: [{"up_to": str(a), "rate_usd": str(r1)}, {"rate_usd": str(r2)}]},
                        st.decimals("0.000001", 1, places=6), st.decimals(0, 1000, places=3), st.decimals(0, 1000, places=3),
                        st.sampled_from(["graduated", "volume"]),
                    ),
                ),
                max_size=1,
            ),
            "commitment_usd_monthly": st.one_of(st.none(), st.decimals(0, 20, places=2).map(str)),
        }
    ).map(lambda c: {k: v for k, v in c.items() if v is not None}),
    max_size=2,
)
rules_st = st.fixed_dictionaries(
    {
        "shared_costs": st.lists(st.builds(lambda m: {"name": "platform", "monthly_usd": str(m)}, st.decimals(0, 50, places=2)), max_size=1),
        "markup_percent": st.dictionaries(st.sampled_from(["research", "product"]), st.integers(-30, 30).map(str)),
    }
)


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=events_st, grants=config_grants_st, rules=rules_st, cards=cards_st)
def test_no_cent_is_made_or_lost_between_ledger_chargeback_focus_and_statements(tmp_path_factory, rows, grants, rules, cards):
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}")
    create_schema(engine)
    seed(engine, [
        event(Decimal(pico) / 10**12, START + timedelta(minutes=m), department=TEAM_DEPT[team], team=team, project=project)
        for pico, team, project, m in rows
    ])  # fmt: skip
    credits = [
        {"id": f"g{i}", g["scope"][0]: g["scope"][1], "amount_usd": str(g["amount"]), "effective_from": f"2026-06-{g['day']:02d}",
         "priority": g["priority"], **({"recurring": "monthly"} if g["recurring"] else {})}
        for i, g in enumerate(grants)
    ]  # fmt: skip
    s = settings_from_dict({"departments": DEPTS, "chargeback": rules, "credits": credits, "rate_cards": cards}, environ={})
    period = "2026-06"
    lines = _csv("".join(EXPORTS["chargeback"]["csv"](engine, s, period)))
    focus = _csv("".join(EXPORTS["chargeback"]["focus"](engine, s, period)))
    cb = load_chargeback(engine, s, period)
    d = drawdown(engine, all_grants(engine, s), datetime(2026, 7, 1, tzinfo=UTC))
    statements = {x.department: statement(engine, s, period, x.department) for x in cb.departments if x.department}
    engine.dispose()

    six = Decimal("0.000001")
    # Rate cards change the charge, never the cost: the lines' cost is the ledger's.
    ledger = Decimal(sum(p for p, *_ in rows)) / 10**12
    assert sum((Decimal(r["cost_usd"]) for r in lines), Decimal(0)) == ledger.quantize(six, rounding=ROUND_HALF_EVEN)
    drawn = Fraction(sum(d.by_period.values()), 10**12)
    credited = sum((Decimal(r["credit_usd"]) for r in lines), Decimal(0))
    charge = sum((Decimal(r["charge_usd"]) for r in lines), Decimal(0))
    billed = sum((Decimal(r["billed_usd"]) for r in lines), Decimal(0))
    # Never more credited than drawn, nor drawn than granted; all of it when no discount caps it.
    assert Fraction(credited) <= drawn + Fraction(len(lines), 10**6)
    granted = sum((Fraction(d.granted(g["id"]), 10**12) for g in credits), Fraction(0))
    assert drawn <= granted
    if not any(Decimal(v) < 0 for v in rules["markup_percent"].values()) and not cards:
        exact = Decimal(drawn.numerator) / Decimal(drawn.denominator)  # pico-dollars: exact in Decimal
        assert credited == exact.quantize(six, rounding=ROUND_HALF_EVEN)
    # Each line: billed = charge - credit, and credit never above the charge.
    for r in lines:
        assert Decimal(r["billed_usd"]) == Decimal(r["charge_usd"]) - Decimal(r["credit_usd"])
        assert Decimal(r["credit_usd"]) <= max(Decimal(r["charge_usd"]), Decimal(0)) + six
    assert billed == charge - credited
    # FOCUS: usage rows carry the charge, Credit rows the credits, negative.
    assert sum((Decimal(r["BilledCost"]) for r in focus), Decimal(0)) == billed
    assert sum((Decimal(r["BilledCost"]) for r in focus if r["ChargeCategory"] == "Credit"), Decimal(0)) == -credited
    # Each usage row's unit prices times its quantity give its list and contracted cost (a rate
    # card's rows at their tier's rate exactly), and the rows of a rated line add up to its card.
    for r in (r for r in focus if r["ChargeCategory"] == "Usage"):
        for price, cost in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
            assert abs(Decimal(r[price]) * Decimal(r["PricingQuantity"]) - Decimal(r[cost])) <= Decimal("1e-18")
    for ln in cb.lines:
        if ln.rated_tiers:
            assert abs(sum((t.amount for t in ln.rated_tiers), Decimal(0)) - ln.rated_usd) <= six
    # Departments: credits add up from their lines; billed cents add up to the month's total,
    # each within a cent of its exact charge less credits (largest remainder).
    for x in cb.departments:
        mine = [ln for ln in cb.lines if ln.department == x.department]
        assert x.credit_usd == sum((ln.credit_usd for ln in mine), Decimal(0))
        assert abs(x.billed - (x.charge_usd - x.credit_usd)) < Decimal("0.01")
    assert sum((x.billed for x in cb.departments), Decimal(0)) == cb.total
    # Statements: the page adds up to the billed amount, credits included.
    for dept, st_ in statements.items():
        x = next(y for y in cb.departments if y.department == dept)
        assert st_.total == x.billed
        page = st_.usage + st_.adjustments_total + st_.rate_card + st_.shortfall + st_.shared + st_.markup + st_.credits + st_.rounding
        assert page == st_.total
        assert abs(st_.credits + x.credit_usd) < Decimal("0.01")


def test_a_closed_month_keeps_its_credits_and_rated_lines(tmp_path):
    from meterline.costing import close_period

    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    seed(engine, [event("1.5", START + timedelta(days=2), department="research", team="nlp", model="gpt-4o-mini",
                        input_tokens=400_000, output_tokens=100_000)])  # fmt: skip
    s = settings_from_dict(
        {"departments": DEPTS, "credits": [{"id": "g", "team": "nlp", "amount_usd": "1", "effective_from": "2026-06-01"}],
         "rate_cards": [{"department": "research", "rates": [{"model": "gpt-4o-*", "flat_usd": "4"}], "commitment_usd_monthly": "3"}]},
        environ={},
    )  # fmt: skip
    before = load_chargeback(engine, s, "2026-06")
    close_period(engine, s, "2026-06", now=datetime(2026, 7, 2, tzinfo=UTC))
    after = load_chargeback(engine, s, "2026-06")
    engine.dispose()
    usage = next(ln for ln in after.lines if ln.kind == "llm")
    assert (usage.cost_usd, usage.rated_usd, usage.credit_usd) == (Decimal("1.5"), Decimal("2"), Decimal("1"))
    assert [(ln.kind, ln.charge_usd, ln.credit_usd, ln.rated_usd, ln.rated_tiers) for ln in after.lines] == [
        (ln.kind, ln.charge_usd, ln.credit_usd, ln.rated_usd, ln.rated_tiers) for ln in before.lines
    ]
    assert [(t.unit_price, t.quantity) for t in usage.rated_tiers] == [(Decimal("0.000004"), Decimal(500_000))]
    assert next(ln for ln in after.lines if ln.kind == "commitment").charge_usd == Decimal(1)  # 3 committed, 2 used
    assert after.total == before.total == Decimal("2.00")  # 3 charged less 1 of credit
