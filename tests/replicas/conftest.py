"""Fixtures for the replica tests: a fresh PostgreSQL database and `meterline serve` processes on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from meterline.costing import create_engine, create_schema
from meterline.testing.upstream import SimServer
from tests.replicas.fleet import Replica


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[sa.Engine]:
    """The shared ledger, created before any replica starts."""
    engine = create_engine(postgres_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def start_replica(tmp_path: Path, upstream: SimServer, postgres_url: str, ledger: sa.Engine) -> Iterator[Any]:
    """`start_replica(name, database=..., **config overrides)` -> a running Replica."""
    started: list[Replica] = []

    def start(name: str, database: str = postgres_url, **overrides: Any) -> Replica:
        r = Replica(tmp_path, name, upstream.url, database, **overrides)
        started.append(r)
        return r.start()

    yield start
    for r in started:
        r.stop()
