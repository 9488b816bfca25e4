"""Item 13 of issue 20: request headers are bounded in size and in time, and so are idle
connections (proxy/http_server.py, as `meterline serve` and these tests run uvicorn)."""

from __future__ import annotations

import socket

import httpx
import pytest


def _connect(proxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port))
    s.settimeout(20)  # a safety net: the proxy closes well before
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


@pytest.fixture
def capped(make_proxy):
    return make_proxy(server={"max_header_bytes": 8192, "header_timeout_seconds": 0.5})


def test_headers_past_the_limit_get_431_and_the_connection_closed(capped):
    s = _connect(capped)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-junk: " + b"a" * 1_000_000 + b"\r\n\r\n"
    try:
        s.sendall(head)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending: what we want
    answer = _read_all(s)
    s.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert httpx.get(capped.url + "/healthz").json() == {"status": "ok"}


def test_a_large_body_after_small_headers_is_not_mistaken_for_large_headers(capped):
    key = capped.key()
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * 500_000 + b'"}]}'
    r = httpx.post(capped.url + "/v1/chat/completions", content=body, headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nhost: x\r\n"], ids=["idle", "slow_headers"])
def test_a_client_that_does_not_finish_its_headers_is_disconnected(capped, sent):
    s = _connect(capped)
    s.sendall(sent)
    assert _read_all(s) == b""  # the proxy closed it (recv returned, no answer)
    s.close()


def test_a_kept_alive_connection_serves_requests_one_after_another(capped):
    with httpx.Client(base_url=capped.url) as c:
        for _ in range(3):
            assert c.get("/healthz").json() == {"status": "ok"}
