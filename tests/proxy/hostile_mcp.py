"""An MCP server that reads JSON-RPC ids as JavaScript does (the TypeScript SDK's servers):
every number becomes a double, echoed as `JSON.stringify` writes it (`1.0` and `1e0` come back
as `1`, a 23-digit integer rounded, as `1.2345678901234568e+22`). It answers each request of
a body (a batch gets an array), hands out an `Mcp-Session-Id` on `initialize`, and keeps the
headers of every request it gets."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web


def js_number(v: int | float) -> str:
    f = float(v)
    if f.is_integer() and abs(f) < 1e21:
        return str(int(f))
    return repr(f)  # Python and JavaScript agree on the shortest round-trip form


def js_id(v: Any) -> str:
    return js_number(v) if isinstance(v, int | float) and not isinstance(v, bool) else json.dumps(v)


class HostileMCP:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self._sessions = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> HostileMCP:
        app = web.Application()
        app.router.add_route("*", "/mcp", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/mcp"
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if request.method != "POST":
            return web.Response(status=405)
        raw = await request.read()
        self.bodies.append(raw)
        doc = json.loads(raw)
        msgs = doc if isinstance(doc, list) else [doc]
        answers, headers = [], {}
        for m in msgs:
            if not isinstance(m, dict) or "method" not in m or "id" not in m:
                continue
            if m["method"] == "initialize":
                self._sessions += 1
                headers["Mcp-Session-Id"] = f"session-{self._sessions}"
            result = {"content": [{"type": "text", "text": "done"}]} if m["method"] == "tools/call" else {}
            answers.append('{"jsonrpc":"2.0","id":' + js_id(m["id"]) + ',"result":' + json.dumps(result) + "}")
        if not answers:
            return web.Response(status=202, headers=headers)
        body = answers[0] if isinstance(doc, dict) else "[" + ",".join(answers) + "]"
        return web.Response(text=body, content_type="application/json", headers=headers)
