"""Calls that do not end well, or end without usage: recorded with honest estimates."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import openai
import orjson
import pytest

from meterline.costing.estimate import count_messages, count_text
from meterline.testing.upstream import completion_text
from tests.conftest import run_cli
from tests.proxy.test_chat import client


def wait_for_events(proxy, n=1, seconds=10.0):
    """The ledger rows once `n` calls are recorded (a bound, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while True:
        events = proxy.events()
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def established_to(port: int) -> int:
    """TCP connections in this process's network namespace still open towards `port`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def test_client_closing_a_slow_stream_is_recorded_estimated_and_the_upstream_is_let_go(make_proxy, own_upstream):
    proxy = make_proxy(providers={"sim": {"base_url": own_upstream.url + "/v1", "api_key_env": "SIM_API_KEY"}})
    port = int(own_upstream.url.rsplit(":", 1)[1])
    messages = [{"role": "user", "content": "write a lot sim:chunks=2000,delay_ms=50"}]  # ~100 s in full
    stream = client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    got = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got.append(chunk.choices[0].delta.content)
        if len(got) == 3:
            break
    assert established_to(port) >= 1  # the proxy is reading the upstream stream right now
    stream.close()
    (event,) = wait_for_events(proxy)
    assert (event["status"], event["usage_source"]) == ("client_closed", "estimated")
    assert 0 < event["output_tokens"] < 4000  # what was streamed so far, not the whole answer
    assert event["output_tokens"] >= count_text("".join(got), "gpt-4o-mini")
    assert event["input_tokens"] == count_messages(messages, "gpt-4o-mini")
    assert event["cost_pico"] > 0 and event["priced"]
    deadline = time.monotonic() + 10
    while established_to(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert established_to(port) == 0, "the proxy still holds the upstream connection of an abandoned stream"


def test_upstream_breaking_mid_stream_is_recorded_estimated_and_the_client_gets_an_error(proxy):
    messages = [{"role": "user", "content": "go sim:chunks=10,break_after=3"}]
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert "broke off" in str(e.value)
    (event,) = proxy.events()
    assert (event["status"], event["usage_source"]) == ("upstream_error", "estimated")
    assert event["output_tokens"] == count_text("".join(got), "gpt-4o-mini") > 0
    assert event["cost_pico"] > 0 and event["priced"]


def test_responses_stream_broken_by_the_upstream_ends_with_an_error_event(proxy):
    # The client sees the break as an `error` event, or as the SDK's own error when the
    # connection ends first; either way the stream does not end as a completed response.
    types = []
    try:
        for ev in client(proxy, proxy.key()).responses.create(model="gpt-4o-mini", input="go sim:break_after=2", stream=True):
            types.append(ev.type)
    except openai.APIError:
        types.append("raised")
    assert types[-1] in ("error", "raised") and "response.completed" not in types
    (event,) = proxy.events()
    assert (event["status"], event["usage_source"]) == ("upstream_error", "estimated")
    assert event["output_tokens"] == count_text(completion_text(2), "gpt-4o-mini")


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_without_usage_is_estimated_the_way_openai_counts(proxy, stream):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something sim:no_usage=1,chunks=7", "name": "alice"},
    ]
    c = client(proxy, proxy.key())
    if stream:
        chunks = list(c.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    else:
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        text = raw.parse().choices[0].message.content
        assert raw.headers["x-meterline-cost-usd"]
    (event,) = proxy.events()
    assert text == completion_text(7)
    assert (event["status"], event["usage_source"]) == ("ok", "estimated")
    assert event["input_tokens"] == count_messages(messages, "gpt-4o-mini")
    assert event["output_tokens"] == count_text(completion_text(7), "gpt-4o-mini")
    assert event["cost_pico"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_responses_without_usage_are_estimated(proxy, stream):
    result = client(proxy, proxy.key()).responses.create(model="gpt-4o-mini", input="hello sim:no_usage=1,chunks=4", stream=stream)
    if stream:
        assert [e.type for e in result][-1] == "response.completed"
    (event,) = proxy.events()
    assert event["usage_source"] == "estimated"
    assert event["input_tokens"] == count_text("hello sim:no_usage=1,chunks=4", "gpt-4o-mini")
    assert event["output_tokens"] == count_text(completion_text(4), "gpt-4o-mini")


def test_stream_from_a_hanging_upstream_is_504_and_recorded(make_proxy, upstream):
    proxy = make_proxy(providers={"sim": {"base_url": upstream.url + "/v1", "api_key_env": "SIM_API_KEY", "read_timeout": 0.5}})
    with pytest.raises(openai.APIStatusError) as e:
        client(proxy, proxy.key()).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:hang=1"}], stream=True
        )
    assert e.value.status_code == 504 and e.value.code == "upstream_timeout"
    (event,) = proxy.events()
    assert (event["status"], event["http_status"], event["cost_pico"]) == ("upstream_error", 504, 0)
    assert e.value.response.headers["x-meterline-call-id"] == event["call_id"]


def test_unpriced_model_is_recorded_unpriced_with_a_warning_naming_it(proxy, caplog):
    c = client(proxy, proxy.key())
    with caplog.at_level(logging.WARNING, logger="meterline.proxy"):
        raw = c.chat.completions.with_raw_response.create(model="mystery-model", messages=[{"role": "user", "content": "x"}])
        c.chat.completions.create(model="mystery-model", messages=[{"role": "user", "content": "y"}])
    (warning,) = [r for r in caplog.records if "mystery-model" in r.getMessage()]  # once, not per call
    assert warning.levelno == logging.WARNING
    assert "x-meterline-cost-usd" not in raw.headers  # no price is not a price of zero
    events = proxy.events()
    assert [(e["priced"], e["cost_pico"], e["output_tokens"] > 0) for e in events] == [(False, 0, True)] * 2
    month = events[0]["ts"][:7] if isinstance(events[0]["ts"], str) else events[0]["ts"].strftime("%Y-%m")
    cfg = ("--month", month, "--config", str(proxy.config_path))
    showback = orjson.loads(run_cli("report", "showback", "--json", *cfg).stdout)
    assert showback["unpriced_requests"] == 2
    (unpriced,) = showback["unpriced"]
    assert (unpriced["model"], unpriced["requests"]) == ("mystery-model", 2)
    assert unpriced["output_tokens"] == sum(e["output_tokens"] for e in events)
    table = run_cli("report", "showback", *cfg).stdout.splitlines()
    (line,) = [ln for ln in table if ln.startswith("UNPRICED")]
    assert line.split()[1:4] == ["mystery-model", "2", "no"]
    lines = list(csv.DictReader(io.StringIO(run_cli("export", "chargeback", *cfg).stdout)))
    (line,) = [ln for ln in lines if ln["model"] == "mystery-model"]
    assert (line["requests"], line["cost_usd"]) == ("2", "0.000000")


def test_stream_that_stalls_mid_way_ends_with_an_error_within_the_read_timeout(make_proxy, stalling_upstream):
    proxy = make_proxy(providers={"sim": {"base_url": stalling_upstream + "/v1", "read_timeout": 0.5}})
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in client(proxy, proxy.key()).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            got.append(chunk.choices[0].delta.content)
    assert got == ["hello there"]
    assert "timed out" in str(e.value)
    (event,) = proxy.events()
    assert (event["status"], event["usage_source"]) == ("upstream_error", "estimated")
    assert event["output_tokens"] == count_text("hello there", "gpt-4o-mini")
    assert event["cost_pico"] > 0


def test_provider_that_never_accepts_the_connection_is_502_after_the_connect_timeout(make_proxy, unaccepting_url):
    proxy = make_proxy(providers={"sim": {"base_url": unaccepting_url + "/v1", "connect_timeout": 0.3}})
    with pytest.raises(openai.APIStatusError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert (e.value.status_code, e.value.code) == (502, "upstream_unavailable")
    (event,) = proxy.events()
    assert (event["status"], event["http_status"]) == ("upstream_error", 502)
