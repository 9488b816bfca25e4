"""Schema migrations of the ledger, through Alembic (costing/migrations/).

`upgrade(engine)` brings any ledger to the current schema in place: a new one is created, one
made before migrations existed (tables but no `alembic_version`) is completed by the baseline
revision, which only adds what is missing, and later revisions follow. Replicas starting at
once on PostgreSQL take turns on an advisory lock, so each revision runs once.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from .errors import LedgerSchemaError

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_ID = 0x6D65746572  # "meter": the advisory lock replicas queue on while migrating
# Alembic runs a migration through module-level proxies (`alembic.op`, `alembic.context`):
# one migration at a time per process.
_RUNNING = threading.Lock()


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def _known() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


@cache
def head() -> str:
    """The newest revision this version of Meterline knows."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: sa.Engine) -> str | None:
    """The ledger's revision; None for an empty database or one made before migrations."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Migrate the ledger to `revision` in place; returns the revision it is at afterwards."""
    target = head() if revision == "head" else revision
    now = current(engine)
    if now == target and _has_events(engine):
        return target  # the common case at every start-up: nothing to do, no lock taken
    if now is not None and now not in _known():
        raise LedgerSchemaError(
            f"the ledger's schema is at revision {now!r}, newer than this version of Meterline "
            f"knows (up to {head()!r}): run a Meterline at least as new as the one that migrated it"
        )
    with _RUNNING, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held until commit; a replica that waited here finds the work done.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        if not sa.inspect(conn).has_table("events") and MigrationContext.configure(conn).get_current_revision():
            # The tables were dropped and the version row left behind: build them again.
            command.stamp(_config(conn), "base")
        command.upgrade(_config(conn), revision)
        return MigrationContext.configure(conn).get_current_revision() or ""


def new_revision(message: str) -> str:
    """Write a revision for what the models changed since the newest one; returns its path.

    `python -m meterline.costing.migrate "add the foo column"`, then read and adjust what it wrote.
    """
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{tmp}/head.db")  # a ledger at head, to compare with
        upgrade(engine)
        with engine.begin() as conn:
            script = command.revision(_config(conn), message=message, autogenerate=True, rev_id=f"{int(head()) + 1:04d}")
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return script.path


def _has_events(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return sa.inspect(conn).has_table("events")


def drift(engine: sa.Engine) -> list[Any]:
    """How the ledger's tables differ from the models (empty: migrations and models agree)."""
    import meterline.costing  # noqa: F401 - every model module, so all tables are on the metadata

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, SQLModel.metadata)
    return [d for d in diffs if not _is_alembic_version(d)]


def _is_alembic_version(diff: Any) -> bool:
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


__all__ = ["current", "drift", "head", "new_revision", "upgrade"]

if __name__ == "__main__":
    print(new_revision(" ".join(sys.argv[1:]) or "describe the change"))
