"""What linking agent runs from the traffic costs per call (issue 14), side by side.

    python -m bench.run_links [--seconds 5] [--rounds 2] [--concurrency 16] [--write-results]

Starts the mock upstream, the bare aiohttp pass-through and `meterline serve`, and drives each
with the same three kinds of chat call, alternating targets round by round:

- plain: no tools (the linking code does one byte search of the request and one of the response);
- tools offered, a tool call answered: the response is read for its clues, which are remembered;
- an agent turn: a call with tools, then the call that hands back its tool result (a
  continuation: its clues are looked up in memory, and the second response's remembered).

Reported per target: requests/s and the target's own CPU per answered call (its process tree,
user + system). What Meterline adds is its CPU per call minus the pass-through's for the same
calls. Then the linking code alone, timed in-process (proxy/run_clues.py, costing/run_links.py)
for each kind of call, and the memory of a full RunIndex.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
import timeit
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import replace_section
from bench.side_by_side import Sample, Step, load_average, measure, median, running
from bench.targets import meterline, mock, passthrough

RESULTS = Path(__file__).with_name("RESULTS.md")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
KINDS = ("plain", "tool call", "agent turn")


def _doc(kind: str, n: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"task {n} sim:chunks=20"}]}
    if kind != "plain":
        doc["tools"] = TOOLS
    return doc


def _step(kind: str) -> Step:
    """One client's unit of work: a call, or for an agent turn the call and the one handing back its tool result."""

    async def step(session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int) -> tuple[int, int]:
        doc = _doc(kind, n)
        async with session.post(url + "/v1/chat/completions", data=json.dumps(doc), headers=headers) as r:
            answer = await r.json()
            if r.status != 200:
                return 0, 1
        if kind != "agent turn":
            return 1, 0
        tc = answer["choices"][0]["message"]["tool_calls"][0]
        doc["messages"] += [
            {"role": "assistant", "content": None, "tool_calls": [tc]},
            {"role": "tool", "tool_call_id": tc["id"], "content": "found it"},
        ]
        async with session.post(url + "/v1/chat/completions", data=json.dumps(doc), headers=headers) as r:
            await r.read()
            return (2, 0) if r.status == 200 else (1, 1)

    return step


def in_process() -> dict[str, float]:
    """The linking code alone, µs per call, for each kind of call (best of 5 x 2,000): what
    the proxy runs beyond its own parsing (the bodies come parsed, as the proxy has them)."""
    from meterline.costing.run_links import Producer, RunIndex
    from meterline.proxy.run_clues import asked_by_request, produced_by_body

    runs = RunIndex()
    plain_req = json.dumps(_doc("plain", 1)).encode()
    plain_doc = json.loads(plain_req)
    plain_resp = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hello " * 20}}]}).encode()
    tools_req = json.dumps(_doc("tool call", 1)).encode()
    tools_doc = json.loads(tools_req)
    answers = []
    for _ in range(12_000):
        tc = {"id": "call_" + secrets.token_hex(12), "type": "function", "function": {"name": "lookup", "arguments": '{"query": "task 1"}'}}
        doc = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [tc]}}]}
        turn = _doc("tool call", 1)
        turn["messages"] += [{"role": "assistant", "content": None, "tool_calls": [tc]}, {"role": "tool", "tool_call_id": tc["id"], "content": "x"}]
        body = json.dumps(turn).encode()
        answers.append((json.dumps(doc).encode(), doc, body, turn, secrets.token_hex(8), secrets.token_hex(16)))
    it = iter(answers)

    def plain() -> None:
        asked_by_request("/chat/completions", plain_doc, plain_req)
        if b'"tool_calls"' in plain_resp:
            raise AssertionError

    def tool_call() -> None:
        data, parsed, _, _, call_id, trace = next(it)
        asked_by_request("/chat/completions", tools_doc, tools_req)
        if b'"tool_calls"' in data:
            runs.add("nlp", Producer(call_id, trace, "nlp", time.monotonic()), produced_by_body("/chat/completions", parsed))

    def agent_turn() -> None:
        data, parsed, body, turn, call_id, trace = next(it)
        runs.add("nlp", Producer(call_id, trace, "nlp", time.monotonic()), produced_by_body("/chat/completions", parsed))
        asked = asked_by_request("/chat/completions", turn, body)
        assert asked is not None and runs.continued("nlp", asked) is not None

    out = {"plain": min(timeit.repeat(plain, number=2000, repeat=5)) / 2000 * 1e6}
    out["tool call"] = min(timeit.repeat(tool_call, number=1000, repeat=5)) / 1000 * 1e6
    out["agent turn"] = min(timeit.repeat(agent_turn, number=1000, repeat=5)) / 1000 * 1e6
    return out


def index_memory(clues: int = 100_000) -> float:
    from meterline.costing.run_links import (
        Produced,
        Producer,
        RunIndex,
        arguments_clue,
        tool_call_clue,
    )

    tracemalloc.start()
    runs = RunIndex(capacity=clues)
    base = tracemalloc.get_traced_memory()[0]
    peak = 0
    for i in range(clues):
        p = Producer(secrets.token_hex(8), secrets.token_hex(16), "nlp", time.monotonic())
        runs.add("nlp", p, Produced((tool_call_clue("call_" + secrets.token_hex(12)), arguments_clue({"q": i}) or ""), ("lookup",)))
        peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
    tracemalloc.stop()
    return peak / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="meterline-bench-links-"))
    up = mock(work)
    targets = [passthrough(work, up.url), meterline(work, up.url)]
    rows: dict[tuple[str, str], list[Sample]] = {}
    with running([up, *targets]):
        for _ in range(args.rounds):
            for kind in KINDS:
                for t in targets:
                    rows.setdefault((kind, t.name), []).append(measure(t, _step(kind), args.concurrency, args.seconds))
    micro = in_process()
    mem = index_memory()
    med = median

    lines = [
        f"Run of {datetime.now(UTC).isoformat(timespec='seconds')} (UTC): `python -m bench.run_links --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}`; load average at the end "
        f"{load_average()}.",
        "",
        "| call | target | req/s | CPU µs/call | Meterline adds, µs/call | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        base = med([c for _, c, _ in rows[(kind, "passthrough")]])
        for t in targets:
            got = rows[(kind, t.name)]
            rps, cpu = med([r for r, _, _ in got]), med([c for _, c, _ in got])
            added = f"{cpu - base:,.0f}" if t.name == "meterline" else "–"
            lines.append(f"| {kind} | {t.label} | {rps:,.0f} | {cpu:,.0f} | {added} | {sum(e for _, _, e in got)} |")
    lines += [
        "",
        "The linking code alone, in-process (best of 5 x 2,000 calls): "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in micro.items())
        + f". A full RunIndex (100,000 clues): {mem:.1f} MB (tracemalloc peak).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        replace_section(RESULTS, "run_links", "## Agent runs from the traffic: CPU per call (issue 14)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
