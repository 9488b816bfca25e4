"""Operations that complete a schema instead of assuming it is empty.

The baseline revision uses them so that a ledger made before migrations existed (by
`create_all`, maybe by an older version with fewer columns) is brought to the baseline in
place: missing tables and indexes are created, missing columns are added with a fill value
for the rows already there. On an empty database they are plain `create_table`/`create_index`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op


def _inspector() -> sa.Inspector | None:
    return None if context.is_offline_mode() else sa.inspect(op.get_bind())


def ensure_table(name: str, *items: Any) -> None:
    insp = _inspector()
    if insp is None or not insp.has_table(name):
        op.create_table(name, *items)
        return
    have = {c["name"] for c in insp.get_columns(name)}
    for item in items:
        if isinstance(item, sa.Column) and item.name not in have:
            op.add_column(name, _filled(item))


def ensure_column(table: str, column: sa.Column[Any]) -> None:
    """Add a column unless the table has it (a ledger `create_all` made from newer models)."""
    insp = _inspector()
    if insp is not None and column.name in {c["name"] for c in insp.get_columns(table)}:
        return
    op.add_column(table, _filled(column))


def ensure_index(name: str, table: str, columns: list[str], unique: bool = False) -> None:
    insp = _inspector()
    if insp is not None and name in {i["name"] for i in insp.get_indexes(table)}:
        return
    op.create_index(name, table, columns, unique=unique)


def _filled(column: sa.Column[Any]) -> sa.Column[Any]:
    """The column with a server default, so existing rows get a value for a NOT NULL column."""
    col = column._copy()
    if col.nullable or col.server_default is not None:
        return col
    t = col.type
    if isinstance(t, sa.Boolean):
        col.server_default = sa.DefaultClause(sa.false())
    elif isinstance(t, sa.Integer | sa.Numeric):
        col.server_default = sa.DefaultClause("0")
    elif isinstance(t, sa.DateTime):
        col.server_default = sa.DefaultClause(sa.func.current_timestamp())
    else:
        col.server_default = sa.DefaultClause("")
    return col
