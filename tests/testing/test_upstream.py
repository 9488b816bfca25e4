"""The upstream simulator, driven by the real openai SDK (and raw httpx for Anthropic)."""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

from meterline.testing.upstream import DEFAULT_CHUNKS, SimServer, completion_text

KEY = "sk-sim-test"


@pytest.fixture(scope="module")
def sim():
    with SimServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(sim):
    return openai.OpenAI(base_url=sim.url + "/v1", api_key=KEY, max_retries=0, timeout=10)


def user(text):
    return [{"role": "user", "content": text}]


def test_chat_non_stream_reports_matching_usage_and_is_recorded(sim, client):
    sim.requests.clear()
    c = client.chat.completions.create(
        model="gpt-4o-mini", messages=user("hello there sim:cached=3,reasoning=2")
    )
    assert c.model == "gpt-4o-mini"
    assert c.choices[0].message.content == completion_text(DEFAULT_CHUNKS)
    assert c.choices[0].finish_reason == "stop"
    u = c.usage
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (
        3 + 4,
        2 * DEFAULT_CHUNKS + 2,
        7 + 18,
    )
    assert (
        u.prompt_tokens_details.cached_tokens,
        u.completion_tokens_details.reasoning_tokens,
    ) == (3, 2)
    (req,) = sim.requests
    assert (req["method"], req["path"], req["json"]["model"]) == (
        "POST",
        "/v1/chat/completions",
        "gpt-4o-mini",
    )
    assert req["headers"]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_usage_chunk_only_when_asked(client, include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client.chat.completions.create(
            model="m", messages=user("count sim:chunks=5"), stream=True, **kwargs
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    ) == completion_text(5)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    with_usage = [c for c in chunks if c.usage is not None]
    if include_usage:
        (last,) = with_usage
        assert last is chunks[-1] and last.choices == []
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (2 + 4, 10)
    else:
        assert with_usage == []


def test_no_usage_directive(client):
    c = client.chat.completions.create(model="m", messages=user("sim:no_usage=1"))
    assert c.usage is None
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=user("sim:no_usage=1"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_tools_answer_with_one_tool_call(client):
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    c = client.chat.completions.create(model="m", messages=user("find it"), tools=tools)
    (call,) = c.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments, c.choices[0].finish_reason) == (
        "lookup",
        "{}",
        "tool_calls",
    )
    chunks = list(
        client.chat.completions.create(
            model="m", messages=user("find it"), tools=tools, stream=True
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "lookup" and deltas[0].id
    assert "".join(d.function.arguments or "" for d in deltas) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # after the tool result comes back, it answers with text so agent loops end
    followup = user("find it") + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
    ]
    assert (
        client.chat.completions.create(model="m", messages=followup, tools=tools)
        .choices[0]
        .message.content
    )


LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "page": {"type": "integer"}},
            "required": ["query", "limit"],
        },
    },
}
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


