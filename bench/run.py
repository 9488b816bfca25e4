"""`python -m bench`: the side-by-side proxy benchmark, then the ledger at scale.

One run starts the mock upstream and every proxy, then alternates the targets through each
scenario (chat completions non-stream and stream at each concurrency, then the Responses API
at `--responses-concurrency`) for `--rounds` rounds, so drifts of the
machine spread evenly over the targets. Results go to `--out` (results.json, results.md);
`--write-results` also replaces the generated section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import load, targets
from .report import proxy_markdown, replace_section

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long run for CI: tiny loads, no LiteLLM")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    ap.add_argument("--ttft-seconds", type=float, default=2.0, help="length of each time-to-first-token probe")
    ap.add_argument("--rounds", type=int, default=2, help="times each target runs each scenario")
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated concurrencies")
    ap.add_argument("--responses-concurrency", default="1,16",
                    help="concurrencies for the Responses API (/v1/responses); empty: leave it out")
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    ap.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM proxy out")
    ap.add_argument("--targets", default="direct,passthrough,meterline,litellm", help="which targets to run")
    ap.add_argument("--out", type=Path, default=None, help="folder for logs and results (default bench/out/<time>)")
    ap.add_argument("--write-results", action="store_true", help="replace the generated table in bench/RESULTS.md")
    ap.add_argument("--profile", action="store_true", help="afterwards, profile Meterline at c16 with py-spy (not timed)")
    ap.add_argument("--ledger-events", type=int, default=0, help="also run the ledger-at-scale bench with N events (SQLite)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.seconds, a.ttft_seconds, a.rounds, a.concurrency, a.chunks = 0.5, 0.3, 1, "4", 8
        a.responses_concurrency = "4"
        a.no_litellm = True
        a.ledger_events = a.ledger_events or 2000
    return a


def machine() -> dict[str, str]:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = " ".join(sh("lscpu | grep -E '^(Model name|CPU\\(s\\)|Thread|Core|Socket)'").split())
    return {
        "nproc": sh("nproc"),
        "cpu": cpu,
        "memory": sh("free -h | sed -n 2p | awk '{print $2}'"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": sh("cut -d' ' -f1-3 /proc/loadavg"),
        "wrk": sh("wrk --version 2>&1 | head -1") if load.WRK else "(absent: aiohttp load generator)",
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = datetime.now(UTC)
    out: Path = a.out or ROOT / "bench" / "out" / started.strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    levels = {"chat": [int(c) for c in a.concurrency.split(",")]}
    if a.responses_concurrency.strip():
        levels["responses"] = [int(c) for c in a.responses_concurrency.split(",")]
    wanted = set(a.targets.split(","))
    if a.no_litellm:
        wanted.discard("litellm")

    mock = targets.mock(out)
    mock.start()
    if mock.failed:
        print(f"bench: the mock did not start: {mock.failed}", file=sys.stderr)
        return 1
    ts: list[targets.Target] = [mock]
    missing: dict[str, str] = {}
    try:
        for name in ("passthrough", "meterline", "litellm"):
            if name not in wanted:
                continue
            t = getattr(targets, name)(out, mock.url)
            if t is None:
                missing[name] = f"not installed: {targets.LITELLM_VENV} (see bench/README.md)"
                continue
            print(f"starting {t.label} ...", flush=True)
            t.start()
            if t.failed:
                missing[name] = t.failed
                print(f"  {t.label} failed: {t.failed}", flush=True)
                t.stop()
                continue
            print(f"  up in {t.startup_s:.2f} s", flush=True)
            ts.append(t)
        runs = measure(ts, a, levels)
        profiles = profile(ts, a, out) if a.profile else []
    finally:
        for t in reversed(ts):
            t.stop()

    result: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "targets": {t.name: {"label": t.label, "startup_s": t.startup_s, "rss_peak_mb": t.rss_peak / 2**20} for t in ts},
        "missing": missing,
        "runs": runs,
        "profiles": profiles,
    }
    if a.ledger_events:
        from .ledger_scale import scale

        result["ledger"] = [scale("sqlite:///" + str(out / "scale.db"), a.ledger_events, months=2)]
    (out / "results.json").write_text(json.dumps(result, indent=2))
    md = proxy_markdown(result)
    (out / "results.md").write_text(md)
    print(md)
    if a.write_results:
        replace_section(ROOT / "bench" / "RESULTS.md", "proxy", md)
    errors = sum(r["errors"] for r in runs)
    print(f"results in {out}" + (f" ({errors} failed requests)" if errors else ""))
    return 0


def measure(ts: list[targets.Target], a: argparse.Namespace, levels: dict[str, list[int]]) -> list[dict[str, Any]]:
    """`levels`: the concurrencies per API, each run non-stream and stream."""
    scenarios = [(api, stream, concs) for api, concs in levels.items() for stream in (False, True)]
    # Warm every target (JITs, pools, lazy imports) before anything counts.
    for t in ts:
        for api, stream, _ in scenarios:
            load.run_load(t.url, t.key, load.body(stream, a.chunks, api), 4, min(1.0, a.seconds), api)
    runs = []
    for rnd in range(a.rounds):
        for api, stream, concs in scenarios:
            payload = load.body(stream, a.chunks, api)
            for c in concs:
                k = rnd % len(ts)
                order = ts[k:] + ts[:k]  # alternate who goes first
                for t in order:
                    cpu0 = t.cpu()
                    r = load.run_load(t.url, t.key, payload, c, a.seconds, api)
                    cpu_us = (t.cpu() - cpu0) / max(1, r.requests) * 1e6
                    rss = t.sample_rss()
                    row = {"round": rnd, "api": api, "stream": stream, "concurrency": c, "target": t.name, **vars(r),
                           "rss_mb": rss / 2**20, "cpu_us": cpu_us}
                    if stream:
                        row["ttft_p50"], row["ttft_p99"] = load.ttft_probe(t.url, t.key, payload, c, a.ttft_seconds, api)
                    runs.append(row)
                    print(_line(row), flush=True)
                    time.sleep(0.2)
    return runs


def profile(ts: list[targets.Target], a: argparse.Namespace, out: Path) -> list[dict[str, str]]:
    """py-spy samples of Meterline under c16 load, after the timed runs (sampling slows it)."""
    from .profile import record

    found = []
    for t in ts:
        if t.name != "meterline" or t.proc is None:
            continue
        for stream in (False, True):
            path = out / f"profile-{t.name}-{'stream' if stream else 'json'}-c16.txt"
            spy = record(t.proc.pid, a.seconds, path)
            if spy is None:
                return []
            load.run_load(t.url, t.key, load.body(stream, a.chunks), 16, a.seconds + 1)
            spy.wait(30)
            if path.exists():
                found.append({"label": f"Meterline, {'stream' if stream else 'non-stream'}, concurrency 16", "path": str(path)})
    return found


def _line(r: dict[str, Any]) -> str:
    mode = ("resp-" if r.get("api") == "responses" else "") + ("stream" if r["stream"] else "json")
    ttft = f" ttft p50 {r['ttft_p50']:.2f} ms" if "ttft_p50" in r else ""
    return (
        f"r{r['round']} {mode:11} c{r['concurrency']:<3} {r['target']:12} {r['rps']:9.0f} req/s "
        f"p50 {r['p50']:7.2f} ms p99 {r['p99']:7.2f} ms{ttft} cpu {r['cpu_us']:.0f} us/req rss {r['rss_mb']:.0f} MB err {r['errors']}"
    )


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
