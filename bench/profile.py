"""Where a proxy's CPU goes: py-spy samples of the thread holding the GIL, by component.

`record(pid, seconds, path)` runs `py-spy record --gil` in the background; `breakdown(path)`
files each sample under the component of its innermost recognisable frame (self time), and
threads other than the event loop under their own names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

PY_SPY = shutil.which("py-spy")

THREADS = (("LedgerWriter", "ledger writer thread (spool to DB)"), ("Budgets.refresh", "budgets refresh thread"),
           ("Credits.refresh", "credits refresh thread"), ("KeyCache", "key refresh"), ("_worker (concurrent", "other threads"))
LEAF = (
    (r"\((proxy|costing)/", "Meterline: routes, metering, budgets, spool"),
    (r"\(prometheus_client/", "Meterline: Prometheus metrics"),
    (r"\(aiohttp/", "aiohttp client (upstream side)"),
    (r"\(uvicorn/|httptools", "uvicorn + httptools (client side)"),
    (r"\((starlette|fastapi|anyio)/", "Starlette/FastAPI"),
    (r"\((asyncio|uvloop)/", "event loop"),
)


def record(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes] | None:
    if not PY_SPY:
        return None
    return subprocess.Popen(
        [PY_SPY, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200", "--gil", "--nonblocking",
         "-f", "raw", "-o", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def breakdown(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, share per component, top self-time functions)."""
    parts: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_ = line.rsplit(" ", 1)
        n = int(n_)
        total += n
        frames = stack.split(";")
        funcs[re.sub(r":\d+\)", ")", frames[-1])] += n
        thread = next((name for key, name in THREADS if key in stack), None)
        if thread:
            parts[thread] += n
            continue
        for f in reversed(frames):
            name = next((label for pat, label in LEAF if re.search(pat, f)), None)
            if name:
                parts[name] += n
                break
        else:
            parts["other"] += n
    return total, parts, funcs


def profile_markdown(path: Path, label: str) -> list[str]:
    total, parts, funcs = breakdown(path)
    if not total:
        return [f"(no samples for {label})"]
    out = [f"py-spy, {label}: {total} samples of the thread holding the GIL (self time by component)", "",
           "| component | share |", "|---|---:|"]
    out += [f"| {k} | {v / total:.0%} |" for k, v in parts.most_common()]
    out += ["", "| top functions (self) | share |", "|---|---:|"]
    out += [f"| `{k}` | {v / total:.1%} |" for k, v in funcs.most_common(12)]
    return out
