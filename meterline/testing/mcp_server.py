"""Simulated MCP tool server (Streamable HTTP) for tests and the demo.

Built with the `mcp` 2.x SDK (`MCPServer`).  It answers both protocol eras on
one endpoint: 2026-07-28 requests (`server/discover`, per-request `_meta`,
`MCP-Protocol-Version: 2026-07-28`) and the handshake era (`initialize`,
`Mcp-Session-Id`, GET stream, DELETE).

Tools: echo, add, lookup (a plain tool: no LLM), fail, summarize (calls an
OpenAI-compatible LLM, forwarding the incoming W3C `traceparent` and `tracestate` as an
OpenTelemetry-instrumented server would), confirm (asks the client once via elicitation;
an `input_required` round on 2026-07-28).

    python -m meterline.testing.mcp_server --port 9000 \
        --llm-base-url http://127.0.0.1:4000/v1 --llm-api-key sk-...
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Annotated, Any

import httpx
import uvicorn
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["create_server", "create_app", "MCPSimServer", "Confirmation", "main"]

MCP_PATH = "/mcp"


class Confirmation(BaseModel):
    """Schema of the elicitation `confirm` asks for."""

    approve: bool


def _trace_headers(ctx: Context) -> dict[str, str]:
    """W3C trace context of the incoming request: HTTP headers first, then `params._meta`."""
    headers = ctx.headers or {}
    meta = ctx.request_context.meta or {}
    out: dict[str, str] = {}
    for key in ("traceparent", "tracestate"):
        value = headers.get(key) or meta.get(key)
        if isinstance(value, str) and value:
            out[key] = value
    return out


def _ask_confirmation(action: str) -> Elicit[Confirmation]:
    return Elicit(f"Perform {action!r}?", Confirmation)


def create_server(
    llm_base_url: str | None = None,
    llm_api_key: str | None = None,
    llm_model: str = "gpt-4o-mini",
) -> MCPServer:
    """The SDK server object with the simulated tools registered."""
    mcp = MCPServer("meterline-sim", version="1.0", log_level="WARNING")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool()
    def add(a: float, b: float) -> float:
        """Return a + b."""
        return a + b

    @mcp.tool()
    def lookup(query: str) -> str:
        """Look a query up (no LLM involved): the answer names the query."""
        return f"found: {query}"

    @mcp.tool()
    def fail() -> str:
        """Always fails with a tool error (isError: true)."""
        raise ToolError("simulated tool failure")

    @mcp.tool()
    async def summarize(text: str, ctx: Context, calls: int = 1) -> str:
        """Summarize text with an LLM; `calls` LLM requests are made (fan-out)."""
        if not llm_base_url:
            raise ToolError("no LLM configured for this server")
        headers = {"content-type": "application/json", **_trace_headers(ctx)}
        if llm_api_key:
            headers["authorization"] = f"Bearer {llm_api_key}"
        body = {"model": llm_model, "messages": [{"role": "user", "content": f"Summarize: {text}"}]}
        answers = []
        # No CA bundle for a plain http URL, and loading one per call cost
        # this simulator a fifth of the demo's CPU.
        async with httpx.AsyncClient(timeout=60, verify=llm_base_url.startswith("https:")) as client:
            for _ in range(max(1, calls)):
                resp = await client.post(
                    f"{llm_base_url.rstrip('/')}/chat/completions", json=body, headers=headers
                )
                if resp.status_code >= 400:
                    raise ToolError(f"LLM call failed: HTTP {resp.status_code}: {resp.text[:200]}")
                answers.append(resp.json()["choices"][0]["message"]["content"] or "")
        return "\n".join(answers)

    @mcp.tool()
    def confirm(action: str, answer: Annotated[Confirmation, Resolve(_ask_confirmation)]) -> str:
        """Ask the client to confirm an action once, then complete."""
        return f"{action}: {'approved' if answer.approve else 'rejected'}"

    return mcp


class _BearerAuth:
    """ASGI wrapper: HTTP requests without `Authorization: Bearer <token>` get 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and dict(scope["headers"]).get(b"authorization") != self.expected
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"www-authenticate", b"Bearer"),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
            return
        await self.app(scope, receive, send)


def create_app(
    llm_base_url: str | None = None,
    llm_api_key: str | None = None,
    llm_model: str = "gpt-4o-mini",
    stateless: bool = False,
    *,
    json_response: bool = False,
    expected_auth: str | None = None,
) -> ASGIApp:
    """ASGI app serving the simulated tools at `/mcp` (Streamable HTTP).

    `stateless`/`json_response` only affect the handshake era (2025-xx); 2026-07-28
    requests are always single-exchange. DNS-rebinding (Host/Origin) checks are off so
    the app works behind a proxy. Run the app's lifespan (uvicorn does).
    """
    app: ASGIApp = create_server(llm_base_url, llm_api_key, llm_model).streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=stateless,
        json_response=json_response,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return _BearerAuth(app, expected_auth) if expected_auth else app


class MCPSimServer:
    """Run `create_app(...)` under uvicorn on 127.0.0.1 in a background thread.

    >>> with MCPSimServer(llm_base_url="http://127.0.0.1:4000/v1") as sim:
    ...     sim.url  # 'http://127.0.0.1:PORT/mcp'
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any) -> None:
        self.host, self.port = host, port
        self.app = create_app(**app_kwargs)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + MCP_PATH

    def start(self, timeout: float = 10.0) -> MCPSimServer:
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mcp-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("MCP sim server failed to start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> MCPSimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m meterline.testing.mcp_server", description=__doc__.splitlines()[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument(
        "--llm-base-url",
        default=None,
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:4000/v1",
    )
    p.add_argument("--llm-api-key", default=None)
    p.add_argument("--llm-model", default="gpt-4o-mini")
    p.add_argument("--stateless", action="store_true", help="handshake era: no Mcp-Session-Id")
    p.add_argument(
        "--json-response", action="store_true", help="handshake era: JSON instead of SSE responses"
    )
    p.add_argument("--expected-auth", default=None, help="require Authorization: Bearer <this>")
    a = p.parse_args(argv)
    app = create_app(
        a.llm_base_url,
        a.llm_api_key,
        a.llm_model,
        a.stateless,
        json_response=a.json_response,
        expected_auth=a.expected_auth,
    )
    print(f"MCP sim server on http://{a.host}:{a.port}{MCP_PATH}", flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
