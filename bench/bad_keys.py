"""Made-up keys against one `meterline serve` on PostgreSQL: what they cost the proxy and the ledger.

    python -m bench.bad_keys [--seconds 10] [--concurrency 32] [--postgres URL] [--write-results]

A key the proxy's cache does not know is looked up in the ledger (so a key made a moment ago
works on its first call); a secret the ledger does not have is remembered as unknown for a
minute, and unknown secrets that arrive while a lookup runs share the next one's query. This
drives `--concurrency` aiohttp clients at `/v1/chat/completions` for `--seconds` per scenario:
a valid key (reference), one made-up key over and over, and a fresh made-up key on every
request (the worst case: nothing to remember). Reports requests/s, p50/p99, and the ledger
queries per refused request, read from the proxy's `meterline_key_lookups` gauge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.ingest import PG_DEFAULT, FreshPostgres
from bench.replicas import UPSTREAM_KEY, Fleet, free_port, wait_http
from bench.report import replace_section
from meterline.costing import create_engine, create_schema

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


def lookups(url: str) -> int:
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    m = re.search(r"^meterline_key_lookups (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


async def drive(url: str, key_of: Any, seconds: float, concurrency: int, expect: int) -> dict[str, Any]:
    latencies: list[float] = []
    unexpected = 0
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal unexpected
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                async with s.post(url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key_of()}"}) as r:
                    await r.read()
                    if r.status != expect:
                        unexpected += 1
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
        "unexpected": unexpected,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--postgres", default=PG_DEFAULT)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()

    loadavg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "meterline.testing.upstream", "--port", str(port), "--api-key", UPSTREAM_KEY, "--no-record"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", sim)
        with tempfile.TemporaryDirectory() as tmp, FreshPostgres(args.postgres) as db:
            engine = create_engine(db)
            create_schema(engine)
            engine.dispose()
            fleet = Fleet(Path(tmp), db, f"http://127.0.0.1:{port}", 1)
            url = fleet.urls[0]
            try:
                made_up = "sk-ml-" + secrets.token_urlsafe(32)
                scenarios = [
                    ("valid key", lambda: fleet.key, 200),
                    ("one made-up key, repeated", lambda: made_up, 401),
                    ("a new made-up key every request", lambda: "sk-ml-" + secrets.token_urlsafe(32), 401),
                ]
                for name, key_of, expect in scenarios:
                    before = lookups(url)
                    r = asyncio.run(drive(url, key_of, args.seconds, args.concurrency, expect))
                    r["lookups"] = lookups(url) - before
                    r["name"] = name
                    r["per_request"] = r["lookups"] / r["requests"] if expect == 401 else None
                    rows.append(r)
                    print(f"{name:<34} {r['rps']:>8,.0f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
                          f"{r['requests']:,} requests, {r['lookups']:,} lookups, {r['unexpected']} unexpected answers")  # fmt: skip
            finally:
                fleet.stop()
    finally:
        sim.terminate()
        sim.wait()
    if args.write_results:
        write_results(rows, args, loadavg)


def write_results(rows: list[dict[str, Any]], args: argparse.Namespace, loadavg: str) -> None:
    lines = [
        "### Made-up keys (issue 13): `python -m bench.bad_keys`",
        "",
        f"One `meterline serve` on PostgreSQL, {args.concurrency} aiohttp clients posting chat completions for "
        f"{args.seconds:g} s per row. A key the cache does not know is looked up in the ledger (new keys work on their "
        "first call); unknown secrets are remembered for a minute (at most 100,000) and those arriving during a lookup "
        "share the next query. \"Queries per refused request\" is the proxy's `meterline_key_lookups` over the requests.",
        "",
        f"Machine: {os.cpu_count()} cores, load average {loadavg} when the run began (the load generator, the proxy, the "
        "upstream simulator and PostgreSQL share them).",
        "",
        "| keys | requests/s | p50 ms | p99 ms | requests | ledger queries | queries per refused request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per = "" if r["per_request"] is None else f"{r['per_request']:.3f}"
        lines.append(
            f"| {r['name']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']:,} | {r['lookups']:,} | {per} |"
        )
    replace_section(ROOT / "bench" / "RESULTS.md", "bad-keys", "\n".join(lines))


if __name__ == "__main__":
    main()
