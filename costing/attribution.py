"""Who a call is for: key, team, department, project, user, tags and its place in a trace."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

MAX_VALUE = 128
MAX_TAGS = 20
MAX_TAGS_CHARS = 1024  # the ledger's `tags` column
# Control characters (C0, DEL, C1) and the invisible ones that reorder or hide text in a
# report or a spreadsheet (zero-width, bidi embeddings, overrides and isolates, BOM).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def clean(value: str | None, limit: int = MAX_VALUE) -> str:
    """A header value fit to store: control characters dropped, length capped."""
    if not value:
        return ""
    return _UNSAFE.sub("", value).strip()[:limit]


def from_header(value: str | None) -> str | None:
    """A header value as the client meant it: ASGI servers hand headers over decoded as
    latin-1, but clients send UTF-8 (`X-Meterline-User: José`), so non-ASCII values are
    decoded again; bytes that are not UTF-8 are kept as latin-1."""
    if not value or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def parse_tags(header: str | None) -> str:
    """`k=v,k2=v2` cleaned and normalised; malformed pairs are dropped, not fatal, and so are
    the pairs past MAX_TAGS or past MAX_TAGS_CHARS in all."""
    pairs: list[str] = []
    size = -1
    for item in (header or "").split(",")[:MAX_TAGS]:
        k, sep, v = item.partition("=")
        k, v = clean(k, 64), clean(v, 128)
        if sep and k and "," not in v:
            size += len(k) + len(v) + 2
            if size > MAX_TAGS_CHARS:
                break
            pairs.append(f"{k}={v}")
    return ",".join(pairs)


def tags_dict(tags: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in tags.split(",") if "=" in p)


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 hex
    parent_span_id: str  # 16 hex, "" when the call starts a trace
    flags: str = "01"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """A W3C traceparent, or None when absent or malformed (a bad one is ignored, per the spec)."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return TraceContext(m.group(1), m.group(2), m.group(3))


# os.urandom is what `secrets` reads too, two calls down: these run once or twice per call.
def new_span_id() -> str:
    return os.urandom(8).hex()


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_ids() -> tuple[str, str]:
    """A span id and a trace id, from one read of the system's randomness: a call that starts
    its own trace needs both."""
    both = os.urandom(24).hex()
    return both[:16], both[16:]


def traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"
