"""What pricing along every dimension (issue 21) costs a plain text call: in process and through
`meterline serve`.

    python -m bench.dimensions [--seconds 5] [--rounds 3] [--concurrency 16] [--write-results]

(a) In process, the usage-read and pricing path of a plain text chat answer as the proxy runs it
(proxy/usage.py `usage_of`, `Meter.price`, `to_pico`, the event's dimension columns), against a
baseline: the pre-issue-21 `parse_usage` and four-field `cost_of` (input, cached input, output,
cache-write rates), reproduced below from the commit before issue 21 (55782db^), with the same
price lookup and `to_pico`, building the five usage columns the events had then. Both start
from the parsed answer (the JSON parse, the same for both, is timed on its own); this thread's
CPU, the collector off, best of `--repeat` x `--number` calls, the variants interleaved. The
baseline is the old formula, not the old proxy: it is what the fast path replaced.

(b) Side by side through one `meterline serve`: chat calls whose answers are plain text against
answers that carry the extra dimensions (service_tier priority, audio tokens in and out, both),
priced with a config that has priority and audio rates; the kinds rotate round by round. Each
row: requests/s, p50/p99 and Meterline's CPU per answered call (process tree); one probe call
per kind shows its `X-Meterline-Cost-USD`, and the ledger afterwards what each kind recorded.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from bench import load
from bench.report import replace_section
from bench.side_by_side import load_average, measure_load, median, rotations, running
from bench.targets import MODEL, Target, meterline, mock

RESULTS = Path(__file__).with_name("RESULTS.md")
CHUNKS = 20
PRICE = {
    "model": MODEL, "input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "0.60",
    "input_audio_per_mtok": "10", "output_audio_per_mtok": "20",
    "tiers": {"priority": {"input_per_mtok": "0.25", "cached_input_per_mtok": "0.125", "output_per_mtok": "1.00"}},
}  # fmt: skip
# (label, the mock's directives): what the answer's usage carries beyond text.
KINDS = (
    ("plain text", ""),
    ("service_tier priority", "tier=1"),
    ("audio in and out", "audio_in=40,audio_out=16"),
    ("priority + audio", "tier=1,audio_in=40,audio_out=16"),
)


def _answer(tier: str = "default", audio_in: int = 0, audio_out: int = 0) -> bytes:
    """A chat completion shaped as OpenAI (and the mock) answer it: the zero details included."""
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1764600000, "model": MODEL,
        "service_tier": tier, "system_fingerprint": "fp_sim",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "alpha beta " * 20, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 12 + audio_in, "completion_tokens": 40 + audio_out, "total_tokens": 52 + audio_in + audio_out,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": audio_in},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": audio_out,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
    })  # fmt: skip


# The baseline: proxy/usage.py's parse_usage and costing/money.py's Usage and cost_of as they
# were before issue 21 (55782db^), verbatim but for the names.
@dataclass(frozen=True, slots=True)
class OldUsage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0


def _old_int(d: Any, *path: str) -> int:
    from meterline.costing.money import MAX_TOKENS

    for p in path:
        if not isinstance(d, dict):
            return 0
        d = d.get(p)
    return min(d, MAX_TOKENS) if isinstance(d, int) and not isinstance(d, bool) and d > 0 else 0


def old_parse_usage(u: Any) -> OldUsage | None:
    if not isinstance(u, dict):
        return None
    if "input_tokens" in u or "output_tokens" in u:  # Responses API
        inp = _old_int(u, "input_tokens")
        cached = _old_int(u, "input_tokens_details", "cached_tokens")
        write = _old_int(u, "input_tokens_details", "cache_write_tokens")
        out = _old_int(u, "output_tokens")
        reasoning = _old_int(u, "output_tokens_details", "reasoning_tokens")
    else:
        inp = _old_int(u, "prompt_tokens")
        cached = _old_int(u, "prompt_tokens_details", "cached_tokens") or _old_int(u, "cache_read_input_tokens")
        out = _old_int(u, "completion_tokens")
        reasoning = _old_int(u, "completion_tokens_details", "reasoning_tokens")
    write = (
        _old_int(u, "cache_creation_input_tokens")
        or _old_int(u, "prompt_tokens_details", "cache_creation_tokens")
        or _old_int(u, "prompt_tokens_details", "cache_write_tokens")
        or _old_int(u, "input_tokens_details", "cache_write_tokens")
    )
    return OldUsage(inp, min(cached, inp), out, min(reasoning, out), min(write, inp))


def old_cost_of(usage: OldUsage, price: Any) -> Decimal:
    """The four-field formula; the rates read from today's Price (its `rates`)."""
    r = price.rates
    fresh = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    return (
        fresh * r.input
        + usage.cached_input_tokens * r.cached_input
        + usage.cache_write_tokens * r.cache_write
        + usage.output_tokens * r.output
    )