def test_tool_calls_have_random_ids_and_arguments_from_the_request(client):
    a, b = (client.chat.completions.create(model="m", messages=user(t), tools=[LOOKUP]) for t in ("oslo", "oslo"))
    (ca,), (cb,) = a.choices[0].message.tool_calls, b.choices[0].message.tool_calls
    assert CALL_ID.fullmatch(ca.id) and CALL_ID.fullmatch(cb.id) and ca.id != cb.id
    assert json.loads(ca.function.arguments) == {"query": "oslo", "limit": 1}
    other = client.chat.completions.create(model="m", messages=user("bergen"), tools=[LOOKUP])
    assert json.loads(other.choices[0].message.tool_calls[0].function.arguments)["query"] == "bergen"


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_over_several_turns(client, stream):
    tools = [LOOKUP, WEATHER]

    def ask(messages):
        if not stream:
            return client.chat.completions.create(model="m", messages=messages, tools=tools).choices[0].message
        calls: dict[int, dict] = {}
        content = ""
        for ch in client.chat.completions.create(model="m", messages=messages, tools=tools, stream=True):
            delta = ch.choices[0].delta
            content += delta.content or ""
            for tc in delta.tool_calls or ():
                c = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                c["id"] += tc.id or ""
                c["name"] += (tc.function.name or "") if tc.function else ""
                c["arguments"] += (tc.function.arguments or "") if tc.function else ""
        return {"content": content, "tool_calls": [calls[i] for i in sorted(calls)]}

    def calls_of(msg):
        if isinstance(msg, dict):
            return msg["tool_calls"]
        return [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in msg.tool_calls or ()]

    messages = user("paris sim:tools=2,turns=2")
    seen = []
    for turn in (1, 2):
        calls = calls_of(ask(messages))
        assert [c["name"] for c in calls] == ["lookup", "weather"]
        suffix = "" if turn == 1 else " #2"
        assert json.loads(calls[1]["arguments"]) == {"city": "paris sim:tools=2,turns=2" + suffix}
        seen += [c["id"] for c in calls]
        messages = messages + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls
            ]},
            *({"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls),
        ]
    assert len(set(seen)) == 4
    final = ask(messages)
    assert calls_of(final) == [] and (final["content"] if isinstance(final, dict) else final.content) == completion_text(DEFAULT_CHUNKS)


RESPONSES_TOOL = {"type": "function", "name": "weather", "parameters": WEATHER["function"]["parameters"]}


def test_responses_answer_with_a_function_call_then_text(client):
    r = client.responses.create(model="m", input="rome", tools=[RESPONSES_TOOL])
    (fc,) = r.output
    assert (fc.type, fc.name, json.loads(fc.arguments)) == ("function_call", "weather", {"city": "rome"})
    assert re.fullmatch(r"resp_[0-9a-f]{48}", r.id) and fc.id.startswith("fc_") and CALL_ID.fullmatch(fc.call_id)
    assert r.usage.output_tokens == 10
    again = client.responses.create(model="m", input="rome", tools=[RESPONSES_TOOL])
    assert again.id != r.id and again.output[0].call_id != fc.call_id

    history = [{"role": "user", "content": "rome"}, fc.model_dump(exclude_none=True), {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}]
    done = client.responses.create(model="m", input=history, tools=[RESPONSES_TOOL])
    assert done.output_text == completion_text(DEFAULT_CHUNKS)
    # the same continuation by previous_response_id: only the tool output travels
    done = client.responses.create(
        model="m", previous_response_id=r.id, input=[history[-1]], tools=[RESPONSES_TOOL]
    )
    assert done.output_text == completion_text(DEFAULT_CHUNKS)


def test_responses_stream_a_function_call_and_turns_follow_previous_response_id(client):
    with client.responses.stream(model="m", input="lima sim:turns=2", tools=[RESPONSES_TOOL]) as stream:
        kinds = [e.type for e in stream]
        first = stream.get_final_response()
    (fc,) = first.output
    assert json.loads(fc.arguments) == {"city": "lima sim:turns=2"}
    assert kinds[-4:] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ] and "response.output_item.added" in kinds
    output = {"type": "function_call_output", "call_id": fc.call_id, "output": "ok"}
    second = client.responses.create(model="m", previous_response_id=first.id, input=[output], tools=[RESPONSES_TOOL])
    (fc2,) = second.output
    assert json.loads(fc2.arguments) == {"city": "lima sim:turns=2 #2"}
    output2 = {"type": "function_call_output", "call_id": fc2.call_id, "output": "ok"}
    third = client.responses.create(model="m", previous_response_id=second.id, input=[output2], tools=[RESPONSES_TOOL])
    assert third.output_text == completion_text(DEFAULT_CHUNKS)


def test_responses_non_stream_and_stream(client):
    r = client.responses.create(
        model="gpt-4.1-nano", input="hi there sim:chunks=3,cached=1,reasoning=1"
    )
    assert (r.model, r.output_text, r.status) == ("gpt-4.1-nano", completion_text(3), "completed")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (3 + 4, 7, 14)
    assert (
        r.usage.input_tokens_details.cached_tokens,
        r.usage.output_tokens_details.reasoning_tokens,
    ) == (1, 1)

    events = list(
        client.responses.create(model="gpt-4.1-nano", input=user("hi sim:chunks=4"), stream=True)
    )
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 4 and "response.output_text.done" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(
        e.delta for e in events if e.type == "response.output_text.delta"
    ) == completion_text(4)
    done = events[-1].response
    assert done.output_text == completion_text(4) and done.usage.output_tokens == 8


