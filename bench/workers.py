"""`meterline serve --workers 2` against one worker (issue 18), side by side in one run.

    python -m bench.workers [--seconds 5] [--rounds 3] [--concurrency 16,64] [--write-results]

Starts the mock upstream, the bare aiohttp pass-through (the reference), `meterline serve` with
one worker and `meterline serve --workers 2`, each with its own ledger and spool, and runs chat
completions, non-stream and stream, at each concurrency against each target, the order
rotating round by round. Each row: requests/s and p50/p99 (wrk when installed), the target's
CPU per answered call (its whole process tree), what the same calls cost the mock and the load
generator, and how busy the host's cores were during the run (/proc/stat, every process of the
host: other sessions' too). On a 2-core host the three share the cores with the target, so the
question is not "twice the throughput" but whether a second worker finds any idle core at all.

Then every process of each target's tree by role (the supervisor, each worker, any child a
worker starts, such as its ledger writer and tokenizer processes): its peak resident memory (VmHWM, /proc), its
proportional share at the end (Pss, shared pages split between the processes mapping them)
and its CPU time over the timed runs.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import load
from bench.report import replace_section
from bench.side_by_side import load_average, measure_load, median, rotations, running
from bench.targets import Target, meterline, mock, passthrough, process_tree

RESULTS = Path(__file__).with_name("RESULTS.md")
MODES = (("non-stream", False), ("stream", True))
CHUNKS = 20
RSS_GOAL_MB = 150
_TICK = os.sysconf("SC_CLK_TCK")


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of one process, in kB; {} once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in ("VmRSS", "VmHWM")}


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_s(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = stat[stat.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / _TICK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _what(cmd: str) -> str:
    """A short name for a process's command: the module it runs, else its program."""
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "spawn_main" in cmd or "forkserver" in cmd:
        return "multiprocessing child"
    m = re.search(r"(?:-m |from )([\w.]+)", cmd)
    return m.group(1) if m else Path(cmd.split(" ", 1)[0]).name


def roles(root: int, workers: int) -> dict[int, str]:
    """Each process of a `meterline serve` tree by what it is: with `--workers N` the root is
    uvicorn's supervisor and its children running multiprocessing's spawn the workers (by pid
    order); with one worker the root serves. Anything else is named by its parent and what it
    runs: a worker's ledger writer child, the multiprocessing resource tracker."""
    out: dict[int, str] = {}
    n = 0
    for pid, ppid in process_tree(root):
        cmd = _cmdline(pid)
        if pid == root:
            out[pid] = "supervisor" if workers > 1 else "worker"
        elif ppid == root and workers > 1 and "spawn_main" in cmd:
            n += 1
            out[pid] = f"worker {n}"
        else:
            out[pid] = f"{out.get(ppid, '?')}: {_what(cmd)}"
    return out


class Processes:
    """Peak memory and CPU time of every process a target's tree has had, by role."""

    def __init__(self, target: Target, workers: int):
        self.target, self.workers = target, workers
        self.seen: dict[str, dict[str, Any]] = {}

    def sample(self) -> None:
        if self.target.proc is None:
            return
        for pid, role in roles(self.target.proc.pid, self.workers).items():
            st = _status(pid)
            if not st:
                continue
            row = self.seen.setdefault(role, {"pids": set(), "hwm_kb": 0, "pss_kb": 0, "cpu0": {}, "cpu": {}})
            row["pids"].add(pid)
            row["hwm_kb"] = max(row["hwm_kb"], st.get("VmHWM", 0))
            row["pss_kb"] = _pss_kb(pid) or row["pss_kb"]
            row["cpu0"].setdefault(pid, _cpu_s(pid))
            row["cpu"][pid] = _cpu_s(pid)

    def rows(self) -> list[tuple[str, int, float, float, float]]:
        """(role, processes, peak RSS MB, Pss MB at the last sample, CPU s since the first sample)."""
        return [
            (role, len(r["pids"]), r["hwm_kb"] / 1024, r["pss_kb"] / 1024, sum(r["cpu"][p] - r["cpu0"][p] for p in r["cpu"]))
            for role, r in self.seen.items()
        ]


def _host_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every core of the host so far (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]  # idle, iowait
    return sum(f[:8]) - idle, sum(f[:8])


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once waited for
    return r.ru_utime + r.ru_stime


