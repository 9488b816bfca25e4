"""Who pays for a call tree, carried in W3C `tracestate` so that every replica knows.

A sub-call usually reaches the replica that served its parent, which knows the parent's
span and payer in memory. When it reaches another replica (several proxies behind one load
balancer), that replica learns the payer from our `tracestate` member, `meterline=<team>.<mac>`,
which the parent's replica sent upstream with the `traceparent`. The MAC (HMAC-SHA256 over the
trace id, the parent span id and the team) is keyed with a secret all replicas share, so a
client cannot name someone else's team as the payer of its calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import SecretStr

KEY = "meterline"
MAX_MEMBERS = 32  # W3C trace-context: a list of at most 32 members


def trace_secret(configured: SecretStr | None) -> bytes | None:
    """The MAC key, from `server.trace_secret_env` or else the admin key (the same on every
    replica); derived, so the admin key itself never signs anything."""
    if configured is None:
        return None
    return hashlib.sha256(b"meterline tracestate\0" + configured.get_secret_value().encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret: bytes, trace_id: str, span_id: str, team: str) -> str:
    return _b64(hmac.new(secret, f"{trace_id}-{span_id}-{team}".encode(), hashlib.sha256).digest()[:16])


def payer_member(secret: bytes, trace_id: str, span_id: str, team: str) -> str:
    """Our tracestate member naming `team` as the payer of calls made under span `span_id`."""
    return f"{KEY}={_b64(team.encode())}.{_mac(secret, trace_id, span_id, team)}"


def verified_payer(secret: bytes, tracestate: str | None, trace_id: str, span_id: str) -> str | None:
    """The payer team our member in `tracestate` names for `span_id`, if its MAC holds."""
    for member in (tracestate or "").split(",")[:MAX_MEMBERS]:
        key, _, value = member.strip().partition("=")
        if key != KEY:
            continue
        encoded, _, mac = value.partition(".")
        try:
            team = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        # As bytes: compare_digest refuses str with non-ASCII characters (a client's bytes).
        expected = _mac(secret, trace_id, span_id, team).encode()
        return team if hmac.compare_digest(mac.encode("utf-8", "replace"), expected) else None
    return None


def merge(ours: str, incoming: str | None) -> str:
    """`ours` first, then the other vendors' members as they came (W3C: update moves to front)."""
    others = [m.strip() for m in (incoming or "").split(",") if m.strip() and not m.strip().startswith(KEY + "=")]
    return ",".join([ours, *others][:MAX_MEMBERS])
