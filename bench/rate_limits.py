"""What rate limits cost per call (issue 19), side by side and in process.

    python -m bench.rate_limits [--seconds 5] [--rounds 2] [--concurrency 16] [--write-results]

Starts the mock upstream and two `meterline serve` processes, one without limits and one with
limits on the bench key's team, department and key (requests, tokens and USD per minute and
per hour, all far above the load, so nothing is refused), and drives both with the same chat
calls, alternating round by round. Reported per target: requests/s and its own CPU per
answered call (process tree, user + system); the difference is what the limits add.

Then the rate-limit code alone, in process (costing/rate_limits.py `admit` and `settle`, the
CPU of this thread per call, best of 5 x 20,000 calls): a call no limit applies to, one with a
single limit, and one with the seven of the side-by-side run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.report import replace_section
from bench.side_by_side import Sample, chat, load_average, measure, median, rotations, running
from bench.targets import MOCK_KEY, MODEL, ROOT, Target, free_port, mock

RESULTS = Path(__file__).with_name("RESULTS.md")
TEAM_LIMITS = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10**12, "usd_per_hour": 1_000_000}
DEPT_LIMITS = {"requests_per_hour": 10_000_000, "usd_per_minute": 1_000_000}
KEY_LIMITS = {"requests_per_minute": 10_000_000, "tokens_per_hour": 10**12}


def _meterline(workdir: Path, upstream: str, name: str, limited: bool) -> Target:
    """`meterline serve` as bench/targets.py runs it, with or without rate limits."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg: dict[str, Any] = {
        "database": f"sqlite:///{workdir / 'ledger.db'}",
        "providers": {"mock": {"base_url": upstream + "/v1", "api_key_env": "BENCH_MOCK_KEY"}},
        "models": [{"name": MODEL, "provider": "mock"}],
        "prices": [{"model": MODEL, "input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "0.60"}],
        "departments": [{"id": "research", "cost_center": "CC-100", "teams": [{"id": "nlp"}]}],
        "server": {"spool_dir": str(workdir / "spool")},
    }
    if limited:
        cfg["limits"] = [{"team": "nlp", **TEAM_LIMITS}, {"department": "research", **DEPT_LIMITS}]
    path = workdir / "meterline.yaml"
    path.write_text(json.dumps(cfg, indent=2))
    env = {"BENCH_MOCK_KEY": MOCK_KEY, "METERLINE_CONFIG": str(path)}
    out = subprocess.run(
        [sys.executable, "-m", "meterline", "keys", "create", "--team", "nlp", "--name", "bench", "--json"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    created = json.loads(out.stdout)
    if limited:  # the key's own limits, as the admin API stores them
        from meterline.costing import create_engine, load_settings
        from meterline.costing.keys import set_key_limits

        engine = create_engine(load_settings(path).database)
        set_key_limits(engine, created["id"], KEY_LIMITS)
        engine.dispose()
    cmd = [sys.executable, "-m", "meterline", "serve", "--port", str(port), "--log-level", "warning"]
    return Target(name, name, cmd, port, created["key"], env=env, log=workdir / f"{name}.log")


def in_process() -> dict[str, float]:
    """`admit` + `settle` alone, CPU µs per call (this thread's), best of 5 x 20,000 calls."""
    from datetime import timedelta

    from meterline.costing import create_engine, create_schema, settings_from_dict
    from meterline.costing.prices import PriceBook
    from meterline.costing.rate_leases import RateLeases
    from meterline.costing.rate_limits import RateLimits

    settings = settings_from_dict(
        {
            "departments": [{"id": "research", "teams": [{"id": "nlp"}]}, {"id": "one", "teams": [{"id": "single"}, {"id": "free"}]}],
            "prices": [{"model": MODEL, "input_per_mtok": "0.15", "output_per_mtok": "0.60"}],
            "limits": [{"team": "nlp", **TEAM_LIMITS}, {"department": "research", **DEPT_LIMITS}, {"team": "single", "requests_per_minute": 10**9}],
        },
        environ={},
    )
    limits = RateLimits(settings, PriceBook(settings.prices))
    own = json.dumps(KEY_LIMITS)
    tmp = tempfile.TemporaryDirectory()
    engine = create_engine(f"sqlite:///{tmp.name}/leases.db")
    create_schema(engine)
    limits.admit(SimpleNamespace(call_id="warm", kind="mcp", provider="", model="", tool="", request_bytes=0, reserved=Decimal(0),
                                 ts=datetime.now(UTC), payer=SimpleNamespace(team="nlp"), key=SimpleNamespace(id="key_bench", limits=own)))
    leases = RateLeases(engine, limits, "bench", timedelta(seconds=30))  # renewed before each batch, as its thread would
    now = datetime.now(UTC)
    n = 20_000

    def calls(team: str, key_limits: str) -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for i in range(n):
            call = SimpleNamespace(
                call_id=f"c{team}{i}", kind="llm", provider="mock", model=MODEL, tool="", upstream_model="", request_bytes=120,
                max_output_tokens=100, reserved=Decimal(0), ts=now, payer=SimpleNamespace(team=team, department="research"),
                key=SimpleNamespace(id="key_bench", limits=key_limits),
            )  # fmt: skip
            event = {"call_id": call.call_id, "status": "ok", "kind": "llm", "input_tokens": 30, "output_tokens": 40,
                     "cost_pico": 28_500_000, "usage_source": "reported", "model": MODEL, "provider": "mock", "tool": ""}  # fmt: skip
            out.append((call, event))
        return out

    def run(batch: list[tuple[Any, dict[str, Any]]]) -> float:
        from meterline.costing.errors import RateLimited

        while True:
            leases.renew()
            gc.collect()
            gc.disable()  # the collector's pauses belong to whoever made the garbage (the batch's setup)
            t0 = time.thread_time()
            try:
                for call, event in batch:
                    limits.admit(call)
                    limits.settle(event)
            except RateLimited:  # a minute began within the batch, before a renewal: again
                continue
            finally:
                gc.enable()
            return (time.thread_time() - t0) / len(batch) * 1e6

    cases = (("no limit for the call", "free", ""), ("one limit", "single", ""), ("seven limits", "nlp", own))
    best: dict[str, list[float]] = {}
    for _ in range(5):  # interleaved, so that no case alone meets a busy moment of the host
        for label, team, key_limits in cases:
            best.setdefault(label, []).append(run(calls(team, key_limits)))
    out = {label: min(times) for label, times in best.items()}
    engine.dispose()
    tmp.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--write-results", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meterline-bench-rl-") as tmp:
        work = Path(tmp)
        up = mock(work)
        targets = [
            _meterline(work / "off", up.url, "limits off", limited=False),
            _meterline(work / "on", up.url, "limits on", limited=True),
        ]
        rows: dict[str, list[Sample]] = {}
        step = chat("hello sim:chunks=20", max_tokens=100)
        with running([up, *targets]):
            for _, order in rotations(targets, args.rounds):
                for t in order:
                    rows.setdefault(t.name, []).append(measure(t, step, args.concurrency, args.seconds))
    micro = in_process()
    med = median

    base = med([c for _, c, _ in rows["limits off"]])
    lines = [
        f"Run of {datetime.now(UTC).isoformat(timespec='seconds')} (UTC): `python -m bench.rate_limits --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}`; load average at the end "
        f"{load_average()}. Chat completions, non-stream; limits on the key, its team and its "
        "department (7 limits: requests, tokens and USD per minute and hour), never reached.",
        "",
        "| target | req/s | CPU µs/call | limits add, µs/call | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("limits off", "limits on"):
        got = rows[name]
        rps, cpu = med([r for r, _, _ in got]), med([c for _, c, _ in got])
        added = f"{cpu - base:,.0f}" if name == "limits on" else "–"
        lines.append(f"| Meterline, {name} | {rps:,.0f} | {cpu:,.0f} | {added} | {sum(e for _, _, e in got)} |")
    lines += [
        "",
        "The rate-limit code alone, in process (`admit` + `settle`, this thread's CPU, best of 5 x 20,000 calls): "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in micro.items())
        + ". The in-process figure is the rate-limit code's own cost; the side-by-side difference also holds the `x-ratelimit-*` headers on every response and the lease renewal, and on a shared host its noise can pass the cost by far (compare runs).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        replace_section(RESULTS, "rate_limits", "## Rate limits: CPU per call (issue 19)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
