"""Bad input never makes the proxy answer 500, and it keeps serving afterwards.

Bounded for CI; `FUZZ_EXAMPLES=2000 python -m pytest tests/proxy/test_fuzz.py` is the longer
run described in bench/FUZZ.md.
"""

from __future__ import annotations

import json
import os

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import ADMIN_KEY, PROVIDER_KEY
from tests.proxy.junk_upstream import json_response, sse_response

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
LLM_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"]


@pytest.fixture
def fuzz_proxy(junk_proxy):
    return junk_proxy()


def still_serving(proxy, key: str) -> None:
    assert httpx.get(proxy.url + "/healthz").json() == {"status": "ok"}
    r = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200


def assert_answered_cleanly(r: httpx.Response) -> None:
    """A 4xx in OpenAI's error shape; a 5xx only as an upstream's own answer, passed through
    (the simulator, like a real provider, can fail on a body the proxy does not validate)."""
    upstreams = "x-meterline-call-id" in r.headers  # the call reached an upstream: its answer
    assert r.status_code < 500 or upstreams, (r.status_code, r.text[:300])
    if r.status_code >= 400 and not upstreams:
        assert isinstance(r.json()["error"]["code"], str)


# -- schemathesis against the app's own OpenAPI document ------------------------------------


def test_schemathesis_finds_no_request_the_proxy_answers_with_500(fuzz_proxy):
    key = fuzz_proxy.key()
    schema = schemathesis.openapi.from_url(fuzz_proxy.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {*LLM_ROUTES, "/v1/models", "/healthz"}

    for op in operations:
        headers = {"Authorization": f"Bearer {ADMIN_KEY if op.path.startswith('/admin') else key}"}
        has_input = op.body or op.query or op.path_parameters
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):
            fuzz_operation(op, mode, fuzz_proxy.url, headers)
    still_serving(fuzz_proxy, key)


def fuzz_operation(op, mode: GenerationMode, base_url: str, headers: dict[str, str]) -> None:
    @FUZZ
    @given(case=op.as_strategy(generation_mode=mode))
    def call(case):
        r = case.call(base_url=base_url, headers=headers, timeout=30)
        assert r.status_code < 500 or "x-meterline-call-id" in r.headers, (case.method, case.path, case.body, r.text[:300])

    try:
        call()
    except Unsatisfiable:
        # A free-form string parameter (a path segment, `month`) has no invalid values to send.
        assert mode is GenerationMode.NEGATIVE and not op.body


# -- malformed bodies and headers ------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=10)
_models = st.sampled_from(["gpt-4o-mini", "house", "gpt-4.1-" + "x" * 300, "nope", ""]) | _json
_messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": st.text(max_size=40)}), max_size=3)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(orjson.dumps),
    st.fixed_dictionaries(
        {"model": _models},
        optional={
            "stream": st.booleans() | _json,
            "stream_options": _json | st.just({"include_usage": False}),
            "messages": _messages | _json,
            "input": st.text(max_size=40) | _json,
            "prompt": st.text(max_size=40) | _json,
            "user": st.text(max_size=300) | _json,
        },
    ).map(orjson.dumps),
)
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=400).map(
    str.strip  # HTTP clients refuse to send padded values
)
_utf8_header = st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc")), max_size=60).map(str.strip)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "x-meterline-project": _header_text,
        "x-meterline-user": _header_text,
        "x-meterline-tags": _header_text | st.just(",".join(f"k{i}={'v' * 200}" for i in range(30))),
        "traceparent": _header_text | st.just("00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
        "tracestate": _header_text | st.just("meterline=bmxw.\xe9\xe9") | st.just("meterline=" + "A" * 300),
        "content-type": _header_text,
    },
)

ODD_BODIES = [
    b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser's recursion
    b'{"model": "gpt-4o-mini", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"model": 1' + b"0" * 5000 + b"}",
    b'{"model": NaN}',
    b'{"model": "gpt-4o-mini", "model": ["twice"]}',
    b"\xef\xbb\xbf" + orjson.dumps({"model": "gpt-4o-mini"}),
    '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\udcff"}]}'.encode("utf-8", "surrogatepass"),
    b'{"model": "gpt-4o-mini", "stream": "true"}',
    b'{"model": "gpt-4o-mini", "stream": true, "stream_options": "yes", "messages": []}',
    b"",
    b"null",
    # Hostile clients (issue 20): one body read two ways, escapes spelling a metered key.
    b'{"model": "gpt-4o-mini", "model": "house-model", "messages": []}',
    b'{"model": "gpt-4o-mini", "mod\\u0065l": "house-model", "messages": []}',
    b'{"model": "gpt-4o-mini", "stream": false, "stream": true, "messages": []}',
    b'{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": false, "include_usage": true}}',
]


