"""Who may call: clients by their virtual key, the admin API by `$METERLINE_ADMIN_KEY` (all of
it) or the finance key (`server.finance_key_env`: reads and closing months).

Both read `Authorization: Bearer ...`; a refusal is a 401 `invalid_api_key` in OpenAI's shape,
an admin key without the scope for the route a 403 `permission_denied`.

A virtual key the cache does not know may have been made a moment ago, on this replica or
another: it is looked up in the ledger, on a thread, so it works on its very first call.
Secrets that arrive while a lookup runs wait for the next one and share its query, and the
cache remembers secrets the ledger does not have (costing/keys.py): a flood of made-up keys
costs at most one query in flight at a time, and none for a secret already tried.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from typing import Literal, Protocol

import sqlalchemy as sa
from starlette.requests import Request

from meterline.costing.config import Settings
from meterline.costing.errors import InvalidKey
from meterline.costing.keys import KeyCache, KeyInfo, hash_key

from .errors import ProxyError, from_costing

log = logging.getLogger("meterline.proxy")

Role = Literal["admin", "finance"]
_UNAVAILABLE = "this key is not known here yet and the ledger is unavailable; try again later"


class KeyLookups:
    """Unknown secrets' digests, looked up in batches: one query in flight, at most `BATCH`
    digests each. Parameters: keys: the cache the answers go into."""

    BATCH = 1000

    def __init__(self, keys: KeyCache):
        self.keys = keys
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._running = False

    async def find(self, digest: str) -> None:
        """Return once the ledger has been asked about `digest` (the cache then knows)."""
        waiter = self._pending.get(digest)
        if waiter is None:
            waiter = self._pending[digest] = asyncio.get_running_loop().create_future()
            if not self._running:
                self._running = True
                asyncio.get_running_loop().create_task(self._drain())
        await asyncio.shield(waiter)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = dict(list(self._pending.items())[: self.BATCH])
                for d in batch:
                    del self._pending[d]
                try:
                    await asyncio.to_thread(self.keys.lookup, list(batch))
                except sa.exc.SQLAlchemyError as e:
                    log.warning("key lookup failed (ledger unavailable): %s", str(e).splitlines()[0][:200])
                    for w in batch.values():
                        if not w.done():
                            w.set_exception(ProxyError(503, "ledger_unavailable", _UNAVAILABLE))
                            w.exception()  # retrieved: a waiter that went away leaves no warning
                    continue
                for w in batch.values():
                    if not w.done():
                        w.set_result(None)
        finally:
            self._running = False


class Credentials(Protocol):
    """What authentication reads of the running proxy (its `Runtime`)."""

    @property
    def keys(self) -> KeyCache: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def lookups(self) -> KeyLookups: ...


def bearer(request: Request, headers: Mapping[str, str] | None = None) -> str | None:
    """The request's bearer token. `headers`: the request's as a dict, when the caller has it."""
    auth = (headers if headers is not None else request.headers).get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(
    rt: Credentials, request: Request, *, challenge: str | None = None, headers: Mapping[str, str] | None = None
) -> KeyInfo:
    """The client's virtual key, or a 401. `challenge`: the `WWW-Authenticate` value the 401
    carries (MCP clients look for one: the spec's authorization flow). `headers`: the
    request's as a dict (`body.header_map`), which saves building Starlette's `Headers`."""
    try:
        digest = rt.keys.digest(bearer(request, headers))
        info = rt.keys.check(digest)  # the common case: known, no I/O
        if info is None:
            await rt.lookups.find(digest)
            info = rt.keys.check(digest)
        if info is None:
            raise InvalidKey("invalid or revoked API key")
        return info
    except InvalidKey as e:
        err = from_costing(e)
        if challenge is not None:
            err.headers["WWW-Authenticate"] = challenge
        raise err from None


_FINANCE_ONLY = "the finance key may only read usage, budgets, reports and exports and close months"


def admin_role(rt: Credentials, request: Request) -> Role:
    """Which admin key the request carries, or a 401. Both keys are compared every time, as
    digests of equal length: the time taken tells nothing of either, not even their lengths."""
    server = rt.settings.server
    digest = hash_key(bearer(request) or "")
    admin = server.admin_key is not None and hmac.compare_digest(digest, hash_key(server.admin_key.get_secret_value()))
    finance = server.finance_key is not None and hmac.compare_digest(digest, hash_key(server.finance_key.get_secret_value()))
    if admin:
        return "admin"
    if finance:
        return "finance"
    raise ProxyError(401, "invalid_api_key", "admin API: send `Authorization: Bearer $METERLINE_ADMIN_KEY`")


def check_admin(rt: Credentials, request: Request, *, finance: bool = False) -> Role:
    """Let the admin key through, and the finance key too when `finance`; else 401 / 403."""
    role = admin_role(rt, request)
    if role == "finance" and not finance:
        raise ProxyError(403, "permission_denied", _FINANCE_ONLY, type="permission_error")
    return role
