"""Fixtures for the replica tests: a fresh PostgreSQL database and `meterline serve` processes on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa

from meterline.costing import create_engine, create_schema
from meterline.testing.upstream import SimServer
from tests.conftest import PROVIDER_KEY
from tests.replicas.fleet import Replica


@pytest.fixture(scope="session", autouse=True)
def _sdk_models_built(upstream: SimServer) -> None:
    """The tests here parse responses on many threads at once. The openai SDK's models build
    their pydantic schemas on first use, and threads doing that together can fail
    (PydanticUserError: base-model-instantiated), so one answer is parsed first, here."""
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key=PROVIDER_KEY, max_retries=0, timeout=30)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20)


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
