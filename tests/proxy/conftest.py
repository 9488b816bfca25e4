"""Upstreams that misbehave at the socket level, for the proxy's timeout and failure paths."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from aiohttp import web

from meterline.testing.upstream import SimServer
from tests.conftest import PROVIDER_KEY, base_config
from tests.proxy.junk_upstream import JunkUpstream


@pytest.fixture
def own_upstream():
    """A simulator for one test alone: the sockets towards it are that test's only."""
    with SimServer(api_key=PROVIDER_KEY) as sim:
        yield sim


@pytest.fixture
def unaccepting_url():
    """A port whose accept queue is full: connections to it are never accepted (SYNs dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.1)  # let the handshakes that fit complete
    yield f"http://127.0.0.1:{port}"
    for s in fillers:
        s.close()
    server.close()


@pytest.fixture
def stalling_upstream():
    """An upstream that sends one chunk of a stream, then nothing, forever."""
    chunk = b'data: {"id":"c1","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"hello there"},"finish_reason":null}]}\n\n'

    async def handler(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(chunk)
        await asyncio.sleep(3600)  # cancelled when the proxy lets go (handler_cancellation)
        return resp

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield url
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(scope="module")
def junk():
    """The raw-socket upstream of hostile and broken answers (tests/proxy/junk_upstream.py)."""
    with JunkUpstream() as j:
        yield j


@pytest.fixture
def junk_proxy(make_proxy, tmp_path, upstream, junk):
    """A proxy whose model `junk-model` is served by `junk` (and the others by the simulator)."""

    def make(**overrides):
        base = base_config(tmp_path, upstream.url)
        models = base["models"] + [{"name": "junk-model", "provider": "junk"}]
        prices = base["prices"] + [{"model": "junk-model", "input_per_mtok": "1", "output_per_mtok": "2"}]
        junk_provider = {"base_url": junk.url + "/v1", "api_key_env": "SIM_API_KEY", "read_timeout": 2, "connect_timeout": 1}
        return make_proxy(**{"providers": {"junk": junk_provider}, "models": models, "prices": prices, **overrides})

    return make