def cell(t: Target, up: Target, stream: bool, concurrency: int, seconds: float) -> dict[str, Any]:
    payload = load.body(stream, CHUNKS)
    up0, gen0, (b0, n0) = up.cpu(), _children_cpu(), _host_busy()
    r, cpu_us = measure_load(t, payload, concurrency, seconds)
    (b1, n1), calls = _host_busy(), max(r.requests, 1)
    return {
        "rps": r.rps, "p50": r.p50, "p99": r.p99, "cpu_us": cpu_us, "errors": r.errors, "tool": r.tool,
        "mock_us": (up.cpu() - up0) / calls * 1e6,
        "gen_us": (_children_cpu() - gen0) / calls * 1e6 if r.tool == "wrk" else float("nan"),
        "busy": (b1 - b0) / max(n1 - n0, 1) * 100,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="16,64", help="comma-separated concurrencies")
    ap.add_argument("--workers", type=int, default=2, help="the --workers of the second Meterline")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="meterline-bench-workers-") as tmp:
        work = Path(tmp)
        up = mock(work)
        one = meterline(work, up.url, name="one", label="Meterline, 1 worker")
        many = meterline(work, up.url, name="many", label=f"Meterline, --workers {args.workers}", workers=args.workers)
        targets = [passthrough(work, up.url), one, many]
        procs = {one.name: Processes(one, 1), many.name: Processes(many, args.workers)}
        rows: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        with running([up, *targets]):
            for t in targets:  # warm-up: imports, pools, every worker's first calls
                for _, stream in MODES:
                    load.run_load(t.url, t.key, load.body(stream, CHUNKS), 4, min(1.0, args.seconds))
            for p in procs.values():
                p.sample()
            startup = {t.name: t.startup_s for t in targets}
            for _, order in rotations(targets, args.rounds):
                for mode, stream in MODES:
                    for c in levels:
                        for t in order:
                            rows.setdefault((mode, c, t.name), []).append(cell(t, up, stream, c, args.seconds))
                            if t.name in procs:
                                procs[t.name].sample()
        loadavg = load_average()
    tool = next(iter(rows.values()))[0]["tool"]

    lines = [
        f"Run of {datetime.now(UTC).isoformat(timespec='seconds')} (UTC): `python -m bench.workers --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}`; load average at the end {loadavg}; load generator {tool} "
        f"(one thread); streams carry {CHUNKS} content chunks. Each cell: median of {args.rounds} rounds, targets rotating. "
        "CPU µs/call: the target's process tree (user + system) per answered call; mock and load generator: the same calls' "
        "CPU in those processes; host busy: all cores of the host over the run (every process, other sessions' too).",
        "",
        "| mode | conc. | target | req/s | vs 1 worker | p50 ms | p99 ms | CPU µs/call | mock µs/call | load gen. µs/call | host busy % | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, _ in MODES:
        for c in levels:
            base = median([x["rps"] for x in rows[(mode, c, one.name)]])
            for t in targets:
                got = rows[(mode, c, t.name)]
                m = {k: median([x[k] for x in got]) for k in ("rps", "p50", "p99", "cpu_us", "mock_us", "gen_us", "busy")}
                vs = f"{m['rps'] / base:.2f}x" if t is many else "–"
                gen = "–" if m["gen_us"] != m["gen_us"] else f"{m['gen_us']:,.0f}"
                lines.append(
                    f"| {mode} | {c} | {t.label} | {m['rps']:,.0f} | {vs} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_us']:,.0f} "
                    f"| {m['mock_us']:,.0f} | {gen} | {m['busy']:.0f} | {sum(x['errors'] for x in got)} |"
                )
    lines += [
        "",
        "| target | process | pids | peak RSS MB (VmHWM) | Pss MB at the end | CPU s over the timed runs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    worst, worst_tree = 0.0, 0.0
    for t in (one, many):
        per_worker: dict[str, float] = {}
        for role, n, hwm, pss, cpu in procs[t.name].rows():
            if role.startswith("worker"):  # a worker, or a child of one (its ledger writer)
                per_worker[role.split(":")[0]] = per_worker.get(role.split(":")[0], 0.0) + hwm
                if ":" not in role:
                    worst = max(worst, hwm)
            lines.append(f"| {t.label} | {role} | {n} | {hwm:.0f} | {pss:.0f} | {cpu:.1f} |")
        worst_tree = max([worst_tree, *per_worker.values()])
    lines += [
        "",
        f"Start-up (spawn to first answered call): 1 worker {startup[one.name]:.2f} s, --workers {args.workers} "
        f"{startup[many.name]:.2f} s. Largest worker's peak RSS {worst:.0f} MB "
        f"(goal: under {RSS_GOAL_MB} MB per worker: {'met' if worst < RSS_GOAL_MB else '**not met**'}); "
        f"with its children (its ledger writer, its tokenizer once started) added: {worst_tree:.0f} MB (peaks added, so an upper bound).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        replace_section(RESULTS, "workers", "## `serve --workers 2` against one worker (issue 18): `python -m bench.workers`\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
