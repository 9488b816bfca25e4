"""Markdown for a benchmark run: the side-by-side table, start-up and memory, the targets."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

ORDER = ("direct", "passthrough", "meterline", "litellm")


def _med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


Scenario = tuple[str, bool, int]  # (API, stream, concurrency)
MODES = {("chat", False): "non-stream", ("chat", True): "stream",
         ("responses", False): "Responses", ("responses", True): "Responses stream"}  # fmt: skip


def _scenario(r: dict[str, Any]) -> Scenario:
    return r.get("api", "chat"), r["stream"], r["concurrency"]  # runs before the Responses rows: chat


def aggregate(runs: list[dict[str, Any]]) -> dict[tuple[str, bool, int, str], dict[str, float]]:
    """Median over rounds per (API, stream, concurrency, target), with the added latency
    against the mock measured in the same round."""
    direct = {(r["round"], *_scenario(r)): r for r in runs if r["target"] == "direct"}
    groups: dict[tuple[str, bool, int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((*_scenario(r), r["target"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        agg = {f: _med([r.get(f, float("nan")) for r in rs]) for f in ("rps", "p50", "p99", "rss_mb", "cpu_us")}
        agg["errors"] = sum(r["errors"] for r in rs)
        agg["requests"] = sum(r["requests"] for r in rs)
        d = [direct.get((r["round"], *_scenario(r))) for r in rs]
        agg["added_p50"] = _med([r["p50"] - x["p50"] for r, x in zip(rs, d, strict=True) if x])
        agg["added_p99"] = _med([r["p99"] - x["p99"] for r, x in zip(rs, d, strict=True) if x])
        if "ttft_p50" in rs[0]:
            agg["ttft_p50"] = _med([r["ttft_p50"] for r in rs])
            agg["added_ttft_p50"] = _med([r["ttft_p50"] - x["ttft_p50"] for r, x in zip(rs, d, strict=True) if x])
        out[key] = agg
    return out


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if x is None or x != x else fmt.format(x)


def proxy_markdown(result: dict[str, Any]) -> str:
    agg = aggregate(result["runs"])
    names = [n for n in ORDER if n in result["targets"]]
    labels = {n: result["targets"][n]["label"] for n in names}
    m = result["machine"]
    s = result["settings"]
    lines = [
        f"Run of {result['date']} (UTC): `{result['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}); {m['memory']} RAM; Linux {m['kernel']}; "
        f"Python {m['python']}; load generator {m['wrk']}; load average at the end {m.get('loadavg', '?')}.",
        f"Each cell: median of {s['rounds']} rounds of {s['seconds']} s, targets alternated; streams carry "
        f"{s['chunks']} content chunks; TTFT from an aiohttp client ({s['ttft_seconds']} s per probe). "
        "Added = the target minus the mock directly, same round. CPU µs/req = the target's own CPU time "
        "(its process tree, user + system) per answered request: what a call costs, whatever else the machine is doing.",
        "",
        "| mode | conc. | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | TTFT p50 ms | added TTFT ms | CPU µs/req | vs LiteLLM | vs pass-through | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scenarios = sorted({k[:3] for k in agg}, key=lambda k: (k[0] != "chat", k))
    for api, stream, c in scenarios:
        ll = agg.get((api, stream, c, "litellm"))
        pt = agg.get((api, stream, c, "passthrough"))
        for n in names:
            a = agg.get((api, stream, c, n))
            if a is None:
                continue
            direct = n == "direct"
            lines.append(
                "| " + " | ".join([
                    MODES[api, stream], str(c), labels[n], _f(a["rps"], "{:,.0f}"),
                    _f(a["p50"]), _f(a["p99"]),
                    "–" if direct else _f(a["added_p50"]), "–" if direct else _f(a["added_p99"]),
                    _f(a.get("ttft_p50")), "–" if direct else _f(a.get("added_ttft_p50")), _f(a["cpu_us"], "{:,.0f}"),
                    _f(a["rps"] / ll["rps"], "{:.1f}x") if ll and n not in ("litellm", "direct") else "–",
                    _f(a["rps"] / pt["rps"] * 100, "{:.0f}%") if pt and n == "meterline" else "–",
                    str(int(a["errors"])),
                ]) + " |"
            )
    lines += ["", "| target | start-up s (spawn to first answered call) | peak RSS under load MB |", "|---|---:|---:|"]
    for n in names:
        t = result["targets"][n]
        lines.append(f"| {labels[n]} | {t['startup_s']:.2f} | {t['rss_peak_mb']:.0f} |")
    for n, why in result.get("missing", {}).items():
        lines.append(f"| {n} | not measured: {why} | |")
    lines += ["", *targets_markdown(result, agg)]
    for prof in result.get("profiles", []):
        from .profile import profile_markdown

        lines += ["", *profile_markdown(Path(prof["path"]), prof["label"])]
    if result.get("ledger"):
        from .ledger_scale import ledger_markdown

        lines += ["", *ledger_markdown(result["ledger"])]
    return "\n".join(lines) + "\n"


def targets_markdown(result: dict[str, Any], agg: dict[tuple[str, bool, int, str], dict[str, float]]) -> list[str]:
    def get(stream: bool, c: int, n: str, f: str) -> float | None:
        a = agg.get(("chat", stream, c, n))
        return a.get(f) if a else None

    ml = result["targets"].get("meterline")
    rows: list[tuple[str, float | None, float | None, bool]] = []
    nj16 = get(False, 16, "meterline", "rps")
    ll16 = get(False, 16, "litellm", "rps")
    pt16 = get(False, 16, "passthrough", "rps")
    rows.append(("non-stream c16 >= 3,000 req/s", nj16, 3000, nj16 is not None and nj16 >= 3000))
    if ll16:
        rows.append(("non-stream c16 >= 35x LiteLLM", nj16 / ll16 if nj16 else None, 35, bool(nj16) and nj16 / ll16 >= 35))
    if pt16:
        rows.append(("non-stream c16 >= 70% of the bare pass-through", nj16 / pt16 * 100 if nj16 else None, 70,
                     bool(nj16) and nj16 / pt16 >= 0.7))
    st16 = get(True, 16, "meterline", "rps")
    rows.append(("stream c16 >= 1,500 req/s", st16, 1500, st16 is not None and st16 >= 1500))
    add1 = get(False, 1, "meterline", "added_p50")
    rows.append(("added latency p50 at c1 <= 0.5 ms", add1, 0.5, add1 is not None and add1 <= 0.5))
    ttft = get(True, 1, "meterline", "added_ttft_p50")
    rows.append(("added TTFT p50 (c1) <= 1 ms", ttft, 1.0, ttft is not None and ttft <= 1.0))
    if ml:
        rows.append(("start-up < 1.5 s", ml["startup_s"], 1.5, ml["startup_s"] < 1.5))
        rows.append(("RSS under load < 150 MB", ml["rss_peak_mb"], 150, ml["rss_peak_mb"] < 150))
    out = ["| target (Meterline, one worker) | measured | goal | met |", "|---|---:|---:|---|"]
    for name, value, goal, ok in rows:
        if value is None:
            out.append(f"| {name} | not measured | {goal:g} | – |")
        else:
            out.append(f"| {name} | {value:,.2f} | {goal:,g} | {'yes' if ok else '**no**'} |")
    return out


def replace_section(path: Path, name: str, body: str) -> None:
    """Swap the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `path`,
    leaving the hand-written sections around it alone."""
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
