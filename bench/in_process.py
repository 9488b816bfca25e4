"""Meterline's own CPU per call, in process: the metered path with no socket under it.

    python -m bench.in_process [--calls 15000] [--rounds 5] [--profile] [--write-results]

The app of `meterline serve`, with the bench's config (bench/targets.py: a priced model,
department and team budgets, the SQLite ledger and the spool), its lifespan running, and a
stand-in for the upstream session (meterline/testing/stand_in.py). Each call is driven through
the ASGI app directly, one at a time: authentication, the body, admission, the upstream's
answer read for usage, pricing, the spool, the meter's observers and the response. What it
leaves out is what the bare pass-through also pays (HTTP parsing, aiohttp, the sockets), so
the number moves with Meterline's own code only, not with the host's network or scheduling:
a change to the hot path is measured here in a minute, to within a few per cent. The ledger
writer's child starts as by default but is handed nothing during the rounds (`SERVER`), and
the heap is frozen after the warm-up, as `serve` freezes it.

`--profile` adds cProfile's top functions of one more round (which runs about twice as slow).
`--no-refresh` turns the budget and key refreshes off, so that only the request path runs:
bench/instructions.py counts it so.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.report import replace_section
from bench.targets import MOCK_KEY, MODEL, meterline_config

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "in_process"
# The ledger is not written during the rounds: the writer child and its commits share the
# host with the rounds and moved them by +-20%, which hid any change under 10 µs.
SERVER = {"flush_interval_ms": 3_600_000}
# `--no-refresh`: the budget refresh is set in its own section, the key refresh under `server:`.
NO_REFRESH = {"budgets": {"refresh_seconds": 3600}}
NO_REFRESH_SERVER = {"key_refresh_seconds": 3600}
WARM_UP = 1000  # calls before the rounds, at most: caches, the estimator, the first lease
BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 40})


async def run(calls: int, rounds: int, profile: bool, quiet: bool = False) -> tuple[list[float], str]:
    """µs of CPU per call in each round, and the profile's text (empty without `profile`)."""
    from meterline.costing import create_engine, create_key, create_schema, settings_from_dict
    from meterline.proxy.app import create_app
    from meterline.testing.stand_in import StandInUpstream

    with tempfile.TemporaryDirectory(prefix="meterline-bench-inproc-") as tmp:
        server, config = (SERVER | NO_REFRESH_SERVER, NO_REFRESH) if quiet else (SERVER, None)
        cfg = meterline_config(Path(tmp), "http://upstream.invalid", server=server, config=config)
        settings = settings_from_dict(cfg, environ={"BENCH_MOCK_KEY": MOCK_KEY})
        engine = create_engine(settings.database)
        create_schema(engine)
        _, key = create_key(engine, team="nlp")
        engine.dispose()
        app = create_app(settings, upstream_client=StandInUpstream(keep=False))  # type: ignore[arg-type]
        headers = [(b"host", b"127.0.0.1:4000"), (b"content-type", b"application/json"), (b"accept", b"application/json"),
                   (b"authorization", f"Bearer {key}".encode()), (b"content-length", str(len(BODY)).encode()),
                   (b"user-agent", b"OpenAI/Python 1.x"), (b"x-stainless-lang", b"python")]  # fmt: skip

        async def one() -> int:
            scope: dict[str, Any] = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 4000),
            }  # fmt: skip
            messages = [{"type": "http.request", "body": BODY, "more_body": False}]
            status: list[int] = []

            async def receive() -> dict[str, Any]:
                if messages:
                    return messages.pop()
                await asyncio.Event().wait()  # the client stays connected
                raise AssertionError

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])

            await app(scope, receive, send)
            return status[0]

        out: list[float] = []
        text = ""
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            for _ in range(min(calls, WARM_UP)):
                if await one() != 200:
                    raise SystemExit("the app did not answer 200: see its log")
            gc.collect()
            gc.freeze()  # as `meterline serve` does once the app is built
            for _ in range(rounds):
                c0 = time.process_time()
                for _ in range(calls):
                    await one()
                out.append((time.process_time() - c0) / calls * 1e6)
            if profile:
                p = cProfile.Profile()
                p.enable()
                for _ in range(calls):
                    await one()
                p.disable()
                buf = io.StringIO()
                pstats.Stats(p, stream=buf).sort_stats("tottime").print_stats(25)
                text = buf.getvalue()
        return out, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=15000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile's top functions of one more round")
    ap.add_argument("--no-refresh", action="store_true", help="budget and key refreshes off: the request path only")
    ap.add_argument("--write-results", action="store_true", help=f"replace the {SECTION} section of RESULTS.md")
    a = ap.parse_args(argv)
    per_call, text = asyncio.run(run(a.calls, a.rounds, a.profile, a.no_refresh))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    rounds = ", ".join(f"{x:.0f}" for x in per_call)
    lines = [
        "## Meterline's own CPU per call, in process (issue 18): `python -m bench.in_process`",
        "",
        f"Run of {stamp} (UTC): `python -m bench.in_process --calls {a.calls} --rounds {a.rounds}`. Non-stream chat "
        "completions through the ASGI app, one at a time, a stand-in upstream (no socket); the serving process's CPU.",
        "",
        "| CPU µs per call, median | fastest round | rounds |",
        "|---:|---:|---|",
        f"| {statistics.median(per_call):.0f} | {min(per_call):.0f} | {rounds} |",
    ]
    print("\n".join(lines))
    if text:
        print(text)
    if a.write_results:
        replace_section(RESULTS, SECTION, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
