"""NATS JetStream for the tests that need it: a stream, subjects and consumer of each test's own.

The server is $METERLINE_TEST_NATS (CI sets it, and there a server that cannot be reached fails
the tests). Without it the default local server is used if it answers, else those tests are
skipped, as tests/postgres.py does for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

DEFAULT = "nats://127.0.0.1:4222"
_FROM_ENV = os.environ.get("METERLINE_TEST_NATS", "")  # read before the tests clear METERLINE_*


@pytest.fixture(scope="session")
def nats_server() -> str:
    """The broker's URL, once it is known to answer."""
    url = _FROM_ENV or DEFAULT
    where = urlsplit(url)
    try:
        socket.create_connection((where.hostname or "127.0.0.1", where.port or 4222), timeout=5).close()
    except OSError as e:
        if _FROM_ENV:
            pytest.fail(f"METERLINE_TEST_NATS is set but NATS is unreachable at {url}: {e}")
        pytest.skip(f"no NATS at {DEFAULT} (set METERLINE_TEST_NATS)")
    return url


@pytest.fixture
def jetstream(nats_server: str) -> Iterator[dict[str, Any]]:
    """`server:` settings for a spool in a JetStream stream of this test's own, deleted afterwards."""
    tag = secrets.token_hex(4)
    cfg = {
        "spool_url": nats_server,
        "jetstream": {
            "stream": f"TEST_SPOOL_{tag}",
            "subject": f"test.{tag}.events",
            "rejected_subject": f"test.{tag}.rejected",
            "consumer": f"ledger-{tag}",
            "redeliver_seconds": 3,
            "max_bytes": 256 * 1024 * 1024,
        },
    }
    yield cfg
    asyncio.run(_delete_stream(nats_server, cfg["jetstream"]["stream"]))


async def _delete_stream(url: str, stream: str) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


__all__ = ["DEFAULT", "jetstream", "nats_server"]