def _paths(parts: dict[str, Callable[[], object]]) -> dict[str, tuple[Callable[[], object], ...]]:
    """For each answer: (today's read + price path, the pre-issue-21 one, the minimal one) on the
    parsed answer; `parts` gets today's two steps for the plain answer, each on its own."""
    from meterline.costing import settings_from_dict
    from meterline.costing.money import NO_EXTRA, to_pico
    from meterline.costing.prices import PriceBook
    from meterline.proxy.meter import Meter
    from meterline.proxy.usage import usage_of

    settings = settings_from_dict({"prices": [PRICE]}, environ={})
    book = PriceBook(settings.prices, bundled={})
    meter = SimpleNamespace(prices=book, _warned=set())  # what Meter.price reads of its Meter
    call = SimpleNamespace(model=MODEL, upstream_model="", ts=datetime.now(UTC))
    price = Meter.price

    def today(doc: dict[str, Any]) -> Callable[[], object]:
        def run() -> object:
            usage = usage_of(doc)
            assert usage is not None
            p = price(meter, call, usage)  # type: ignore[arg-type]
            e = usage.extra or NO_EXTRA
            return (
                usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens,
                usage.cache_write_tokens, e.cache_write_1h_tokens, e.input_audio_tokens, e.output_audio_tokens,
                e.input_image_tokens, e.output_image_tokens, e.web_search_calls, e.file_search_calls,
                e.code_interpreter_calls, p.tier, p.above, p.detail, p.flag,
                to_pico(p.cost) if p.cost is not None else 0, p.version,
            )  # fmt: skip

        return run

    def baseline(doc: dict[str, Any]) -> Callable[[], object]:
        def run() -> object:
            usage = old_parse_usage(doc.get("usage"))
            assert usage is not None
            names = (call.model, call.upstream_model) if call.upstream_model else (call.model,)
            p = book.lookup(*names, at=call.ts)
            assert p is not None
            cost = old_cost_of(usage, p)
            return (
                usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens,
                usage.cache_write_tokens, to_pico(cost), p.version,
            )  # fmt: skip

        return run

    def minimal(doc: dict[str, Any]) -> Callable[[], object]:
        """The floor: the four counts read straight out of a well-formed chat usage (no checks
        of type or range, no other shape), the four-field formula, the same Decimal and pico steps."""

        def run() -> object:
            u = doc["usage"]
            pd = u.get("prompt_tokens_details") or {}
            inp, out = u["prompt_tokens"], u["completion_tokens"]
            cached, write = pd.get("cached_tokens", 0), pd.get("cache_write_tokens", 0)
            p = book.lookup(call.model, at=call.ts)
            assert p is not None
            r = p.rates
            cost = (inp - cached - write) * r.input + cached * r.cached_input + write * r.cache_write + out * r.output
            return inp, cached, out, 0, write, to_pico(cost), p.version

        return run

    plain = orjson.loads(_answer())
    rich = orjson.loads(_answer("priority", 40, 16))
    assert today(plain)()[17] == baseline(plain)()[5] == minimal(plain)()[5], "the baselines price a plain call as today's path does"
    usage = usage_of(plain)
    assert usage is not None
    parts["usage_of"] = lambda: usage_of(plain)
    parts["Meter.price"] = lambda: price(meter, call, usage)  # type: ignore[arg-type]
    return {
        "plain text": (today(plain), baseline(plain), minimal(plain)),
        "priority + audio": (today(rich), baseline(rich), minimal(rich)),
    }


