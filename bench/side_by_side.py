"""What the side-by-side benches share: starting their targets, alternating them round by round,
and measuring each load run as requests/s and the target's own CPU per answered call.

Two load drivers, both closed loops of `concurrency` clients on one keep-alive pool:

- `measure`: an aiohttp client running a `Step` (one or more calls, as a bench's kind of
  traffic needs: bench/run_links.py's agent turn is two). It counts answers, no latencies.
- `measure_load`: bench/load.py's `run_load` (wrk when installed, else aiohttp) for one fixed
  payload, with p50/p99. wrk spends far less CPU per call than a Python client, which matters
  on a 2-core host where the load generator shares the cores with the target.

CPU per call is the target's process tree (user + system, /proc) over the run divided by the
answered calls: what a call costs the target, whatever else the host is doing at the time.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import aiohttp

from bench import load
from bench.targets import MODEL, Target

T = TypeVar("T")

# One unit of a client's work against a target's base URL: (answered, failed) calls.
Step = Callable[[aiohttp.ClientSession, str, dict[str, str], int], Awaitable[tuple[int, int]]]


class Sample(NamedTuple):
    rps: float
    cpu_us: float  # the target's CPU per answered call
    errors: int


@contextmanager
def running(targets: Sequence[Target]) -> Iterator[None]:
    """Start `targets` in order (the mock first), stop them all on the way out; a target that
    does not come up ends the bench, naming its log."""
    try:
        for t in targets:
            t.start()
            if t.failed:
                raise SystemExit(f"{t.label}: {t.failed}")
        yield
    finally:
        for t in reversed(targets):
            t.stop()


def rotations(items: Sequence[T], rounds: int) -> Iterator[tuple[int, list[T]]]:
    """(round, order) for each round, who goes first rotating: a drift of the host (another
    session's tests starting) then spreads over every item instead of landing on one."""
    for r in range(rounds):
        k = r % len(items)
        yield r, [*items[k:], *items[:k]]


def median(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def chat(content: str, **fields: Any) -> Step:
    """A Step: one chat completion with this user message, its body read whole."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}], **fields})

    async def step(session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int) -> tuple[int, int]:
        async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
            await r.read()
            return (1, 0) if r.status == 200 else (0, 1)

    return step


async def _drive(target: Target, step: Step, concurrency: int, seconds: float) -> tuple[int, int, float]:
    counts = [0, 0]
    headers = {"authorization": f"Bearer {target.key}", "content-type": "application/json"}
    t0 = time.monotonic()

    async def client(session: aiohttp.ClientSession) -> None:
        n = 0
        while time.monotonic() < t0 + seconds:
            n += 1
            ok, failed = await step(session, target.url, headers, n)
            counts[0] += ok
            counts[1] += failed

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return counts[0], counts[1], time.monotonic() - t0


def measure(target: Target, step: Step, concurrency: int, seconds: float) -> Sample:
    """`concurrency` aiohttp clients repeating `step` against `target` for `seconds`."""
    cpu0 = target.cpu()
    ok, errors, elapsed = asyncio.run(_drive(target, step, concurrency, seconds))
    return Sample(ok / elapsed, (target.cpu() - cpu0) / max(ok, 1) * 1e6, errors)


def measure_load(
    target: Target, payload: bytes, concurrency: int, seconds: float, api: str = "chat"
) -> tuple[load.Load, float]:
    """bench/load.py's run (wrk when installed and `seconds` >= 1) and the target's CPU µs per answered call."""
    cpu0 = target.cpu()
    r = load.run_load(target.url, target.key, payload, concurrency, seconds, api)
    return r, (target.cpu() - cpu0) / max(r.requests, 1) * 1e6
