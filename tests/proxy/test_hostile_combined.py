"""The combined check of issue 20: a hostile stream and a hostile client at once, and the
proxy still answers /healthz and every other tenant, and records every call it answered.
Behaviour, not timing: bench/hostile.py times /healthz under the same mix."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx

from tests.proxy.junk_upstream import usageless_stream


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_hostile_stream_and_client_leave_other_tenants_served_and_recorded(junk_proxy, junk):
    proxy = junk_proxy(server={"max_response_bytes": 48 * 1024 * 1024, "max_header_bytes": 8192, "header_timeout_seconds": 1})
    attacker, tenant = proxy.key("web"), proxy.key("nlp")
    marker = junk.answer("flood", usageless_stream(10**10, end=False))  # endless, full speed, no usage
    flowing, done = threading.Event(), threading.Event()
    cut: list[bytes] = []
    before = rss_mb()

    def hostile_stream() -> None:
        body = {"model": "junk-model", "stream": True, "messages": [{"role": "user", "content": marker}]}
        with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {attacker}"}, timeout=120) as r:  # fmt: skip
            for chunk in r.iter_bytes():
                flowing.set()
                cut[:] = [chunk]
        done.set()

    def hostile_client() -> None:
        while not done.is_set():
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
                try:
                    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-junk: " + b"a" * 200_000 + b"\r\n\r\n")
                    s.recv(1024)
                except OSError:
                    pass

    threads = [threading.Thread(target=hostile_stream), threading.Thread(target=hostile_client)]
    for t in threads:
        t.start()
    assert flowing.wait(60)
    answered, healthy = [], 0
    while (not done.is_set() or len(answered) < 3) and len(answered) < 200:
        assert httpx.get(proxy.url + "/healthz", timeout=30).json() == {"status": "ok"}
        healthy += 1
        r = httpx.post(proxy.url + "/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {tenant}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert r.status_code == 200
        answered.append(r.headers["x-meterline-call-id"])
    for t in threads:
        t.join(120)
    assert healthy >= 1 and answered  # served while the hostile stream was in flight
    assert b"upstream_too_large" in cut[0]  # the flood was cut at its cap
    rows = {e["call_id"]: e for e in proxy.events()}
    assert set(answered) <= set(rows) and {rows[c]["team"] for c in answered} == {"nlp"}
    assert [e["status"] for e in rows.values() if e["team"] == "web"] == ["upstream_error"]
    assert rss_mb() - before < 500  # a generous sanity bound: 20 MB unbounded once held 1.1 GB
