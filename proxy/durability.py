"""A response's last bytes wait for its events to be durable (the JetStream spool).

The disk spool makes an event durable inside `Spool.append` (one `write(2)`), so whatever the
route sends next is already covered. The JetStream spool's `append` returns a future instead,
done once the broker acknowledged the event. `hold` keeps that future for the request being
served (a context variable the app sets per request); `durable_send` wraps the ASGI `send` so
that each message waits for what the request holds before it goes out. A non-streamed
answer therefore leaves only once its event is in the stream; a stream's last event (its
usage, `[DONE]`) and the end of the response wait the same way.

If the broker does not acknowledge within `timeout`, the response does not complete: an answer
not yet started becomes a 503 `spool_unavailable`, a stream is cut off before its last event
(the connection closes without the end of the response, and clients raise). The event is
still published again in the background until the broker takes it, so a call the upstream
served (and billed) reaches the ledger once the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from contextvars import ContextVar

from starlette.types import Message, Send

from .errors import ProxyError, error_response

log = logging.getLogger("meterline.proxy")

_HELD: ContextVar[list[Awaitable[None]] | None] = ContextVar("meterline_held_events", default=None)


def unavailable(why: str = "its event broker is unreachable") -> ProxyError:
    return ProxyError(503, "spool_unavailable", f"the proxy cannot record calls right now ({why}); try again")


def hold(ack: Awaitable[None]) -> None:
    """Make the current request's response wait for `ack` (an event's acknowledgement)."""
    held = _HELD.get()
    if held is not None:
        held.append(ack)


def start_request() -> list[Awaitable[None]]:
    """A new list of held acknowledgements for the request this task (and its children) serve."""
    held: list[Awaitable[None]] = []
    _HELD.set(held)
    return held


def durable_send(send: Send, held: list[Awaitable[None]], timeout: float) -> Send:
    """`send`, each message waiting first for the acknowledgements `held` has gathered."""
    state = {"replaced": False, "started": False}

    async def send_when_durable(message: Message) -> None:
        if state["replaced"]:
            return  # the 503 went out instead of this response
        if held:
            waiting = list(held)
            held.clear()
            _, late = await asyncio.wait([asyncio.ensure_future(a) for a in waiting], timeout=timeout)
            failed = late or any(not f.cancelled() and f.exception() is not None for f in waiting if asyncio.isfuture(f))
            if failed:
                log.error("a response withheld: its event was not acknowledged by the broker within %.0f s", timeout)
                if message["type"] == "http.response.start" and not state["started"]:
                    state["replaced"] = True
                    await error_response(unavailable())({"type": "http"}, _no_receive, send)
                    return
                raise OSError("the call's event was not acknowledged by the broker")  # cut off
        if message["type"] == "http.response.start":
            state["started"] = True
        await send(message)

    return send_when_durable


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
