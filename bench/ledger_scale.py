"""The ledger at scale: ingest rate, report times over 1M/10M events, bytes per million.

    python -m bench.ledger_scale --events 1000000 [--db URL] [--months 1]

Writes N synthetic events straight into the ledger through `costing.write_events`, in the
batches the spool writer uses, oldest first (as real traffic arrives), then times the
month's showback and chargeback (both read the hourly rollups that `write_events` keeps) and
measures the ledger's size. The traffic is shaped like a mid-size company's: 8 departments,
40 teams, 120 projects, 1,000 users (each in one team), 6 models on 3 providers, 10% MCP tool
calls over 12 tools, 2% errors, some tags.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from meterline.costing import Org, create_engine, create_schema, settings_from_dict, write_events
from meterline.reports import chargeback_report, showback

BATCH = 2000
MODELS = [("openai", "gpt-4o-mini", 15, 60), ("openai", "gpt-4.1", 200, 800), ("openai", "text-embedding-3-small", 2, 0),
          ("anthropic", "claude-haiku", 80, 400), ("anthropic", "claude-sonnet", 300, 1500), ("local", "llama-70b", 0, 0)]


def org_config() -> dict[str, Any]:
    depts = []
    for d in range(8):
        depts.append({"id": f"dept{d}", "name": f"Department {d}", "cost_center": f"CC-{100 + d}",
                      "teams": [{"id": f"team{d}-{t}"} for t in range(5)]})
    return {"database": "sqlite://", "departments": depts}


class Traffic:
    """Deterministic synthetic events, `n` of them spread evenly over `months` months."""

    def __init__(self, n: int, months: int = 1, start: datetime | None = None, seed: int = 8):
        self.n, self.rng = n, random.Random(seed)
        self.start = start or datetime(2026, 9, 1, tzinfo=UTC)
        end_month = self.start.month + months
        end = self.start.replace(year=self.start.year + (end_month - 1) // 12, month=(end_month - 1) % 12 + 1)
        self.step = (end - self.start) / n
        self.teams = [(f"dept{d}", f"team{d}-{t}", f"CC-{100 + d}") for d in range(8) for t in range(5)]
        self.users = [(self.rng.choice(self.teams), f"user{u}", f"proj{self.rng.randrange(120)}") for u in range(1000)]

    def batches(self, size: int = BATCH) -> Any:
        rng, seq = self.rng, 0
        for lo in range(0, self.n, size):
            rows = []
            for i in range(lo, min(lo + size, self.n)):
                (dept, team, cc), user, project = self.users[int(rng.paretovariate(1.2)) % 1000]
                ts = self.start + self.step * i
                mcp = rng.random() < 0.1
                provider, model, pin, pout = MODELS[int(rng.random() ** 2 * len(MODELS))]
                inp, out = rng.randrange(50, 4000), rng.randrange(0, 1000)
                status = "upstream_error" if rng.random() < 0.02 else "ok"
                seq += 1
                rows.append({
                    "call_id": f"{seq:016x}", "ts": ts, "charge_period": f"{ts.year:04d}-{ts.month:02d}", "adjustment": False,
                    "kind": "mcp" if mcp else ("embedding" if "embedding" in model else "llm"), "status": status,
                    "department": dept, "team": team, "cost_center": cc, "key_team": team, "project": project, "user": user,
                    "key_id": f"key-{team}", "provider": "github" if mcp else provider, "model": "" if mcp else model,
                    "tool": f"tool{rng.randrange(12)}" if mcp else "", "method": "tools/call" if mcp else "/chat/completions",
                    "input_tokens": 0 if mcp else inp, "cached_input_tokens": 0 if mcp else inp // 4,
                    "output_tokens": 0 if mcp else out, "reasoning_tokens": 0, "cache_write_tokens": 0,
                    "cost_pico": 1_000_000_000 if mcp else (inp * pin + out * pout) * 1000,
                    "priced": True, "price_version": "bench", "usage_source": "reported",
                    "trace_id": f"{seq:032x}", "parent_span_id": "", "parent_call_id": "",
                    "tags": "env=prod" if rng.random() < 0.5 else "", "http_status": 200 if status == "ok" else 502,
                    "latency_ms": rng.randrange(100, 5000), "request_bytes": 2000, "response_bytes": 1500, "error": "",
                })
            yield rows


def ledger_bytes(engine: sa.Engine) -> int:
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(engine.url.database or "")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "select pg_total_relation_size('events') + pg_total_relation_size('rollups_hourly')").scalar() or 0)


def _timed(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def scale(url: str, events: int, months: int = 1, *, fresh: bool = True) -> dict[str, Any]:
    """Ingest `events` into the ledger at `url` and time the reports; returns the figures."""
    engine = create_engine(url)
    if fresh:
        from sqlmodel import SQLModel

        SQLModel.metadata.drop_all(engine)
    create_schema(engine)
    settings = settings_from_dict(org_config() | {"database": url})
    org = Org(settings)
    traffic = Traffic(events, months)
    t0 = time.perf_counter()
    written = sum(write_events(engine, rows) for rows in traffic.batches())
    ingest_s = time.perf_counter() - t0
    period = f"{traffic.start.year:04d}-{traffic.start.month:02d}"
    with engine.connect() as conn:
        rollup_rows = conn.execute(sa.text("select count(*) from rollups_hourly where charge_period = :p"), {"p": period}).scalar()
    sb_s = _timed(lambda: showback(engine, org, period))
    cb_s = _timed(lambda: chargeback_report(engine, settings, period))
    size = ledger_bytes(engine)
    engine.dispose()
    return {
        "db": engine.dialect.name, "events": written, "months": months, "ingest_s": ingest_s,
        "events_per_s": written / ingest_s, "month_events": written // months, "month_rollup_rows": rollup_rows,
        "showback_s": sb_s, "chargeback_s": cb_s, "bytes": size, "mb_per_million": size / 2**20 / (written / 1e6),
    }


def ledger_markdown(results: list[dict[str, Any]]) -> list[str]:
    out = [
        "| ledger | events | ingest events/s | events in the month | rollup rows in the month | showback s | chargeback s | MB per 1M events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        out.append(
            f"| {r['db']} | {r['events']:,} | {r['events_per_s']:,.0f} | {r['month_events']:,} | {r['month_rollup_rows']:,} | "
            f"{r['showback_s']:.3f} | {r['chargeback_s']:.3f} | {r['mb_per_million']:,.0f} |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ledger_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=1, help="spread the events over this many months")
    ap.add_argument("--db", default="sqlite:///bench/out/scale.db", help="ledger URL (SQLite file or PostgreSQL)")
    ap.add_argument("--json", type=Path, default=None, help="append the figures to this JSON-lines file")
    a = ap.parse_args(argv)
    if a.db.startswith("sqlite:///"):
        Path(a.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    r = scale(a.db, a.events, a.months)
    print("\n".join(ledger_markdown([r])))
    if a.json:
        with a.json.open("a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
