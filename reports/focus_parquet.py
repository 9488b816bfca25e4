"""The FOCUS rows as Parquet (`--format focus-parquet`): the same columns and values as the
FOCUS CSV, typed. Money and quantities are decimals (decimal128), never floats; the period
columns are UTC timestamps; x_ counters are integers."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.costing import Chargeback

from .focus import (
    COLUMNS,
    INTEGER_COLUMNS,
    MONEY_COLUMNS,
    PRICE_COLUMNS,
    QUANTITY_COLUMNS,
    TIME_COLUMNS,
    Parts,
    focus_records,
)

MONEY_TYPE = (24, 6)  # 18 digits before the point, the six places every amount keeps
# Unit prices per token, and a rate card row's ContractedCost (its rate times its tokens, exact):
# 18 digits before the point and 20 after.
PRICE_TYPE = (38, 20)
EXACT_COLUMNS = (*PRICE_COLUMNS, "ContractedCost")
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_TYPE[1])
QUANTITY_TYPE = (24, 1)


def _type(column: str) -> Any:
    import pyarrow as pa

    if column in EXACT_COLUMNS:
        return pa.decimal128(*PRICE_TYPE)
    if column in MONEY_COLUMNS:
        return pa.decimal128(*MONEY_TYPE)
    if column in QUANTITY_COLUMNS:
        return pa.decimal128(*QUANTITY_TYPE)
    if column in INTEGER_COLUMNS:
        return pa.int64()
    if column in TIME_COLUMNS:
        return pa.timestamp("us", tz="UTC")
    if column == "x_Adjustment":
        return pa.bool_()
    return pa.string()


def _time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def focus_parquet(
    cb: Chargeback, *, version: str = "1.2", allocation: str = "proportional", parts: Parts | None = None
) -> bytes:
    import pyarrow as pa  # only this export needs it
    import pyarrow.parquet as pq

    columns = COLUMNS[version]
    schema = pa.schema([pa.field(c, _type(c)) for c in columns])
    data: dict[str, list[Any]] = {c: [] for c in columns}
    for rec in focus_records(cb, version=version, allocation=allocation, parts=parts):
        for c in columns:
            v = rec[c]
            if c in TIME_COLUMNS and v:
                v = _time(v)
            elif c in EXACT_COLUMNS and v is not None:
                v = v.quantize(PRICE_QUANTUM)  # exact to 20 places (a finer rate keeps 20)
            data[c].append(v)
    table = pa.table(data, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


__all__ = ["focus_parquet"]
