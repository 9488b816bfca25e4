"""Cutting upstream SSE streams into events: bytes kept exactly, usage and [DONE] events whole."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from meterline.proxy.sse import SSEEvents
from meterline.proxy.usage import has_usage, streamed_text


def chunk(text: str, *, usage_null: bool) -> bytes:
    doc = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    if usage_null:
        doc["usage"] = None  # what OpenAI puts in every chunk once usage is asked for
    return orjson.dumps(doc)


USAGE = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}'


@given(
    texts=st.lists(st.text(max_size=12), max_size=8),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    usage_null=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=6),
)
def test_a_stream_cut_anywhere_passes_whole_with_its_usage_and_done_events_apart(texts, eol, usage_null, cuts):
    datas = [chunk(t, usage_null=usage_null) for t in texts] + [USAGE, b"[DONE]"]
    stream = b"".join(b"data: " + d + eol + eol for d in datas)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})

    sse, out = SSEEvents(), []
    for a, b in zip(points, points[1:], strict=False):
        out += sse.feed(stream[a:b])
    out.append(sse.rest())

    assert b"".join(out) == stream
    assert [e for e in out if has_usage(e)] == [b"data: " + USAGE + eol + eol]
    assert [e for e in out if b"[DONE]" in e] == [b"data: [DONE]" + eol + eol]
    assert streamed_text(out) == "".join(texts)