def test_responses_stream_helper_accumulates(client):
    with client.responses.stream(model="m", input="hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == completion_text(DEFAULT_CHUNKS) and final.usage.input_tokens == 5


def test_embeddings_are_deterministic(client):
    a = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    b = client.embeddings.create(
        model="text-embedding-3-small", input="one two", encoding_format="float"
    )
    assert len(a.data) == 2 and len(a.data[0].embedding) == 8
    assert a.data[0].embedding == pytest.approx(b.data[0].embedding)
    assert a.data[0].embedding != a.data[1].embedding
    assert (a.usage.prompt_tokens, a.usage.total_tokens) == (3, 3)


def test_legacy_completions(client):
    c = client.completions.create(model="m", prompt="say sim:chunks=2")
    assert c.choices[0].text == completion_text(2) and c.usage.completion_tokens == 4
    chunks = list(
        client.completions.create(
            model="m", prompt="say", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == completion_text(
        DEFAULT_CHUNKS
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 1 + 2 * DEFAULT_CHUNKS


def test_models_and_auth(sim, client):
    assert "gpt-4o-mini" in {m.id for m in client.models.list()}
    bad = openai.OpenAI(base_url=sim.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="m", messages=user("x"))


def test_status_directive_raises_rate_limit(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="m", messages=user("sim:status=429"))
    assert e.value.code == "rate_limit_exceeded"


def test_break_after_cuts_the_stream(client):
    got = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for c in client.chat.completions.create(
            model="m", messages=user("sim:chunks=10,break_after=3"), stream=True
        ):
            got.append(c)
    assert len([c for c in got if c.choices and c.choices[0].delta.content]) == 3


def test_delay_and_hang(sim, client):
    t = time.perf_counter()
    client.chat.completions.create(model="m", messages=user("sim:delay_ms=50"))
    assert time.perf_counter() - t >= 0.05
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(
            model="m", messages=user("sim:hang=1")
        )


def _sse_events(resp):
    return [
        line.removeprefix("event: ") for line in resp.iter_lines() if line.startswith("event: ")
    ]


def test_anthropic_messages_stream_and_non_stream(sim):
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": user("hi sim:chunks=2,cached=5,cache_write=7"),
    }
    with httpx.stream(
        "POST", sim.url + "/v1/messages", json={**body, "stream": True}, headers=headers
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(r)
    assert events == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip

    m = httpx.post(sim.url + "/v1/messages", json=body, headers=headers).json()
    assert (m["type"], m["model"], m["content"][0]["text"], m["stop_reason"]) == (
        "message", "claude-sonnet-4-5", completion_text(2), "end_turn",
    )  # fmt: skip
    assert m["usage"] == {
        "input_tokens": 2 + 4,
        "output_tokens": 4,
        "cache_read_input_tokens": 5,
        "cache_creation_input_tokens": 7,
        "service_tier": "standard",
    }

    r = httpx.post(
        sim.url + "/v1/messages", json={**body, "messages": user("sim:status=529")}, headers=headers
    )
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    r = httpx.post(sim.url + "/v1/messages", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 401 and r.json()["type"] == "error"


def test_sim_requests_endpoint_and_record_false():
    with SimServer(record=False) as quiet:
        httpx.post(quiet.url + "/v1/embeddings", json={"model": "e", "input": "x"})
        assert quiet.requests == [] and httpx.get(quiet.url + "/_sim/requests").json() == []
    with SimServer() as loud:
        httpx.post(loud.url + "/v1/embeddings", json={"model": "e", "input": "x"})
        (req,) = httpx.get(loud.url + "/_sim/requests").json()
        assert (req["path"], req["json"]["input"]) == ("/v1/embeddings", "x")
        assert httpx.delete(loud.url + "/_sim/requests").status_code == 204 and loud.requests == []
