"""The pooled upstream client for OpenAI-compatible providers.

aiohttp, not httpx, on the hot path: in a bare pass-through on this machine kind a shared
aiohttp `ClientSession` forwarded ~4,350 req/s at concurrency 16 against 430-560 for a plain
`httpx.AsyncClient` (see bench/RESULTS.md). httpx stays where speed does not matter.
"""

from __future__ import annotations

import importlib.metadata
import io
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from meterline.costing.config import ProviderConfig

from .errors import ProxyError

_LARGE_BODY = 1 << 20  # aiohttp warns past this for a bytes body: it is one write on the loop
# Request headers a client may pass on to the provider; everything else (its key above all)
# stays here.
FORWARD_REQUEST_HEADERS = ("content-type", "accept", "openai-beta", "idempotency-key")
# Response headers never passed back: hop-by-hop, or recomputed by our server. `x-meterline-*`
# are ours alone (see `passes`).
DROP_RESPONSE_HEADERS = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "server", "date")
)
OWN_PREFIX = "x-meterline-"
VERSION = importlib.metadata.version("meterline")  # the installed package's: the one source of it
USER_AGENT = f"meterline/{VERSION}"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    base_url: str
    auth: str | None
    timeout: aiohttp.ClientTimeout


def new_session() -> aiohttp.ClientSession:
    """The proxy's own pooled session (call it inside the running loop, which it binds to).

    Providers see the proxy's `User-Agent`, not aiohttp's and not the client's. It is set as a
    default header rather than aiohttp's own skipped: `skip_auto_headers` costs every request
    a sort and two header copies in aiohttp."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300),
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT},
    )


class Upstreams:
    """One aiohttp session shared by all providers.

    Parameters:
    providers: the `providers:` section; those of `kind: openai` are served here.
    session: the client that sends (`new_session()`, or one a test hands to `create_app`).
    owned: close `session` with the proxy (False: its giver closes it).
    """

    def __init__(self, providers: Mapping[str, ProviderConfig], session: aiohttp.ClientSession, *, owned: bool = True):
        self.targets = {
            name: Target(
                name=name,
                base_url=(p.base_url or "https://api.openai.com/v1").rstrip("/"),
                auth=f"Bearer {p.api_key.get_secret_value()}" if p.api_key else None,
                timeout=aiohttp.ClientTimeout(sock_connect=p.connect_timeout, sock_read=p.read_timeout),
            )
            for name, p in providers.items()
            if p.kind == "openai"
        }
        self.session = session
        self._owned = owned

    async def close(self) -> None:
        if self._owned:
            await self.session.close()

    async def send(
        self, provider: str, path: str, body: bytes, headers: Mapping[str, str], traceparent: str
    ) -> aiohttp.ClientResponse:
        """POST `body` to the provider; the caller must release the response."""
        target = self.targets[provider]
        out = {h: headers[h] for h in FORWARD_REQUEST_HEADERS if h in headers}
        out["accept-encoding"] = "identity"  # bytes pass through as sent, and stay readable
        out["traceparent"] = traceparent
        if target.auth:
            out["authorization"] = target.auth
        try:
            # Never follow a redirect: a 307/308 would re-send the prompt (and our provider key's
            # request) to wherever the upstream points; the client gets the 3xx as sent.
            # aiohttp writes a bytes body of over 1 MiB in one go on the loop (and warns so);
            # from a BytesIO it is sent in chunks.
            data = body if len(body) <= _LARGE_BODY else io.BytesIO(body)
            return await self.session.post(
                target.base_url + path, data=data, headers=out, timeout=target.timeout, allow_redirects=False
            )
        except aiohttp.ConnectionTimeoutError:  # never accepted the connection: unreachable
            raise ProxyError(
                502, "upstream_unavailable", f"provider {provider!r} did not accept a connection in time"
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ProxyError(504, "upstream_timeout", f"provider {provider!r} timed out") from None
        except aiohttp.ClientError as e:
            raise ProxyError(
                502, "upstream_unavailable", f"provider {provider!r} is unreachable ({type(e).__name__})"
            ) from None


def passes(name: str) -> bool:
    """Whether an upstream's response header reaches the client: not hop-by-hop, and not one of
    ours (an upstream must not add to a call's `X-Meterline-Cost-USD` or name another call id)."""
    known = _PASSES.get(name)
    if known is not None:
        return known
    lower = name.lower()
    verdict = lower not in DROP_RESPONSE_HEADERS and not lower.startswith(OWN_PREFIX)
    if len(_PASSES) < 1_000:  # an upstream names the same few headers on every answer; a hostile one is bounded
        _PASSES[name] = verdict
    return verdict


_PASSES: dict[str, bool] = {}  # header name as sent -> passes()


def raw_response_headers(resp: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    """The headers of `resp` that pass, as the (lower-case name, value) bytes an ASGI response
    starts with: the value as the upstream sent it, not decoded and then encoded again, and
    each of a repeated header kept."""
    out = []
    for name, value in resp.raw_headers:
        lower = _RAW_PASSES.get(name)
        if lower is None:
            lower = name.lower() if passes(name.decode("latin-1")) else b""
            if len(_RAW_PASSES) < 1_000:  # as in passes()
                _RAW_PASSES[name] = lower
        if lower:
            out.append((lower, value))
    return out


_RAW_PASSES: dict[bytes, bytes] = {}  # header name as sent -> its lower case if it passes, else b""
