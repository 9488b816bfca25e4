"""Ledgers of whole months for the finance files' tests (FOCUS, statements).

- `demo_month`: the demo's company (five departments, its prices, an MCP server), a month of
  seeded calls of every kind, unpriced `house-model` calls included.
- `hard_month`: everything that makes a chargeback hard at once: fixed shared costs, usage no
  department owns, a department with no usage (it gets a line of shared costs only), markup and
  a discount, credit grants, a graduated rate card and a commitment's shortfall, names a spreadsheet would run, unpriced calls, and late usage of the month before,
  which is closed, billed as adjustments in this (open) month.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from meterline.costing import create_engine, create_schema
from meterline.costing.ingest import LedgerWriter
from meterline.costing.spool import Spool
from meterline.demo.org import TEAMS, DemoConfig
from tests.conftest import base_config, run_cli
from tests.seed import event, seed


@dataclass(frozen=True)
class Month:
    config: Path
    period: str
    previous: str


def _write(folder: Path, cfg: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def demo_month(folder: Path, calls: int = 400, seed_: int = 1) -> Month:
    cfg = DemoConfig(folder, "http://127.0.0.1:9", "http://127.0.0.1:9/mcp").as_dict()
    path = _write(folder, cfg)
    engine = create_engine(cfg["database"])
    create_schema(engine)
    rng = random.Random(seed_)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    rows = []
    for _ in range(calls):
        t = rng.choice(TEAMS)
        ts = start + timedelta(minutes=rng.randrange(60 * 24 * 31))
        who = {"department": t.department, "team": t.id, "project": rng.choice(t.projects), "tags": rng.choice(t.tags),
               "user": rng.choice(t.users)}  # fmt: skip
        r = rng.random()
        if r < 0.15:
            tool = rng.choice(["search", "summarize"])
            price = "0.01" if tool == "summarize" else "0.002"
            rows.append(event(price, ts, kind="mcp", provider="tools", model="", tool=tool, method="tools/call",
                              input_tokens=0, output_tokens=0, **who))  # fmt: skip
        elif r < 0.25:
            tokens = rng.randrange(100, 8000)
            rows.append(event(f"{tokens * 0.02 / 1e6:.12f}", ts, kind="embedding", model="text-embedding-3-small",
                              input_tokens=tokens, output_tokens=0, **who))  # fmt: skip
        else:
            model = rng.choice([m for m, _ in t.models])
            inp, out = rng.randrange(100, 20000), rng.randrange(10, 40000)
            cost = "0" if model == "house-model" else f"{(inp * 2.5 + out * 10) / 1e6:.12f}"
            rows.append(event(cost, ts, model=model, priced=model != "house-model", input_tokens=inp,
                              output_tokens=out, **who))  # fmt: skip
    seed(engine, rows)
    engine.dispose()
    return Month(path, "2026-10", "2026-09")


HARD_RULES = {
    "markup_percent": {"product": "12.5", "research": "-3"},
    "shared_costs": [
        {"name": "platform on-call", "monthly_usd": "1250"},
        {"name": "vector store", "monthly_usd": "0.333333"},
    ],
    "allocation": "even",  # so the department without usage takes a share too
}


def hard_month(folder: Path) -> Month:
    """This month (open) after last month was closed; see the module docstring."""
    cfg = base_config(folder, "http://127.0.0.1:9", chargeback=HARD_RULES)
    cfg["departments"] = [
        *cfg["departments"],
        {"id": "legal", "name": "Legal & Compliance", "cost_center": "CC-700"},
    ]
    now = datetime.now(UTC)
    this = now.replace(day=1, hour=0, minute=30, second=0, microsecond=0)
    cfg["credits"] = [  # nlp's grant covers part of its month, product's all of web's usage
        {"id": "nlp-q", "team": "nlp", "amount_usd": "100.333333", "effective_from": this.strftime("%Y-%m-01")},
        {"id": "product-trial", "department": "product", "amount_usd": "50", "effective_from": this.strftime("%Y-%m-01")},
    ]
    cfg["rate_cards"] = [  # research's big model on graduated tiers; product committed to more than it uses
        {"department": "research", "rates": [{"model": "gpt-4.1-mini", "graduated": [{"up_to": "5", "rate_usd": "100"}, {"rate_usd": "50"}]}]},
        {"department": "product", "commitment_usd_monthly": "500"},
    ]  # fmt: skip
    path = _write(folder, cfg)
    engine = create_engine(cfg["database"])
    create_schema(engine)
    last = (this - timedelta(days=1)).replace(day=10, hour=12)
    for ts in (last, this):
        seed(engine, [
            event("1.234567891234", ts, team="nlp", project="alpha", tags="env=prod,feature=search"),
            event("1234.5", ts, team="nlp", project="eval-harness", model="gpt-4.1-mini", input_tokens=9_000_000, output_tokens=1_200_000),
            event("0.000000333333", ts, team="vision", model="text-embedding-3-small", kind="embedding", output_tokens=0),
            event("0", ts, team="vision", model="mystery-model", priced=False),  # no price: billed 0, still a line
            event("2.5", ts, department="product", team="web", cost_center="CC-200", project="=HYPERLINK(\"http://x\")"),
            event("0.75", ts, department="", team="", key_team="ghost"),
            event("0.01", ts, kind="mcp", provider="github", model="", tool="search_code", method="tools/call"),
            event("0.02", ts, kind="mcp", provider="github", model="", tool="\r=1+1", method="tools/call"),
        ])  # fmt: skip
    engine.dispose()
    previous, period = last.strftime("%Y-%m"), this.strftime("%Y-%m")
    run_cli("period", "close", previous, "--config", str(path))
    # Late calls of the closed month, as the proxy's writer sends them: adjustments this month.
    late = [event("0.42", last + timedelta(days=3), team="nlp", project="late-run"),
            event("3.0", last + timedelta(days=4), department="product", team="web", model="house-model", priced=False)]  # fmt: skip
    spool = Spool(folder / "spool")
    for ev in late:
        ev.pop("charge_period"), ev.pop("adjustment")
        spool.append(ev)
    engine = create_engine(cfg["database"])
    LedgerWriter(engine, spool).flush()
    spool.close()
    engine.dispose()
    return Month(path, period, previous)
