"""The ledger writer in a child process against the writer thread (issue 18), side by side.

    python -m bench.writer_process [--seconds 5] [--rounds 3] [--concurrency 16,1] [--write-results]

Starts the mock upstream, the bare aiohttp pass-through and two `meterline serve` processes
that differ only in `server.ledger_writer` (`thread`, `process`), and drives each with wrk
(non-stream chat completions), the order rotating each round. Reported per target and
concurrency, medians over rounds: requests/s, p50 and p99 latency, the p99 added over the mock
directly in the same round, and CPU per answered call (user + system) of the serving process
alone and of its process tree (the writer child included).

`--diagnose` looks for what stalls one call in a hundred at concurrency 1 instead: the same
side by side, with variants of Meterline that each take one suspect away (the writer's batches,
with the writer in a thread and in a process, the budget and key refresh threads, the collector,
the serving process's fsyncs of sealed segments, the GIL switch interval) or put it last in the
host's queue (the writer child at SCHED_IDLE). And the bare pass-through once more with a
neighbour: a process busy at SCHED_IDLE as the writer child is at concurrency 1 (16 ms of CPU
in every 200), started for that target's runs only. What it adds to the pass-through's p99 is
what any background work on the host adds, whoever does it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.load import body, wrk
from bench.report import replace_section
from bench.side_by_side import load_average, rotations, running
from bench.targets import Target, cpu_seconds, meterline, mock, passthrough

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "writer_process"


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` alone (not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The neighbour: 16 ms busy, then idle to the next 200 ms, at the host's lowest priority.
NEIGHBOUR_BUSY_S, NEIGHBOUR_PERIOD_S = 0.016, 0.2
NEIGHBOUR = f"""
import os, time
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < {NEIGHBOUR_BUSY_S}:
        pass
    time.sleep({NEIGHBOUR_PERIOD_S - NEIGHBOUR_BUSY_S})
"""
BESIDE = "passthrough-beside"  # the target measured with the neighbour running


def measure(t: Target, concurrency: int, seconds: float) -> dict[str, float]:
    assert t.proc is not None
    pid = t.proc.pid
    lag0 = lag_counts(t)
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if t.name == BESIDE else None
    try:
        own0, tree0 = own_cpu_seconds(pid), cpu_seconds(pid)
        r = wrk(t.url, t.key, body(False, 20), concurrency, seconds)
        own, tree = own_cpu_seconds(pid) - own0, cpu_seconds(pid) - tree0
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    n = max(r.requests - r.errors, 1)
    out = {"rps": r.rps, "p50": r.p50, "p99": r.p99, "own": own / n * 1e6, "tree": tree / n * 1e6, "errors": r.errors}
    lag1 = lag_counts(t)
    if lag0 and lag1:  # loop wakes later than 2 and 4 ms, per 1,000 wakes
        wakes = max(lag1[0] - lag0[0], 1)
        out["late2"], out["late4"] = ((lag1[i] - lag0[i]) / wakes * 1000 for i in (2, 3))
    return out


# Loaded into a diagnosed `meterline serve` (`--diagnose`): an event-loop task that sleeps 1 ms
# at a time and counts how late it wakes. A late wake is a stall every call in flight shares:
# the loop could not run (another thread held the GIL, the collector ran, the host preempted
# it). Cumulative counts go to $BENCH_LAG_FILE every 0.2 s; the bench diffs them per run.
LAG_PROBE = """
import asyncio, os, time
import meterline.proxy.runtime as _rt
_start = _rt.Runtime.start.__func__
LIMITS = (0.001, 0.002, 0.004, 0.008)
async def _probe():
    counts, last = [0, 0, 0, 0, 0], time.monotonic()
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        late = time.perf_counter() - t - 0.001
        counts[0] += 1
        for i, limit in enumerate(LIMITS, 1):
            counts[i] += late > limit
        if time.monotonic() - last > 0.2:
            last = time.monotonic()
            with open(os.environ['BENCH_LAG_FILE'] + '.tmp', 'w') as f:
                f.write(' '.join(map(str, counts)))
            os.replace(os.environ['BENCH_LAG_FILE'] + '.tmp', os.environ['BENCH_LAG_FILE'])
async def _started(cls, *a, **k):
    rt = await _start(cls, *a, **k)
    rt._tasks.append(asyncio.create_task(_probe()))
    return rt
