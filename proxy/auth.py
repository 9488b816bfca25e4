"""Who may call: clients by their virtual key, the admin API by `$METERLINE_ADMIN_KEY`.

Both read `Authorization: Bearer ...`; a refusal is a 401 `invalid_api_key` in OpenAI's shape.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from starlette.requests import Request

from meterline.costing.config import Settings
from meterline.costing.errors import InvalidKey
from meterline.costing.keys import KeyCache, KeyInfo, hash_key

from .errors import ProxyError, from_costing


class Credentials(Protocol):
    """What authentication reads of the running proxy (its `Runtime`)."""

    @property
    def keys(self) -> KeyCache: ...

    @property
    def settings(self) -> Settings: ...


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(rt: Credentials, request: Request, *, challenge: str | None = None) -> KeyInfo:
    """The client's virtual key, or a 401. `challenge`: the `WWW-Authenticate` value the 401
    carries (MCP clients look for one: the spec's authorization flow)."""
    try:
        return rt.keys.authenticate(bearer(request))
    except InvalidKey as e:
        err = from_costing(e)
        if challenge is not None:
            err.headers["WWW-Authenticate"] = challenge
        raise err from None


def check_admin(rt: Credentials, request: Request) -> None:
    expected = rt.settings.server.admin_key
    token = bearer(request) or ""
    # Digests of equal length, so the comparison's time tells nothing, not even the key's length.
    if expected is None or not hmac.compare_digest(hash_key(token), hash_key(expected.get_secret_value())):
        raise ProxyError(401, "invalid_api_key", "admin API: send `Authorization: Bearer $METERLINE_ADMIN_KEY`")
