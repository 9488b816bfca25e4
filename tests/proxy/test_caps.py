"""Bounded memory and CPU per call (issue 20 items 1, 2 and 16): streams past their caps are cut
off and recorded, estimates count a bounded sample off the event loop, SSE without boundaries
is framed in linear time and bounded memory. Behaviour is asserted, not timing."""

from __future__ import annotations

import asyncio
import threading

import httpx
import orjson
import pytest

from meterline.costing.estimate import SAMPLE_CHARS, count_text
from meterline.proxy.sse import SSEEvents
from tests.proxy.junk_upstream import WORDS, usageless_stream


def _stream(proxy, key: str, content: str):
    body = {"model": "junk-model", "stream": True, "messages": [{"role": "user", "content": content}]}
    return httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body,
                        headers={"authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip


def _row(proxy, call_id: str) -> dict:
    (row,) = [e for e in proxy.events() if e["call_id"] == call_id]
    return row


def test_a_stream_past_the_byte_cap_is_cut_off_with_an_error_and_recorded(junk_proxy, junk):
    """The probe: 20 MB without usage held 1.1 GB and blocked /healthz for 11 s."""
    proxy = junk_proxy(server={"max_response_bytes": 2 * 1024 * 1024})
    key = proxy.key()
    marker = junk.answer("huge", usageless_stream(20 * 1024 * 1024))
    with _stream(proxy, key, marker) as r:
        call_id = r.headers["x-meterline-call-id"]
        received = 0
        for chunk in r.iter_bytes():
            received += len(chunk)
            if received > 100_000 and received - len(chunk) <= 100_000:  # mid-stream
                assert httpx.get(proxy.url + "/healthz").json() == {"status": "ok"}
        last = chunk
    assert received < 3 * 1024 * 1024
    assert b"upstream_too_large" in last
    row = _row(proxy, call_id)
    assert (row["status"], row["usage_source"]) == ("upstream_error", "estimated")
    assert row["output_tokens"] > 100_000  # what was streamed before the cut, estimated


def test_a_stream_past_the_time_cap_is_cut_off_and_recorded(junk_proxy, junk):
    proxy = junk_proxy(server={"max_stream_seconds": 1})
    key = proxy.key()
    marker = junk.answer("endless", usageless_stream(10**9, pause=0.05, end=False))
    with _stream(proxy, key, marker) as r:
        call_id = r.headers["x-meterline-call-id"]
        body = r.read()
    assert b"upstream_timeout" in body.rstrip().splitlines()[-1]
    row = _row(proxy, call_id)
    assert (row["status"], row["http_status"] in (200, 504)) == ("upstream_error", True)
    assert row["usage_source"] == "estimated" and row["output_tokens"] > 0


def test_a_long_stream_without_usage_is_estimated_from_a_bounded_sample(junk_proxy, junk):
    """Only estimate_sample_bytes of events are kept; the estimate is scaled to the rest."""
    proxy = junk_proxy(server={"estimate_sample_bytes": 64 * 1024})
    key = proxy.key()
    total = 4 * 1024 * 1024
    with _stream(proxy, key, junk.answer("long", usageless_stream(total))) as r:
        call_id = r.headers["x-meterline-call-id"]
        text = "".join(
            orjson.loads(line[6:])["choices"][0]["delta"]["content"]
            for line in r.read().split(b"\n\n")
            if line.startswith(b"data: {")
        )
    row = _row(proxy, call_id)
    assert (row["status"], row["usage_source"]) == ("ok", "estimated")
    exact = count_text(text[:SAMPLE_CHARS], "gpt-4o-mini") * len(text) / SAMPLE_CHARS
    assert abs(row["output_tokens"] - exact) / exact < 0.1


def test_a_huge_prompt_dropped_after_the_first_chunk_is_counted_on_a_sample(junk_proxy, junk):
    """The probe: 30 MB of content, then the connection dropped: 17 s of the event loop."""
    proxy = junk_proxy()
    key = proxy.key()
    marker = junk.answer("slow", usageless_stream(10**9, pause=0.05, end=False))
    prompt = marker + " " + WORDS * 700_000  # 8.4 MB
    with _stream(proxy, key, prompt) as r:
        call_id = r.headers["x-meterline-call-id"]
        next(r.iter_bytes())
    # The client is gone; meanwhile the proxy keeps answering.
    assert httpx.get(proxy.url + "/healthz").json() == {"status": "ok"}
    row = _row(proxy, call_id)
    assert (row["status"], row["usage_source"]) == ("client_closed", "estimated")
    exact = len(prompt) / len(WORDS) * count_text(WORDS * 100, "gpt-4o-mini") / 100
    assert abs(row["input_tokens"] - exact) / exact < 0.1


def test_sse_without_boundaries_is_held_no_further_than_the_event_cap():
    """Item 16: 40 MB without a blank line cost 9 s, quadratic in its size."""
    sse = SSEEvents(max_event=1024 * 1024)
    out = []
    held = 0
    for _ in range(10_000):
        out += sse.feed(b"x" * 4096)
        held = max(held, len(sse._buf))
    out.append(sse.rest())
    assert b"".join(out) == b"x" * 4096 * 10_000
    assert held <= 1024 * 1024
    # After an over-long event, framing goes on as usual.
    assert sse.feed(b"tail\n\ndata: next\n\n") == [b"tail\n\n", b"data: next\n\n"]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_framing_cuts_at_every_kind_of_blank_line_across_reads(eol):
    stream = b"".join(b"data: " + str(i).encode() + eol + eol for i in range(200))
    sse, out = SSEEvents(), []
    for i in range(0, len(stream), 7):
        out += sse.feed(stream[i : i + 7])
    assert out == [b"data: " + str(i).encode() + eol + eol for i in range(200)] and sse.rest() == b""


def test_the_event_loop_keeps_answering_while_estimates_run():
    """Estimates run on the Estimator's threads: a coroutine scheduled meanwhile runs first."""
    from meterline.proxy.usage import Estimator, estimate

    doc = {"messages": [{"role": "user", "content": "lorem ipsum " * 2_000_000}]}

    async def main() -> list[str]:
        order: list[str] = []
        est = Estimator()
        started = threading.Event()

        def work():
            started.set()
            return estimate(doc, "gpt-4o-mini", "")

        async def tick():
            order.append("tick")

        task = asyncio.create_task(est.run(work))
        await asyncio.to_thread(started.wait)
        await tick()
        await task
        order.append("estimate")
        est.close()
        return order

    assert asyncio.run(main()) == ["tick", "estimate"]