def test_malformed_bodies_and_headers_get_a_clean_error_never_a_500(fuzz_proxy):
    key = fuzz_proxy.key()
    client = httpx.Client(base_url=fuzz_proxy.url, timeout=30)

    @FUZZ
    @given(route=st.sampled_from(LLM_ROUTES), body=_bodies, headers=_headers, user=st.none() | _utf8_header)
    def call(route, body, headers, user):
        sent = {k: v.encode("latin-1") for k, v in headers.items()} | {"authorization": f"Bearer {key}"}
        if user is not None:  # UTF-8, as clients send it (issue 20 item 18)
            sent["x-meterline-user"] = user.encode()
        assert_answered_cleanly(client.post(route, content=body, headers=sent))

    call()
    for body in ODD_BODIES:
        for route in LLM_ROUTES:
            assert_answered_cleanly(client.post(route, content=body, headers={"authorization": f"Bearer {key}"}))
    client.close()
    still_serving(fuzz_proxy, key)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic Zm9vOmJhcg==", "Bearer sk-ml-" + "x" * 43, "Bearer " + "k" * 8000, "Bearer a b", "bearer\tx y"],
)
def test_a_missing_or_malformed_key_is_a_401_on_every_route(fuzz_proxy, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    for route in LLM_ROUTES:
        r = httpx.post(fuzz_proxy.url + route, json={"model": "gpt-4o-mini"}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(fuzz_proxy.url + "/v1/models", headers=headers).status_code == 401
    r = httpx.post(fuzz_proxy.url + "/admin/ledger/flush", headers=headers)
    assert r.status_code == 401


# -- an upstream that answers garbage --------------------------------------------------------

BROKEN_ANSWERS = {
    "not_http": b"SSH-2.0-OpenSSH_9.6\r\n",
    "nothing": b"",
    "headers_only": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n",
    "bad_status_line": b"HTTP/1.1 abc\r\n\r\n",
    "binary_sse": sse_response(bytes(range(256)) * 8),
    "partial_json_event": sse_response(b'data: {"choices": [{"delta": {"content": "hi\n\ndata: [DONE]\n\n'),
    "usage_of_wrong_types": sse_response(
        b'data: {"choices": [], "usage": {"prompt_tokens": "12", "completion_tokens": -4, "prompt_tokens_details": 7}}\n\n'
        b'data: {"choices": [], "usage": []}\n\ndata: {"usage": null}\n\ndata: [DONE]\n\n'
    ),
    "absurd_usage": sse_response(
        b'data: {"choices": [], "usage": {"prompt_tokens": 99999999999999999999999, "completion_tokens": 9223372036854775807}}\n\n'
        b"data: [DONE]\n\n"
    ),
    "invalid_utf8": sse_response(b'data: {"choices": [{"delta": {"content": "\xff\xfe\xc3"}}]}\n\ndata: [DONE]\n\n'),
    "one_huge_line": sse_response(b"data: " + b"x" * 1_000_000),
    "broken_chunking": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nzz\r\ndata: x\r\n",
    "chunked_garbage": sse_response(b"event: \x00\ndata:\r\rdata: [DONE]\r\r", chunked=True),
    "short_body": json_response(b'{"choices": []', length=5000),
    "not_json": json_response(b"<html>oops</html>"),
    "json_usage_of_wrong_types": json_response(b'{"usage": {"prompt_tokens": {"a": 1}, "completion_tokens": 1e400}}'),
    # Hostile upstreams (issue 20): redirects, our own headers forged, the provider key echoed,
    # events without an end, usage nested deeper than a parser goes.
    "redirect": b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/v1/chat/completions\r\ncontent-length: 0\r\n\r\n",
    "forged_headers": json_response(b'{"choices": []}', headers=b"x-meterline-cost-usd: 0\r\nx-meterline-call-id: forged\r\n"),
    "echoed_key": json_response(b'{"error": {"message": "bad key ' + PROVIDER_KEY.encode() + b'"}}', status=401),
    "no_boundary": sse_response(b"data: " + b"y" * 3_000_000),
    "cr_no_boundary": sse_response(b"data: x\r" * 300_000),
    "deep_usage": sse_response(b'data: {"usage": ' + b"[" * 5000 + b"]" * 5000 + b"}\n\ndata: [DONE]\n\n"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_upstream_answering_garbage_gets_a_clean_answer_and_a_ledger_row(fuzz_proxy, junk, stream):
    key = fuzz_proxy.key()
    client = httpx.Client(base_url=fuzz_proxy.url, timeout=30, headers={"authorization": f"Bearer {key}"})
    call_ids = []
    for name, raw in BROKEN_ANSWERS.items():
        marker = junk.answer(name, raw)
        body = {"model": "junk-model", "stream": stream, "messages": [{"role": "user", "content": marker}]}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code in (200, 307, 401, 502, 504), (name, r.status_code, r.text[:300])
        assert r.headers.get_list("x-meterline-call-id") != ["forged"]
        call_ids.append(r.headers.get("x-meterline-call-id"))
    client.close()

    recorded = {e["call_id"]: e for e in fuzz_proxy.events()}
    assert all(cid in recorded for cid in call_ids if cid)
    assert all(0 <= e["input_tokens"] < 2**31 for e in recorded.values())
    assert not any(PROVIDER_KEY in e["error"] for e in recorded.values())
    still_serving(fuzz_proxy, key)


_sse_events = st.lists(
    st.one_of(
        st.binary(max_size=80),
        _json.map(lambda v: b"data: " + orjson.dumps(v) + b"\n\n"),
        st.builds(lambda u: b'data: {"choices": [], "usage": ' + orjson.dumps(u) + b"}\n\n", _json),
        st.just(b"data: [DONE]\n\n"),
        st.sampled_from([b"\n", b"\r\n\r\n", b":comment\n", b"event: error\n", b"retry: x\n"]),
    ),
    max_size=12,
)


def test_random_sse_from_an_upstream_never_makes_the_proxy_answer_500(fuzz_proxy, junk):
    key = fuzz_proxy.key()
    client = httpx.Client(base_url=fuzz_proxy.url, timeout=30, headers={"authorization": f"Bearer {key}"})
    seen = []

    @FUZZ
    @given(events=_sse_events, chunked=st.booleans())
    def call(events, chunked):
        marker = junk.answer(f"h{len(seen)}", sse_response(b"".join(events), chunked=chunked))
        body = {"model": "junk-model", "stream": True, "messages": [{"role": "user", "content": marker}]}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code in (200, 502), r.text[:300]
        seen.append(r.headers["x-meterline-call-id"])

    call()
    client.close()
    recorded = {e["call_id"] for e in fuzz_proxy.events()}
    assert set(seen) <= recorded
    still_serving(fuzz_proxy, key)


# -- MCP batches with ids of every shape, against a server that echoes them as JavaScript does --

_rpc_ids = st.one_of(  # as JSON text, so any integer and any spelling of a number can be sent
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(["7", "1.0", "1e0", "-0.0", "12345678901234567890123", "1E2"]),
)


def test_mcp_batches_with_any_ids_get_one_row_per_request(make_proxy):
    from tests.proxy.hostile_mcp import HostileMCP

    with HostileMCP() as server:
        proxy = make_proxy(mcp_servers={"js": {"url": server.url, "price_per_call_usd": "0.01", "read_timeout": 10}})
        key = proxy.key()
        client = httpx.Client(base_url=proxy.url, timeout=30, headers={"authorization": f"Bearer {key}"})
        sent = 0

        @FUZZ
        @given(ids=st.lists(_rpc_ids, min_size=1, max_size=8))
        def call(ids):
            nonlocal sent
            batch = ",".join('{"jsonrpc":"2.0","id":' + i + ',"method":"tools/call","params":{"name":"echo"}}' for i in ids)
            r = client.post("/mcp/js", content="[" + batch + "]", headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text[:300]
            sent += len(ids)

        call()
        client.close()
        rows = [e for e in proxy.events() if e["tool"] == "echo"]
        assert len(rows) == sent and {e["status"] for e in rows} == {"ok"}
