"""Schema migrations: they match the models, and upgrade SQLite and PostgreSQL ledgers in place."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from meterline.costing import create_engine, create_schema
from meterline.costing.engine import newest_revision
from meterline.costing.migrate import _config, current, drift, head, upgrade
from tests.conftest import run_cli
from tests.seed import event, seed


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(ledger_url: str):
    e = create_engine(ledger_url)
    yield e
    e.dispose()


def config_for(tmp_path, url: str):
    path = tmp_path / "config.yaml"
    path.write_text(f"database: {url}\n")
    return str(path)


def test_migrations_build_exactly_the_schema_the_models_describe(engine):
    assert upgrade(engine) == head()
    assert drift(engine) == [], (
        "costing/tables.py changed without a migration: run `python -m meterline.costing.migrate 'what changed'` "
        "and check what it wrote (a NOT NULL column added to a table with rows needs a server_default)"
    )


def test_create_schema_migrates_to_head(engine):
    create_schema(engine)
    assert current(engine) == head()
    create_schema(engine)  # again: nothing to do
    assert current(engine) == head()


def test_the_newest_revision_file_is_alembics_head():
    # create_schema's start-up check reads revisions by file name, without Alembic.
    assert newest_revision() == head()


def test_a_ledger_already_at_head_is_opened_without_loading_alembic(engine, ledger_url):
    upgrade(engine)
    code = (
        "import sys; from costing import create_engine, create_schema; "
        f"create_schema(create_engine({ledger_url!r})); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_db_upgrade_keeps_the_rows_of_a_ledger_made_before_migrations(engine, ledger_url, tmp_path):
    # What `create_all` made before there were migrations, from an older model without one column.
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN cache_write_tokens"))
    rows = [event("0.25", call_id=f"{i:016x}") for i in range(3)]
    old = [{k: v for k, v in r.items() if k != "cache_write_tokens"} for r in rows]
    with engine.begin() as conn:
        conn.execute(sa.table("events", *map(sa.column, old[0])).insert(), old)
    assert current(engine) is None

    res = run_cli("db", "upgrade", "--config", config_for(tmp_path, ledger_url))

    assert f"to {head()}" in res.stdout
    assert current(engine) == head()
    assert drift(engine) == []
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT call_id, cost_pico, cache_write_tokens FROM events ORDER BY call_id")).all()
    assert [tuple(r) for r in got] == [(r["call_id"], r["cost_pico"], 0) for r in rows]
    seed(engine, [event("1")])  # and the upgraded ledger takes new events


def test_db_upgrade_carries_a_ledger_from_the_first_revision_to_head_with_its_rows(engine, ledger_url, tmp_path):
    first = ScriptDirectory.from_config(_config()).get_base()
    upgrade(engine, first)
    rows = [event("0.5", call_id=f"{i:016x}") for i in range(5)]
    seed(engine, rows)

    run_cli("db", "upgrade", "--config", config_for(tmp_path, ledger_url))
    res = run_cli("db", "upgrade", "--config", config_for(tmp_path, ledger_url))

    assert res.stdout.strip() == f"ledger already at revision {head()}"
    assert drift(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), sum(cost_pico) FROM events")).one() == (5, 5 * rows[0]["cost_pico"])
        assert conn.execute(sa.text("SELECT sum(requests) FROM rollups_hourly")).scalar() == 5


def test_replicas_migrating_one_postgresql_database_at_once_take_turns(postgres_url):
    engines = [create_engine(postgres_url) for _ in range(4)]
    results: list[object] = []

    def migrate(e: sa.Engine) -> None:
        try:
            results.append(upgrade(e))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=migrate, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [head()] * 4
    assert drift(engines[0]) == []
    for e in engines:
        e.dispose()


def test_db_upgrade_fails_in_one_line_when_the_database_is_unreachable(tmp_path):
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    res = run_cli("db", "upgrade", "--config", config_for(tmp_path, url), check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("meterline: cannot open the ledger database")
    assert "Traceback" not in res.stderr


def test_a_ledger_migrated_by_a_newer_meterline_is_refused_in_one_line(engine, ledger_url, tmp_path):
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    res = run_cli("db", "upgrade", "--config", config_for(tmp_path, ledger_url), check=False)
    assert res.returncode == 1
    assert "newer than this version of Meterline" in res.stderr and "Traceback" not in res.stderr


def test_tables_dropped_by_hand_are_built_again_though_the_version_row_remains(engine):
    upgrade(engine)
    SQLModel.metadata.drop_all(engine)  # what a "start from scratch" script does
    assert upgrade(engine) == head()
    assert drift(engine) == []
