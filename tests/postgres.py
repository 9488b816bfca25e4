"""PostgreSQL for the tests that need it: a fresh database per test, dropped afterwards.

The server is $METERLINE_TEST_POSTGRES (CI sets it, and there a server that cannot be reached
fails the tests). Without it the default local server is used if it answers, else those tests
are skipped: the only skip the suite allows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_FROM_ENV = os.environ.get("METERLINE_TEST_POSTGRES", "")  # read before the tests clear METERLINE_*


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the server's maintenance database (to create and drop databases)."""
    engine = sa.create_engine(_FROM_ENV or DEFAULT, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as e:
        engine.dispose()
        if _FROM_ENV:
            pytest.fail(f"METERLINE_TEST_POSTGRES is set but PostgreSQL is unreachable: {e.orig}")
        pytest.skip(f"no PostgreSQL at {DEFAULT} (set METERLINE_TEST_POSTGRES)")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server: sa.Engine) -> Iterator[str]:
    """The URL of a new, empty database of its own."""
    name = "meterline_test_" + secrets.token_hex(6)
    with postgres_server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with postgres_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


__all__ = ["DEFAULT", "postgres_server", "postgres_url"]
