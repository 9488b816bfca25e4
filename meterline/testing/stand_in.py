"""An in-process stand-in for the aiohttp session the proxy sends LLM calls through.

`create_app(settings, upstream_client=StandInUpstream())` runs the whole metered path of a
chat completion with no socket: what the tests of that seam check, and what
`python -m bench.in_process` times (the proxy's own CPU per call, free of the host's network
stack and scheduling).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
}


class StandInContent:
    def __init__(self, body: bytes):
        self._body = body

    def at_eof(self) -> bool:
        return True

    async def iter_any(self) -> AsyncIterator[bytes]:
        yield self._body


class StandInResponse:
    """What the proxy reads of an `aiohttp.ClientResponse`."""

    def __init__(self, status: int, body: bytes):
        self.status, self._body = status, body
        self.headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
        self.raw_headers = tuple((k.encode(), v.encode()) for k, v in self.headers.items())
        self.content_length = len(body)
        self.content = StandInContent(body)
        self.released = False

    async def read(self) -> bytes:
        return self._body

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.released = True


class StandInUpstream:
    """An aiohttp-compatible client (its `post`) answering every call with `COMPLETION`.

    keep: remember what was sent and answered (`sent`, `responses`), for a test to read; a
        bench sending many calls keeps nothing.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.responses: list[StandInResponse] = []
        self._answer = orjson.dumps(COMPLETION)

    async def post(self, url: str, *, data: bytes, headers: dict[str, str], timeout: Any, allow_redirects: bool) -> StandInResponse:
        assert allow_redirects is False
        response = StandInResponse(200, self._answer)
        if self.keep:
            self.sent.append((url, orjson.loads(data), headers))
            self.responses.append(response)
        return response


__all__ = ["COMPLETION", "StandInResponse", "StandInUpstream"]