def _best(fns: dict[str, Callable[[], object]], repeat: int, number: int) -> dict[str, float]:
    """This thread's CPU µs per call of each fn, best of `repeat` x `number`, interleaved."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            gc.disable()  # a collection belongs to whoever made the garbage, not to this batch
            try:
                t0 = time.thread_time()
                for _ in range(number):
                    fn()
                times[name].append((time.thread_time() - t0) / number * 1e6)
            finally:
                gc.enable()
    return {k: min(v) for k, v in times.items()}


def in_process(repeat: int, number: int) -> dict[str, float]:
    body = _answer()
    fns: dict[str, Callable[[], object]] = {"json": lambda: orjson.loads(body)}
    paths = _paths(fns)
    for name, (today, baseline, minimal) in paths.items():
        fns[f"{name}: today"] = today
        fns[f"{name}: baseline"] = baseline
        fns[f"{name}: minimal"] = minimal
    return _best(fns, repeat, number)


def _probe(t: Target, directives: str) -> str:
    body = load.body(False, CHUNKS, directives=directives)
    req = urllib.request.Request(
        t.url + "/v1/chat/completions", body, {"content-type": "application/json", "authorization": f"Bearer {t.key}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("x-meterline-cost-usd", "")


def _ledger(db: Path) -> list[tuple[Any, ...]]:
    """What the ledger recorded per kind of answer: (tier, audio in the call, calls, calls with a cost breakdown)."""
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT service_tier, input_audio_tokens > 0, count(*), sum(cost_detail != ''), sum(cost_pico) "
            "FROM events WHERE status = 'ok' GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stream", action="store_true", help="stream rows too")
    ap.add_argument("--repeat", type=int, default=7, help="(a): best of this many batches")
    ap.add_argument("--number", type=int, default=20_000, help="(a): calls per batch")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args(argv)
    modes = [("non-stream", False)] + ([("stream", True)] if args.stream else [])

    micro = in_process(args.repeat, args.number)
    rows: dict[tuple[str, str], list[tuple[load.Load, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="meterline-bench-dims-") as tmp:
        work = Path(tmp)
        up = mock(work)
        ml = meterline(work, up.url, config={"prices": [PRICE]})
        with running([up, ml]):
            costs = {label: _probe(ml, d) for label, d in KINDS}
            for _, d in KINDS:  # warm-up
                load.run_load(ml.url, ml.key, load.body(False, CHUNKS, directives=d), 4, min(1.0, args.seconds))
            for _, order in rotations(KINDS, args.rounds):
                for mode, stream in modes:
                    for label, d in order:
                        payload = load.body(stream, CHUNKS, directives=d)
                        rows.setdefault((mode, label), []).append(measure_load(ml, payload, args.concurrency, args.seconds))
        recorded = _ledger(work / "ledger.db")
        loadavg = load_average()
    tool = next(iter(rows.values()))[0][0].tool

    lines = [
        f"Run of {datetime.now(UTC).isoformat(timespec='seconds')} (UTC): `python -m bench.dimensions --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}{' --stream' if args.stream else ''}`; load average at the end "
        f"{loadavg}.",
        "",
        f"(a) In process, µs per call (this thread's CPU, best of {args.repeat} x {args.number:,}), from the parsed answer: "
        "usage read, price lookup, cost, pico-dollars, the event's usage columns. Before issue 21: its `parse_usage` "
        "and four-field `cost_of` (reproduced in bench/dimensions.py), the same lookup, five usage columns. Minimal: the "
        "four counts read straight from the dict, no checks, the four-field formula, the same lookup and pico step.",
        "",
        "| answer | today | before issue 21 | minimal (four fields) | today − before | today − minimal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("plain text", "priority + audio"):
        now, base, floor = (micro[f"{name}: {v}"] for v in ("today", "baseline", "minimal"))
        note = "" if name == "plain text" else " (both baselines price it as plain text: wrong, shown for scale)"
        lines.append(f"| {name}{note} | {now:.2f} | {base:.2f} | {floor:.2f} | {now - base:+.2f} | {now - floor:+.2f} |")
    lines += [
        "",
        f"Today's plain path in its steps: `usage_of` {micro['usage_of']:.2f} µs, `Meter.price` (lookup, fast-path "
        f"cost) {micro['Meter.price']:.2f} µs, the rest (pico-dollars, columns) the difference. The JSON parse of the same "
        f"plain answer (orjson, common to every variant, not in the rows above): {micro['json']:.2f} µs.",
        "",
        f"(b) Through `meterline serve` (one worker), chat completions at concurrency {args.concurrency}, load generator "
        f"{tool}; median of {args.rounds} rounds, kinds rotating. The price has priority-tier and audio rates.",
        "",
        "| mode | answer carries | req/s | p50 ms | p99 ms | CPU µs/call | vs plain, µs/call | cost of one call (header) | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, _ in modes:
        base_cpu = median([c for _, c in rows[(mode, "plain text")]])
        for label, _ in KINDS:
            got = rows[(mode, label)]
            cpu = median([c for _, c in got])
            vs = "–" if label == "plain text" else f"{cpu - base_cpu:+,.0f}"
            lines.append(
                f"| {mode} | {label} | {median([r.rps for r, _ in got]):,.0f} | {median([r.p50 for r, _ in got]):.2f} "
                f"| {median([r.p99 for r, _ in got]):.2f} | {cpu:,.0f} | {vs} | {costs[label]} | {sum(r.errors for r, _ in got)} |"
            )
    lines += ["", "The ledger afterwards (status ok): " + "; ".join(
        f"tier {tier or '-'}{', audio' if audio else ''}: {n:,} calls, {detailed or 0:,} with a cost breakdown"
        for tier, audio, n, detailed, _ in recorded
    ) + "."]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        replace_section(RESULTS, "dimensions", "## Pricing every dimension: what plain text calls pay (issue 21): `python -m bench.dimensions`\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
