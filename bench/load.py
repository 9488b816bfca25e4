"""Load generators: wrk for throughput and latency, an aiohttp client for time to first token.

wrk (C, one thread) drives every row's requests/s and p50/p99, stream or not: it reads a
chunked SSE body to its end, so a stream's latency is its full duration. wrk cannot see when
the first token arrives, so stream rows also get a short run of `ttft_probe`, an aiohttp
client that stamps the first body bytes carrying a content delta. Both share the machine's
cores with the target and the mock; that is part of the setup and the same for every target.
When wrk is missing (a CI box), `python_load` stands in for it, at lower absolute numbers.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

WRK = shutil.which("wrk")

_LUA = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %(auth)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50_us\\":%%d,\\"p99_us\\":%%d,\\"mean_us\\":%%.1f,\\"stdev_us\\":%%.1f,\\"max_us\\":%%d,\\"errors\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.stdev, latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Load:
    """One load run's outcome. Latencies in milliseconds."""

    rps: float
    p50: float
    p99: float
    mean: float
    stdev: float
    requests: int
    errors: int
    tool: str


def body(stream: bool, chunks: int) -> bytes:
    doc: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Say hello. sim:chunks={chunks}"}],
    }
    if stream:
        doc["stream"] = True
    return json.dumps(doc).encode()


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk(url: str, key: str, payload: bytes, concurrency: int, seconds: float) -> Load:
    script = _LUA % {"body": _lua_str(payload.decode()), "auth": _lua_str(f"Bearer {key}")}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [WRK or "wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "10s", "-s", f.name,
             url + "/v1/chat/completions"],
            capture_output=True, text=True, timeout=seconds + 30,
        )
    finally:
        Path(f.name).unlink()
    m = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk gave no result: {out.stdout[-300:]} {out.stderr[-300:]}")
    r = json.loads(m.group(1))
    n = r["requests"]
    return Load(
        rps=n / (r["duration_us"] / 1e6), p50=r["p50_us"] / 1000, p99=r["p99_us"] / 1000, mean=r["mean_us"] / 1000,
        stdev=r["stdev_us"] / 1000, requests=n, errors=r["errors"], tool="wrk",
    )


def python_load(url: str, key: str, payload: bytes, concurrency: int, seconds: float) -> Load:
    lat, _, errors, elapsed = asyncio.run(_drive(url, key, payload, concurrency, seconds, first_token=False))
    return _summary(lat, errors, elapsed, "aiohttp")


def ttft_probe(url: str, key: str, payload: bytes, concurrency: int, seconds: float) -> tuple[float, float]:
    """(p50, p99) time to first content token of streamed calls, in milliseconds."""
    _, ttft, _, _ = asyncio.run(_drive(url, key, payload, concurrency, seconds, first_token=True))
    return _pct(ttft, 50), _pct(ttft, 99)


async def _drive(
    url: str, key: str, payload: bytes, concurrency: int, seconds: float, *, first_token: bool
) -> tuple[list[float], list[float], int, float]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    lat: list[float] = []
    ttft: list[float] = []
    errors = 0
    target = url + "/v1/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False) as s:
        t_start = time.perf_counter()
        stop = t_start + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    async with s.post(target, data=payload, headers=headers) as r:
                        first = 0.0
                        async for chunk in r.content.iter_any():
                            if not first and b'"content"' in chunk:
                                first = time.perf_counter()
                        if r.status != 200:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                t1 = time.perf_counter()
                lat.append(t1 - t0)
                if first_token and first:
                    ttft.append(first - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t_start
    return lat, ttft, errors, elapsed


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def _summary(lat: list[float], errors: int, elapsed: float, tool: str) -> Load:
    return Load(
        rps=len(lat) / elapsed, p50=_pct(lat, 50), p99=_pct(lat, 99),
        mean=statistics.fmean(lat) * 1000 if lat else float("nan"),
        stdev=statistics.pstdev(lat) * 1000 if len(lat) > 1 else 0.0,
        requests=len(lat), errors=errors, tool=tool,
    )


def run_load(url: str, key: str, payload: bytes, concurrency: int, seconds: float) -> Load:
    """wrk when installed and the run is at least a second long (its durations are whole seconds)."""
    if WRK and seconds >= 1:
        return wrk(url, key, payload, concurrency, seconds)
    return python_load(url, key, payload, concurrency, seconds)
