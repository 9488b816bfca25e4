"""Ledger ingest: events/s through `costing.write_events`, as the spool writers of replicas do it.

    python -m bench.ingest [--events 200000] [--batch 1000] [--postgres URL] [--write-results]

For each ledger (a SQLite file, and PostgreSQL when it answers) it measures, on a fresh
database each time:
- one writer: batches of `--batch` synthetic events (bench/ledger_scale.py's traffic), oldest
  first, as one proxy's LedgerWriter does;
- replayed batches: the same batches written again (a spool replayed after a crash or a
  retried batch): every insert conflicts, nothing reaches the rollups;
- PostgreSQL only, 2 and 4 writers at once (one thread and engine each, as replicas are), the
  traffic dealt out to them in turn so their rollup upserts hit the same rows.
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.ledger_scale import Traffic
from bench.report import replace_section
from meterline.costing import create_engine, create_schema, write_events

ROOT = Path(__file__).resolve().parent.parent
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _fresh_sqlite(out: Path) -> str:
    path = out / f"ingest-{secrets.token_hex(4)}.db"
    return f"sqlite:///{path}"


class FreshPostgres:
    """A scratch database on the server, dropped afterwards."""

    def __init__(self, server_url: str):
        self.admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        self.name = "meterline_bench_" + secrets.token_hex(4)

    def __enter__(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        return self.admin.url.set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc: Any) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def run_writers(url: str, batches: list[list[dict[str, Any]]], writers: int) -> tuple[float, int]:
    """Write `batches` with `writers` threads (each its own engine); (seconds, events written)."""
    engines = [create_engine(url) for _ in range(writers)]
    written = [0] * writers
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for rows in batches[i::writers]:
                written[i] += write_events(engines[i], [dict(r) for r in rows])
        except BaseException as e:  # noqa: BLE001 - reported after the join
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for e in engines:
        e.dispose()
    if errors:
        raise errors[0]
    return seconds, sum(written)


def measure(url: str, batches: list[list[dict[str, Any]]], writers: int = 1, replay: bool = False) -> dict[str, Any]:
    engine = create_engine(url)
    create_schema(engine)
    engine.dispose()
    n = sum(len(b) for b in batches)
    seconds, written = run_writers(url, batches, writers)
    assert written == n, f"{written} of {n} written"
    row: dict[str, Any] = {"writers": writers, "events": n, "seconds": seconds, "events_per_s": n / seconds}
    if replay:
        again, rewritten = run_writers(url, batches, writers)
        assert rewritten == 0, "a replayed batch inserted events twice"
        row["replay_events_per_s"] = n / again
    check = create_engine(url)
    with check.connect() as conn:
        events = conn.execute(sa.text("SELECT count(*), sum(cost_pico) FROM events")).one()
        rollups = conn.execute(sa.text("SELECT sum(requests), sum(cost_pico) FROM rollups_hourly")).one()
    check.dispose()
    assert tuple(events) == tuple(rollups) and events[0] == n, (events, rollups)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--postgres", default=PG_DEFAULT, help="a server URL; its database is only used to create scratch ones")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--write-results", action="store_true", help="replace this bench's section of bench/RESULTS.md")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    loadavg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    batches = list(Traffic(args.events).batches(args.batch))

    results: list[tuple[str, dict[str, Any]]] = []
    url = _fresh_sqlite(args.out)
    results.append(("SQLite (WAL file)", measure(url, batches, replay=True)))
    for suffix in ("", "-wal", "-shm"):
        Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    try:
        for writers in (1, 2, 4):
            with FreshPostgres(args.postgres) as pg:
                results.append(("PostgreSQL", measure(pg, batches, writers=writers, replay=writers == 1)))
    except sa.exc.OperationalError as e:
        print(f"PostgreSQL not measured: {str(e.orig).splitlines()[0]}")

    lines = [
        "### Ledger ingest (issue 7): `python -m bench.ingest`",
        "",
        f"{args.events:,} synthetic events (bench/ledger_scale.py's traffic) through `costing.write_events` in "
        f"batches of {args.batch:,}, each ledger fresh; rollups checked equal to the events afterwards. "
        "\"Replayed\" writes the same batches again (every insert conflicts and is skipped). Writers on "
        "PostgreSQL are threads with an engine each, as replicas are, dealt batches in turn so their "
        "rollup upserts meet on the same rows.",
        "",
        f"Machine: {os.cpu_count()} cores, load average {loadavg} when the run began (other work shares "
        "the machine; compare rows of one run, not runs).",
        "",
        "| ledger | writers | events/s | replayed events/s |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results:
        replay = f"{r['replay_events_per_s']:,.0f}" if "replay_events_per_s" in r else ""
        lines.append(f"| {name} | {r['writers']} | {r['events_per_s']:,.0f} | {replay} |")
    md = "\n".join(lines)
    print(md)
    if args.write_results:
        replace_section(ROOT / "bench" / "RESULTS.md", "fleet-ingest", md)


if __name__ == "__main__":
    main()
