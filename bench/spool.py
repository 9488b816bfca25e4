"""The JetStream spool against the disk spool, side by side in one run: what `server.spool_url` costs.

    python -m bench.spool [--seconds 5] [--rounds 3] [--concurrency 1,16] [--nats nats://127.0.0.1:4222] [--write-results]

Starts the mock upstream and two `meterline serve` processes that differ only in their spool:
the local disk (`server.spool_dir`, one write(2) per event, fsync per batch) and NATS JetStream
(`server.spool_url`: each response's end waits for the broker's acknowledgement of its event;
every event is then consumed from the stream into the same kind of SQLite ledger). Each
scenario (chat completions non-stream and stream, at each concurrency) runs on both per round,
the order alternating; the table shows the median over rounds of requests/s, p50/p99 latency
and CPU per call of the proxy process (the nats-server's own CPU is shown apart, per call of
the JetStream target: it is work the broker's host does).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import load, targets
from bench.report import aggregate, replace_section

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.spool", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--write-results", action="store_true", help="replace the jetstream-spool section of bench/RESULTS.md")
    return ap.parse_args(argv)


def nats_server_cpu() -> float:
    """CPU seconds of the local nats-server process (0 if it is not local)."""
    out = subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True, text=True).stdout.split()
    return sum(targets.cpu_seconds(int(pid)) for pid in out)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = datetime.now(UTC)
    out: Path = a.out or ROOT / "bench" / "out" / ("spool-" + started.strftime("%Y%m%dT%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(3)
    stream = {"stream": f"BENCH_SPOOL_{tag}", "subject": f"bench.{tag}.events",
              "rejected_subject": f"bench.{tag}.rejected", "consumer": f"bench-{tag}"}  # fmt: skip
    mock = targets.mock(out)
    mock.start()
    ts = [mock]
    try:
        for t in (
            targets.meterline(out, mock.url, name="disk", label="Meterline, disk spool"),
            targets.meterline(out, mock.url, name="jetstream", label="Meterline, JetStream spool",
                              server={"spool_url": a.nats, "jetstream": stream}),  # fmt: skip
        ):
            t.start()
            if t.failed:
                print(f"bench.spool: {t.label} did not start: {t.failed}", file=sys.stderr)
                return 1
            ts.append(t)
        runs, broker_cpu = measure(ts, a)
    finally:
        for t in reversed(ts):
            t.stop()
        asyncio.run(_delete(a.nats, stream["stream"]))
    md = markdown(runs, broker_cpu, a, started)
    (out / "results.md").write_text(md)
    print(md)
    if a.write_results:
        replace_section(ROOT / "bench" / "RESULTS.md", "jetstream-spool", md)
    return 0


def measure(ts: list[targets.Target], a: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[tuple[bool, int], list[float]]]:
    concs = [int(c) for c in a.concurrency.split(",")]
    for t in ts:  # warm up
        for stream in (False, True):
            load.run_load(t.url, t.key, load.body(stream, a.chunks), 4, 1.0)
    runs: list[dict[str, Any]] = []
    broker: dict[tuple[bool, int], list[float]] = {}
    for rnd in range(a.rounds):
        for stream in (False, True):
            payload = load.body(stream, a.chunks)
            for c in concs:
                k = rnd % len(ts)
                for t in ts[k:] + ts[:k]:
                    cpu0, b0 = t.cpu(), nats_server_cpu()
                    r = load.run_load(t.url, t.key, payload, c, a.seconds)
                    cpu_us = (t.cpu() - cpu0) / max(1, r.requests) * 1e6
                    if t.name == "jetstream":
                        broker.setdefault((stream, c), []).append((nats_server_cpu() - b0) / max(1, r.requests) * 1e6)
                    row = {"round": rnd, "api": "chat", "stream": stream, "concurrency": c, "target": t.name,
                           **vars(r), "rss_mb": t.sample_rss() / 2**20, "cpu_us": cpu_us}  # fmt: skip
                    runs.append(row)
                    print(f"r{rnd} {'stream' if stream else 'non-stream'} c{c} {t.name}: {r.rps:.0f} req/s, "
                          f"p50 {r.p50:.2f} ms, p99 {r.p99:.2f} ms, {cpu_us:.0f} µs CPU/call", flush=True)  # fmt: skip
                    time.sleep(0.2)
    return runs, broker


def markdown(runs: list[dict[str, Any]], broker: dict[tuple[bool, int], list[float]], a: argparse.Namespace,
             started: datetime) -> str:  # fmt: skip
    agg = aggregate(runs)
    lines = [
        "### The JetStream spool against the disk spool (issue 18): `python -m bench.spool`",
        "",
        f"Run of {started.isoformat(timespec='seconds')} (UTC): {a.rounds} rounds of {a.seconds:g} s, "
        f"{a.chunks} chunks per stream, one `meterline serve` worker each, SQLite ledger, nats-server on loopback "
        "(file storage), all on this machine's 2 cores with the load generator and the mock. Medians over rounds.",
        "",
        "| scenario | spool | req/s | p50 ms | p99 ms | added p99 ms | proxy CPU µs/call | nats-server CPU µs/call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stream in (False, True):
        for c in sorted({r["concurrency"] for r in runs}):
            for name, label in (("disk", "disk"), ("jetstream", "JetStream")):
                g = agg.get(("chat", stream, c, name))
                if g is None:
                    continue
                b = sorted(broker.get((stream, c), []))
                broker_us = f"{b[len(b) // 2]:.0f}" if name == "jetstream" and b else "–"
                lines.append(
                    f"| {'stream' if stream else 'non-stream'} c{c} | {label} | {g['rps']:.0f} | {g['p50']:.2f} | "
                    f"{g['p99']:.2f} | {g['added_p99']:.2f} | {g['cpu_us']:.0f} | {broker_us} |"
                )
    return "\n".join(lines) + "\n"


async def _delete(url: str, stream: str) -> None:
    import nats

    try:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    except Exception:  # noqa: BLE001 - nothing to clean up
        return
    try:
        await nc.jetstream().delete_stream(stream)
    except Exception:  # noqa: BLE001 - already gone
        pass
    await nc.close()


if __name__ == "__main__":
    sys.exit(main())