_rt.Runtime.start = classmethod(_started)
"""


SCHED_IDLE_CHILD = """
import os, subprocess
_popen = subprocess.Popen
def _idle_popen(*a, **k):
    if 'writer_process' in ' '.join(a[0]):
        k['preexec_fn'] = lambda: os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    return _popen(*a, **k)
subprocess.Popen = _idle_popen
"""


def lag_counts(t: Target) -> list[int] | None:
    path = t.env.get("BENCH_LAG_FILE")
    if not path:
        return None
    time.sleep(0.3)  # the probe's next write
    try:
        return [int(x) for x in Path(path).read_text().split()]
    except (FileNotFoundError, ValueError):
        return None


def variant(work: Path, upstream: str, name: str, label: str, server: dict[str, object], *,
            budgets: dict[str, object] | None = None, prelude: str | None = None) -> Target:  # fmt: skip
    """A `meterline serve` target with `server:` and `budgets:` overrides, and Python run before
    the CLI in its process (`prelude`: a diagnostic, never a setting users have)."""
    t = meterline(work, upstream, name=name, label=label, server=server)
    cfg_path = Path(t.env["METERLINE_CONFIG"])
    cfg = json.loads(cfg_path.read_text())
    cfg["budgets"] = {**cfg.get("budgets", {}), **(budgets or {})}
    cfg_path.write_text(json.dumps(cfg, indent=2))
    if prelude is not None:
        argv = t.cmd[3:]  # after `python -m meterline`
        code = f"import sys, runpy\n{prelude}\n{LAG_PROBE}\nsys.argv = ['meterline', *{argv!r}]\nrunpy.run_module('meterline', run_name='__main__')"
        t.cmd = [sys.executable, "-c", code]
        t.env["BENCH_LAG_FILE"] = str(cfg_path.with_name("lag.txt"))
    return t


def diagnose_targets(work: Path, upstream: str) -> list[Target]:
    quiet = {"key_refresh_seconds": 3600}
    beside = passthrough(work, upstream)
    beside.name, beside.log = BESIDE, work / f"{BESIDE}.log"
    beside.label = f"bare pass-through, a neighbour busy {NEIGHBOUR_BUSY_S * 1000:.0f} ms in {NEIGHBOUR_PERIOD_S * 1000:.0f} (SCHED_IDLE)"
    return [
        beside,
        variant(work, upstream, "thread", "writer thread (as before)", {"ledger_writer": "thread"}, prelude=""),
        variant(work, upstream, "thread-idle", "writer thread, no batch during the run",
                {"ledger_writer": "thread", "flush_interval_ms": 600_000}, prelude=""),  # fmt: skip
        variant(work, upstream, "process", "writer process", {"ledger_writer": "process"}, prelude=""),
        variant(work, upstream, "process-quiet", "writer process, budget and key refresh off",
                {"ledger_writer": "process", **quiet}, budgets={"refresh_seconds": 3600}, prelude=""),  # fmt: skip
        variant(work, upstream, "process-nogc", "writer process, collector off", {"ledger_writer": "process"}, prelude="import gc; gc.disable()"),
        variant(work, upstream, "process-nofsync", "writer process, no fsync in the serving process", {"ledger_writer": "process"},
                prelude="import os; os.fsync = lambda fd: None"),  # fmt: skip
        variant(work, upstream, "process-idle", "writer process, no batch during the run",
                {"ledger_writer": "process", "flush_interval_ms": 600_000}, prelude=""),  # fmt: skip
        variant(work, upstream, "process-schedidle", "writer process, child at SCHED_IDLE", {"ledger_writer": "process"},
                prelude=SCHED_IDLE_CHILD),  # fmt: skip
        variant(work, upstream, "thread-switch", "writer thread, switch interval 0.5 ms", {"ledger_writer": "thread"},
                prelude="sys.setswitchinterval(0.0005)"),  # fmt: skip
    ]


def segment_cpu(events: int = 200, batches: int = 10) -> tuple[float, float]:
    """The CPU one segment's write holds a thread for, in this process (ms, median and max over
    `batches` segments of `events` calls, SQLite): what the writer thread took from the event
    loop's GIL per flush, 200 events being one flush interval of concurrency 1 at ~1,000 calls/s."""
    import secrets

    import sqlalchemy as sa

    from meterline.costing import create_engine, create_schema
    from meterline.costing.ingest import write_segment
    from meterline.costing.spool import Spool
    from meterline.costing.tables import EVENTS

    def blank(c: sa.Column[object]) -> object:
        t = c.type.impl if isinstance(c.type, sa.TypeDecorator) else c.type
        return False if isinstance(t, sa.Boolean) else 0 if isinstance(t, sa.Integer) else ""

    template = {c.name: blank(c) for c in EVENTS.columns if c.name not in ("charge_period", "adjustment")}
    template |= {"kind": "llm", "status": "ok", "department": "research", "team": "nlp", "key_team": "nlp", "model": "bench-model",
                 "provider": "mock", "input_tokens": 30, "output_tokens": 40, "cost_pico": 28_500_000, "priced": True}  # fmt: skip
    times = []
    with tempfile.TemporaryDirectory(prefix="meterline-bench-seg-") as tmp:
        engine = create_engine(f"sqlite:///{tmp}/ledger.db")
        create_schema(engine)
        spool = Spool(Path(tmp) / "spool")
        for _ in range(batches + 2):
            for _ in range(events):
                spool.append(template | {"call_id": secrets.token_hex(8), "ts": datetime.now(UTC)})
            (path,) = spool.seal()
            t0 = time.thread_time()
            write_segment(engine, path, Path(tmp) / "rejected")
            times.append((time.thread_time() - t0) * 1e3)
            path.unlink()
        spool.close()
        engine.dispose()
    times = times[2:]  # the first writes warm the caches
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", default="16,1")
    p.add_argument("--diagnose", action="store_true", help="c1 stall suspects, one taken away per variant")
    p.add_argument("--write-results", action="store_true")
    args = p.parse_args(argv)
    if args.diagnose:
        args.concurrency = "1"
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="meterline-bench-wp-") as tmp:
        work = Path(tmp)
        up = mock(work)
        targets = [up, passthrough(work, up.url)]
        if args.diagnose:
            targets += diagnose_targets(work, up.url)
        else:
            targets += [
                meterline(work, up.url, name="thread", label="Meterline, writer thread", server={"ledger_writer": "thread"}),
                meterline(work, up.url, name="process", label="Meterline, writer process", server={"ledger_writer": "process"}),
            ]
        with running(targets):
            for _, order in rotations(targets, args.rounds):
                for c in levels:
                    for t in order:
                        rows.setdefault((t.name, c), []).append(measure(t, c, args.seconds))
        labels = {t.name: t.label for t in targets}

    med = statistics.median
    lines = [
        f"Run of {datetime.now(UTC).isoformat(timespec='seconds')} (UTC): `python -m bench.writer_process --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}{' --diagnose' if args.diagnose else ''}`; load average at the end "
        f"{load_average()}. Non-stream chat completions (wrk, one thread), SQLite ledger, "
        "one serving process each, medians over rounds.",
        "",
        "| concurrency | target | req/s | p50 ms | p99 ms | added p99 ms | CPU µs/call, serving process | CPU µs/call, process tree | errors |"
        + (" loop late > 2 ms / > 4 ms, per 1,000 wakes |" if args.diagnose else ""),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.diagnose else ""),
    ]
    for c in levels:
        base = rows[("direct", c)]
        for name, label in labels.items():
            got = rows[(name, c)]
            added = med(g["p99"] - b["p99"] for g, b in zip(got, base, strict=True))
            cpu = (f"{med(g['own'] for g in got):,.0f}", f"{med(g['tree'] for g in got):,.0f}") if name != "direct" else ("–", "–")
            lines.append(
                f"| {c} | {label} | {med(g['rps'] for g in got):,.0f} | {med(g['p50'] for g in got):.2f} | "
                f"{med(g['p99'] for g in got):.2f} | {added:.2f} | {cpu[0]} | {cpu[1]} | {sum(int(g['errors']) for g in got)} |"
                + (f" {med(g['late2'] for g in got):.1f} / {med(g['late4'] for g in got):.1f} |" if "late2" in got[0] else (" – |" if args.diagnose else ""))
            )
    if args.diagnose:
        cpu_med, cpu_max = segment_cpu()
        lines += ["", f"One flush's segment of 200 calls written in process: {cpu_med:.1f} ms of CPU (median of 10; max {cpu_max:.1f} ms)."]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        section, title = (SECTION + "-p99", "## What stalled one call in a hundred at concurrency 1 (issue 18)") if args.diagnose else (
            SECTION, "## The ledger writer process: CPU per call and p99 (issue 18)")  # fmt: skip
        replace_section(RESULTS, section, title + "\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
