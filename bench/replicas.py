"""Two `meterline serve` replicas on one PostgreSQL ledger, under load.

    python -m bench.replicas [--seconds 15] [--concurrency 32] [--stream] [--postgres URL] [--write-results]

Starts the simulated upstream, then one replica and then two on a scratch PostgreSQL
database (each with its own spool, both on the same ledger), and drives them with
`--concurrency` aiohttp clients sending chat completions round-robin across the replicas for
`--seconds`. Reports requests/s, p50/p99 latency, and how long after the load the last
acknowledged call reached the ledger; then checks every acknowledged call is in the ledger
exactly once and the rollups agree. Everything shares this machine's cores (the load
generator, the upstream, the replicas and PostgreSQL), so a second replica adds capacity
only as far as idle cores allow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
import yaml

from bench.ingest import PG_DEFAULT, FreshPostgres
from bench.report import replace_section
from meterline.costing import create_engine, create_schema

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_KEY = "sk-bench-upstream"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Fleet:
    def __init__(self, workdir: Path, database: str, upstream_url: str, replicas: int):
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        env = {**os.environ, "SIM_API_KEY": UPSTREAM_KEY, "METERLINE_ADMIN_KEY": "bench-admin"}
        for i in range(replicas):
            d = workdir / f"replica{i}-{secrets.token_hex(3)}"
            d.mkdir()
            cfg = {
                "database": database,
                "providers": {"sim": {"base_url": upstream_url + "/v1", "api_key_env": "SIM_API_KEY"}},
                "models": [{"name": "gpt-4o-mini", "provider": "sim"}],
                "prices": [{"model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.60"}],
                "departments": [{"id": "eng", "teams": [{"id": "web"}]}],
                "server": {"spool_dir": str(d / "spool")},
            }
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            port = free_port()
            log = (d / "serve.log").open("wb")
            cmd = [sys.executable, "-m", "meterline", "serve", "--config", str(d / "config.yaml"), "--port", str(port), "--log-level", "warning"]
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            self.urls.append(f"http://127.0.0.1:{port}")
            if i == 0:
                out = subprocess.run(
                    [sys.executable, "-m", "meterline", "keys", "create", "--team", "web", "--json", "--config", str(d / "config.yaml")],
                    env=env, capture_output=True, text=True, check=True,
                )
                self.key = json.loads(out.stdout)["key"]
        for url, proc in zip(self.urls, self.procs, strict=True):
            wait_http(url + "/healthz", proc)
        time.sleep(3)  # every replica's key cache has refreshed (key_refresh_seconds: 2)

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=60)


async def load(urls: list[str], key: str, seconds: float, concurrency: int, stream: bool) -> dict[str, Any]:
    acknowledged: list[str] = []
    latencies: list[float] = []
    errors = 0
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        n = i
        async with aiohttp.ClientSession(headers=headers) as s:
            while time.monotonic() < deadline:
                n += 1
                t0 = time.perf_counter()
                try:
                    async with s.post(urls[n % len(urls)] + "/v1/chat/completions", json=body) as r:
                        data = await r.read()
                        ok = r.status == 200 and (not stream or data.rstrip().endswith(b"[DONE]"))
                        call_id = r.headers.get("x-meterline-call-id")
                except aiohttp.ClientError:
                    ok = False
                if ok and call_id:
                    acknowledged.append(call_id)
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(acknowledged),
        "rps": len(acknowledged) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0,
        "errors": errors,
        "acknowledged": acknowledged,
    }


def landed(url: str, acknowledged: list[str], timeout: float = 120) -> float:
    """Seconds until every acknowledged call is in the ledger; checks once each, rollups agree."""
    engine = create_engine(url)
    want = set(acknowledged)
    t0 = time.monotonic()
    while True:
        with engine.connect() as conn:
            have = [r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))]
        if want <= set(have):
            break
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{len(want - set(have))} acknowledged calls never reached the ledger")
        time.sleep(0.1)
    waited = time.monotonic() - t0
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT count(*), sum(cost_pico) FROM events")).one()
        rollups = conn.execute(sa.text("SELECT sum(requests), sum(cost_pico) FROM rollups_hourly")).one()
    engine.dispose()
    assert len(have) == len(set(have)) and tuple(events) == tuple(rollups), (events, rollups)
    return waited


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stream", action="store_true")
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
        with tempfile.TemporaryDirectory() as tmp:
            for replicas in (1, 2):
                with FreshPostgres(args.postgres) as db:
                    engine = create_engine(db)
                    create_schema(engine)
                    engine.dispose()
                    fleet = Fleet(Path(tmp), db, f"http://127.0.0.1:{port}", replicas)
                    try:
                        r = asyncio.run(load(fleet.urls, fleet.key, args.seconds, args.concurrency, args.stream))
                        r["lag_s"] = landed(db, r["acknowledged"])
                    finally:
                        fleet.stop()
                    r["replicas"] = replicas
                    rows.append(r)
                    print(f"{replicas} replica(s): {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                          f"{r['requests']:,} acknowledged, all in the ledger once {r['lag_s']:.1f} s after the load, {r['errors']} errors")
    finally:
        sim.terminate()
        sim.wait()

    kind = "streamed" if args.stream else "non-streamed"
    lines = [
        "### Two replicas on PostgreSQL (issue 7): `python -m bench.replicas`",
        "",
        f"{kind.capitalize()} chat completions from {args.concurrency} aiohttp clients for {args.seconds:g} s, round-robin "
        "over the replicas, against the simulated upstream; each replica its own `meterline serve` process and spool, "
        "one PostgreSQL ledger. \"In the ledger after\" is how long after the load stopped every acknowledged call was "
        "in the ledger (each exactly once, rollups equal to events: checked). All processes share this machine's "
        f"{os.cpu_count()} cores, so the second replica adds what idle cores allow, not a second machine.",
        "",
        f"Machine: {os.cpu_count()} cores, load average {loadavg} when the run began (other work shares "
        "the machine; compare rows of one run, not runs).",
        "",
        "| replicas | requests/s | p50 ms | p99 ms | acknowledged | in the ledger after | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['replicas']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']:,} | {r['lag_s']:.1f} s | {r['errors']} |"
        )
    md = "\n".join(lines)
    print(md)
    if args.write_results:
        replace_section(ROOT / "bench" / "RESULTS.md", "fleet-replicas", md)


if __name__ == "__main__":
    main()
