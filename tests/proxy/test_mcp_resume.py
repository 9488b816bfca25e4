"""SSE polling (2025-11-25): the server closes a tool call's stream and the client resumes it
with GET + Last-Event-ID; the call's answer arrives on the resumed stream and is metered there."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings

from meterline.testing.mcp_server import MCPSimServer
from tests.conftest import free_port
from tests.proxy.test_mcp import PRICE, Recorder, connect, cost, mcp_config, tool_rows


class MemoryEventStore(EventStore):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (event id, stream id, message)

    async def store_event(self, stream_id: str, message: Any) -> str:
        self.events.append((str(len(self.events) + 1), stream_id, message))
        return self.events[-1][0]

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        at = next((i for i, e in enumerate(self.events) if e[0] == last_event_id), None)
        if at is None:
            return None
        stream = self.events[at][1]
        for event_id, stream_id, message in self.events[at + 1 :]:
            if stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


async def hand_back(ctx: Context) -> str:
    """Closes its own stream, then answers: the client has to resume to get the answer."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)
    return "finished"


def polling_app() -> Any:
    server = MCPServer("poller", log_level="WARNING")
    server.tool()(hand_back)
    return server.streamable_http_app(
        streamable_http_path="/mcp",
        event_store=MemoryEventStore(),
        retry_interval=50,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )


async def test_an_answer_on_a_resumed_stream_ends_its_call_as_ok(make_proxy):
    port = free_port()
    proxy = make_proxy(mcp_servers=mcp_config(f"http://127.0.0.1:{port}/mcp"))
    key = proxy.key("nlp")
    sim = MCPSimServer(port=port)
    sim.app = Recorder(polling_app())
    with sim:
        async with connect("session", f"{proxy.url}/mcp/sim", key) as client:
            result = await client.call_tool("hand_back", {})
    assert result.content[0].text == "finished"
    assert any(h.get("last-event-id") for h in sim.app.headers)  # the client did resume
    (row,) = tool_rows(proxy.events())
    assert (row["tool"], row["status"], cost(row)) == ("hand_back", "ok", PRICE)
