"""The ledger's database: an engine tuned per dialect, its schema brought up to date, and
the dialect's INSERT for upserts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def create_engine(url: str) -> sa.Engine:
    """An engine for the ledger URL, tuned for many small batched writes."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # A database that went away must fail fast rather than hang the ledger writer or a key
    # refresh for minutes: the proxy serves from its spool meanwhile (libpq connection options).
    libpq = {"connect_timeout": 5, "keepalives_idle": 15, "keepalives_interval": 5, "keepalives_count": 3}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=libpq)


def create_schema(engine: sa.Engine) -> None:
    """Create the ledger, or bring an existing one to the current schema in place.

    Through the Alembic revisions in costing/migrations/ (see costing/migrate.py): a change to
    a table in tables.py needs a revision, and tests/costing/test_migrate.py fails until it has one.
    """
    if _at_newest_revision(engine):
        return  # every start-up: Alembic (with Mako and Pygments, ~10 MB resident) stays unloaded
    from .migrate import upgrade

    upgrade(engine)


def newest_revision() -> str:
    """The newest revision on disk, by file name: revisions are numbered `NNNN_what.py`
    (costing/migrate.py's new_revision); tests/costing/test_migrate.py holds Alembic to it."""
    versions = Path(__file__).with_name("migrations") / "versions"
    return max(p.name[:4] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))


def _at_newest_revision(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return rev == newest_revision() and sa.inspect(conn).has_table("events")
    except sa.exc.DBAPIError:
        return False  # no version table yet (or no database): let Alembic say


def dialect_insert(engine: sa.Engine, table: sa.Table) -> Any:
    """The dialect's own INSERT for `table`, which has `on_conflict_do_*` (SQLite and PostgreSQL)."""
    return (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(table)


__all__ = ["create_engine", "create_schema", "dialect_insert", "newest_revision"]
