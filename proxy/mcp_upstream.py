"""The pooled client for MCP servers (`mcp_servers:`), and which headers cross the proxy.

httpx rather than the aiohttp session of the LLM routes: MCP traffic is light next to LLM
traffic, and httpx takes a transport, so unit tests can hand it `httpx.MockTransport`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from meterline.costing.config import MCPServerConfig

from .errors import ProxyError
from .upstream import passes

# Request headers that stay here: the client's virtual key above all, hop-by-hop headers,
# ours (`x-meterline-*`), and those we set ourselves. Everything else (Mcp-Session-Id,
# MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*, Last-Event-ID, Accept, ...) is
# forwarded as sent: 2026-07-28 servers check the Mcp-* headers against the body.
DROP_REQUEST_HEADERS = frozenset(
    (
        "host", "authorization", "proxy-authorization", "cookie", "content-length", "connection",
        "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "accept-encoding", "traceparent", "tracestate",
    )
)  # fmt: skip
@dataclass(frozen=True, slots=True)
class MCPTarget:
    name: str
    config: MCPServerConfig
    url: str
    auth: str | None  # the Authorization value the server gets (from auth_header_env)


def new_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The pooled client for MCP servers. `transport`: one to use instead of the network (a
    test's `httpx.MockTransport`)."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=None,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
        follow_redirects=False,
        trust_env=False,
    )


class MCPUpstreams:
    """One httpx client shared by all MCP servers.

    Parameters:
    servers: the `mcp_servers:` section (secrets resolved).
    client: the client that sends (`new_client()`), closed with the proxy.
    """

    def __init__(self, servers: Mapping[str, MCPServerConfig], client: httpx.AsyncClient):
        self.targets = {
            name: MCPTarget(
                name, s, s.url, s.auth_header.get_secret_value() if s.auth_header else None
            )
            for name, s in servers.items()
        }
        self.client = client

    async def close(self) -> None:
        await self.client.aclose()

    async def open(
        self,
        target: MCPTarget,
        method: str,
        headers: Mapping[str, str],
        *,
        query: str = "",
        body: bytes | None = None,
        traceparent: str,
        tracestate: str = "",
        stream: bool = False,
    ) -> httpx.Response:
        """Send the request and return the response with its body unread; the caller must
        `aclose()` it. `stream`: a server-initiated SSE stream (GET), which may idle for as
        long as the session lives, so it gets no read timeout."""
        # As bytes: the ASGI server decoded them as latin-1, so this gives back exactly what the
        # client sent (httpx would refuse a non-ASCII str).
        out: dict[bytes, bytes] = {
            k.encode("latin-1"): v.encode("latin-1")
            for k, v in headers.items()
            if k.lower() not in DROP_REQUEST_HEADERS and not k.lower().startswith("x-meterline-")
        }
        out[b"accept-encoding"] = b"identity"  # bytes pass through as sent, and stay readable
        out[b"traceparent"] = traceparent.encode("ascii")
        if tracestate:
            out[b"tracestate"] = tracestate.encode("ascii")
        if target.auth:
            out[b"authorization"] = target.auth.encode("ascii")  # as httpx encodes a str
        cfg = target.config
        timeout = httpx.Timeout(
            connect=cfg.connect_timeout,
            read=None if stream else cfg.read_timeout,
            write=cfg.read_timeout,
            pool=cfg.connect_timeout,
        )
        url = f"{target.url}?{query}" if query else target.url
        request = self.client.build_request(method, url, headers=out, content=body, timeout=timeout)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise ProxyError(504, "upstream_timeout", f"MCP server {target.name!r} timed out") from None
        except httpx.TransportError as e:
            raise ProxyError(
                502, "upstream_unavailable", f"MCP server {target.name!r} is unreachable ({type(e).__name__})"
            ) from None


def response_headers(resp: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if passes(k)}
