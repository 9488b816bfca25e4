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


# The APIs a run can drive: their route, and what marks a stream's first generated text.
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses"}
_FIRST_TOKEN = {"chat": b'"content"', "responses": b"output_text.delta"}


def body(stream: bool, chunks: int, api: str = "chat", directives: str = "") -> bytes:
    """A request for `chunks` content chunks; `directives`: more of the mock's (`tier=1,audio_in=40`)."""
    prompt = f"Say hello. sim:chunks={chunks}" + (f",{directives}" if directives else "")
    doc: dict[str, object] = {"model": "gpt-4o-mini"}
    if api == "responses":
        doc["input"] = prompt
    else:
        doc["messages"] = [{"role": "user", "content": prompt}]
    if stream:
        doc["stream"] = True
    return json.dumps(doc).encode()


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk(url: str, key: str, payload: bytes, concurrency: int, seconds: float, api: str = "chat") -> Load:
    script = _LUA % {"body": _lua_str(payload.decode()), "auth": _lua_str(f"Bearer {key}")}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [WRK or "wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "10s", "-s", f.name,
             url + PATHS[api]],
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


def python_load(url: str, key: str, payload: bytes, concurrency: int, seconds: float, api: str = "chat") -> Load:
    lat, _, errors, elapsed = asyncio.run(_drive(url, key, payload, concurrency, seconds, api, first_token=False))
    return _summary(lat, errors, elapsed, "aiohttp")


def ttft_probe(url: str, key: str, payload: bytes, concurrency: int, seconds: float, api: str = "chat") -> tuple[float, float]:
    """(p50, p99) time to first content token of streamed calls, in milliseconds."""
    _, ttft, _, _ = asyncio.run(_drive(url, key, payload, concurrency, seconds, api, first_token=True))
    return _pct(ttft, 50), _pct(ttft, 99)


async def _drive(
    url: str, key: str, payload: bytes, concurrency: int, seconds: float, api: str, *, first_token: bool
) -> tuple[list[float], list[float], int, float]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    lat: list[float] = []
    ttft: list[float] = []
    errors = 0
    target = url + PATHS[api]
    marker = _FIRST_TOKEN[api]
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
                            if not first and marker in chunk:
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


def run_load(url: str, key: str, payload: bytes, concurrency: int, seconds: float, api: str = "chat") -> Load:
    """wrk when installed and the run is at least a second long (its durations are whole seconds)."""
    if WRK and seconds >= 1:
        return wrk(url, key, payload, concurrency, seconds, api)
    return python_load(url, key, payload, concurrency, seconds, api)
