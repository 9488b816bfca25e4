"""Which key opened each MCP session (`Mcp-Session-Id`), so no other key can use it.

A session id is the server's, handed to the client that sent `initialize`; anyone presenting
it again speaks in that session (its subscriptions, its pending requests, its elicitations).
The proxy notes the key whose request got the id, and a request from another key naming it is
answered 404, as a server answers for a session it does not know.

In memory, bounded (the oldest are forgotten first): a session opened through another replica
is unknown here and passes, as it did before. Sticky routing, which session-keeping MCP
servers need anyway, keeps a session on one replica.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_SESSIONS = 100_000


class Sessions:
    def __init__(self, limit: int = MAX_SESSIONS):
        self.limit = limit
        self._owner: OrderedDict[tuple[str, str], str] = OrderedDict()

    def bind(self, server: str, session: str, key_id: str) -> None:
        """`session` of `server` was opened by a request of `key_id` (the first binding holds)."""
        k = (server, session)
        if k in self._owner:
            return
        self._owner[k] = key_id
        while len(self._owner) > self.limit:
            self._owner.popitem(last=False)

    def allowed(self, server: str, session: str, key_id: str) -> bool:
        owner = self._owner.get((server, session))
        return owner is None or owner == key_id

    def end(self, server: str, session: str) -> None:
        self._owner.pop((server, session), None)
