"""Showback and chargeback read the hourly rollups; on the same data they equal the same
reports computed here straight from the raw events."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meterline.costing import (
    Org,
    from_pico,
    load_chargeback,
    settings_from_dict,
    write_events,
)
from meterline.costing.chargeback import LINE_DIMS, LINE_SUMS, compute
from meterline.reports import showback
from meterline.reports.ledger_queries import events
from tests.seed import event

CONFIG = {
    "departments": [
        {"id": "research", "cost_center": "CC-100", "teams": [{"id": "nlp"}, {"id": "vision"}]},
        {"id": "product", "cost_center": "CC-200", "teams": [{"id": "web"}, {"id": "mobile"}]},
    ],
    "chargeback": {
        "shared_costs": [{"name": "platform", "monthly_usd": "250.00"}],
        "markup_percent": {"product": "7.5"},
    },
}
TEAMS = {"nlp": "research", "vision": "research", "web": "product", "mobile": "product"}


@pytest.fixture
def engine(ledger_engine):
    return ledger_engine


def _seed(engine, n=1500):
    """Calls of every kind and outcome over two months, written in uneven batches."""
    rng = random.Random(7)
    start = datetime(2026, 9, 25, tzinfo=UTC)
    rows = []
    for _ in range(n):
        team = rng.choice(list(TEAMS))
        kind = rng.choice(["llm", "llm", "llm", "embedding", "mcp"])
        mcp = kind == "mcp"
        rows.append(event(
            Decimal(rng.randrange(0, 5_000_000)) / 10**9,
            start + timedelta(minutes=rng.randrange(0, 60 * 24 * 20)),
            department=TEAMS[team] if rng.random() > 0.05 else "",
            team=team,
            project=rng.choice(["", "alpha", "beta"]),
            user=rng.choice(["", "ann", "bob", "cy"]),
            kind=kind,
            provider="github" if mcp else rng.choice(["openai", "anthropic"]),
            model="" if mcp else rng.choice(["gpt-4o-mini", "gpt-4.1", "claude-haiku"]),
            tool=rng.choice(["search", "fetch"]) if mcp else "",
            method=rng.choice(["tools/call", "tools/list"]) if mcp else "/chat/completions",
            status=rng.choice(["ok"] * 8 + ["upstream_error", "client_closed"]),
            usage_source=rng.choice(["reported"] * 4 + ["estimated"]),
            priced=rng.random() > 0.05,
            input_tokens=rng.randrange(0, 5000),
            cached_input_tokens=rng.randrange(0, 100),
            output_tokens=rng.randrange(0, 900),
            reasoning_tokens=rng.randrange(0, 50),
            tags=rng.choice(["", "env=prod", "env=dev,app=x"]),
            adjustment=rng.random() < 0.05,
        ))
    i = 0
    while i < len(rows):
        k = rng.randrange(1, 300)
        write_events(engine, rows[i : i + k])
        i += k


def _raw_showback(engine, period):
    depts = defaultdict(lambda: [Decimal(0), 0])
    teams = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
    estimated = 0
    for e in events(engine, period):
        cost = from_pico(e["cost_pico"])
        d, t = depts[e["department"]], teams[(e["department"], e["team"])]
        d[0] += cost
        d[1] += 1
        t[0] += cost
        t[1] += 1
        t[2] += e["input_tokens"]
        t[3] += e["output_tokens"]
        t[4] += 0 if e["priced"] else 1
        estimated += e["usage_source"] == "estimated"
    return depts, teams, estimated


def _raw_lines(engine, period):
    lines = defaultdict(lambda: dict.fromkeys(LINE_SUMS, 0))
    for e in events(engine, period):
        acc = lines[tuple(e[d] for d in LINE_DIMS)]
        acc["requests"] += 1
        for f in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_pico"):
            acc[f] += e[f]
        acc["tool_calls"] += e["kind"] == "mcp" and e["method"] == "tools/call"
    return [dict(zip(LINE_DIMS, dims, strict=True)) | sums for dims, sums in lines.items()]


@pytest.mark.parametrize("period", ["2026-09", "2026-10"])
def test_showback_from_rollups_equals_showback_from_raw_events(engine, period):
    _seed(engine)
    sb = showback(engine, Org(settings_from_dict(CONFIG)), period)
    depts, teams, estimated = _raw_showback(engine, period)

    assert sb.requests == sum(d[1] for d in depts.values()) > 100
    assert sb.total_usd == sum(d[0] for d in depts.values())
    assert sb.estimated_requests == estimated
    assert sb.unpriced_requests == sum(t[4] for t in teams.values())
    assert {d.department: [d.cost_usd, d.requests] for d in sb.departments} == dict(depts)
    assert {
        (d.department, t.team): [t.cost_usd, t.requests, t.input_tokens, t.output_tokens, t.unpriced_requests]
        for d in sb.departments
        for t in d.teams
    } == dict(teams)


@pytest.mark.parametrize("period", ["2026-09", "2026-10"])
def test_chargeback_from_rollups_equals_chargeback_from_raw_events(engine, period):
    _seed(engine)
    settings = settings_from_dict(CONFIG)

    from_rollups = load_chargeback(engine, settings, period)
    from_raw = compute(_raw_lines(engine, period), settings, period)

    assert len(from_rollups.lines) > 20
    assert from_rollups.as_dict() == from_raw.as_dict()
