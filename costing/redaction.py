"""Secrets kept out of what is recorded: an upstream's error text may echo the credential it
was sent (a provider answering `401 invalid key sk-...`), and that text goes to the ledger's
`error` column, the spool and the events export.

The client still gets the upstream's answer as sent (the contract passes an upstream's own
error through); only the copy Meterline keeps is redacted.
"""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET = 8  # shorter values would redact ordinary words
MIN_TAIL = 4  # a secret cut off by truncation still leaks its prefix: trim one this long


class Redactor:
    """Parameters:
    secrets: the values never to record (provider keys, MCP server credentials, admin keys).
    """

    def __init__(self, secrets: Iterable[str]):
        found: set[str] = set()
        for s in secrets:
            found.update(v for v in (s, s.partition(" ")[2]) if len(v) >= MIN_SECRET)  # "Bearer x": x too
        self._secrets = sorted(found, key=len, reverse=True)  # longest first: "Bearer x" before "x"

    def __call__(self, text: str, limit: int) -> str:
        """`text` without any secret, cut to `limit` characters."""
        if not text or not self._secrets:
            return text[:limit]
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        text = text[:limit]
        for s in self._secrets:  # a secret cut in two by the limit: drop what is left of it
            for n in range(min(len(s) - 1, len(text)), MIN_TAIL - 1, -1):
                if text.endswith(s[:n]):
                    return text[:-n] + REDACTED
        return text
