"""Admin: the month's files for finance, streamed, and closing a month (admin or finance key).

An export is the CLI's (`meterline export ...`), byte for byte: the same exporter from the
reports registry, streamed as it is produced. The events export reads the ledger in batches
(reports/ledger_queries.py `events`) and the chargeback is computed from per-line sums, so a
month of millions of events comes out in constant memory. Each chunk is read on a worker
thread; the first one before the answer starts, so a failure is still a clean error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from itertools import chain
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from meterline.costing import PeriodNotEnded, close_period, usd
from meterline.costing.months import MONTH_PATTERN, ensure_ended
from meterline.reports import EXPORTS, FOCUS_FORMATS

from ..auth import check_admin
from ..errors import ProxyError, invalid_request
from ..runtime import Runtime
from .models import Month, PeriodClosedOut

router = APIRouter(tags=["exports"])

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "focus": "text/csv; charset=utf-8", "json": "application/json", "jsonl": "application/x-ndjson",
               "focus-parquet": "application/vnd.apache.parquet"}  # fmt: skip
SUFFIX = {"focus": "focus.csv", "focus-parquet": "focus.parquet", "jsonl": "jsonl", "json": "json", "csv": "csv"}


def _formats(kind: str) -> str:
    return "^(" + "|".join(EXPORTS[kind]) + ")$"


async def _stream(rt: Runtime, kind: str, fmt: str, month: str, **options: str) -> Response:
    exporter = EXPORTS[kind].get(fmt)
    if exporter is None:
        raise invalid_request(f"format: {kind} exports as {', '.join(EXPORTS[kind])}, not {fmt!r}", "format")
    chunks: Iterator[str | bytes] = iter(exporter(rt.engine, rt.settings, month, **options))
    first = await asyncio.to_thread(next, chunks, None)
    body = chain([] if first is None else [first], chunks)
    name = f"{kind}-{month}.{SUFFIX.get(fmt, fmt)}"
    return StreamingResponse(
        (c.encode() if isinstance(c, str) else c for c in body),  # iterated on worker threads
        media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_FILE = {200: {"content": {"text/csv": {}, "application/x-ndjson": {}, "application/json": {}}, "description": "the file"}}


@router.get("/exports/chargeback", responses=_FILE)  # type: ignore[arg-type]
async def export_chargeback(
    request: Request,
    month: Month,
    format: Annotated[
        str, Query(pattern=_formats("chargeback"), description="csv, focus (FinOps FOCUS), focus-parquet or json")
    ] = "csv",
    focus_version: Annotated[str, Query(pattern=r"^1\.[23]$", description="FOCUS version of the focus formats")] = "1.2",
) -> Response:
    """The monthly chargeback file, as `meterline export chargeback --format ... --focus-version ...` writes it."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    options = {"focus_version": focus_version} if format in FOCUS_FORMATS else {}
    return await _stream(rt, "chargeback", format, month, **options)


@router.get("/exports/events", responses=_FILE)  # type: ignore[arg-type]
async def export_events(
    request: Request,
    month: Month,
    format: Annotated[str, Query(pattern=_formats("events"), description="csv or jsonl")] = "csv",
) -> Response:
    """Every metered call billed in the month, one row each, as `meterline export events` writes it."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    return await _stream(rt, "events", format, month)


@router.post("/periods/{period}/close", response_model=PeriodClosedOut, tags=["periods"])
async def close(
    request: Request,
    period: Annotated[str, Path(pattern=MONTH_PATTERN, description="the month to close, YYYY-MM")],
    force: Annotated[bool, Query(description="close a month that has not ended yet")] = False,
) -> Response:
    """Freeze a month's chargeback, as `meterline period close`: later events for it are
    billed as adjustments in the next open month. 409 `period_closed` if it already is."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    if not force:
        try:
            ensure_ended(period)
        except PeriodNotEnded as e:
            raise ProxyError(409, "period_not_ended", f"{e}; wait for it to end or pass force=true", param="period") from None
    cb = await asyncio.to_thread(close_period, rt.engine, rt.settings, period, force=True)  # checked above, unless forced
    return JSONResponse(
        {"period": period, "closed_at": cb.closed_at, "lines": len(cb.lines), "total": usd(cb.total, 2), "currency": cb.currency}
    )
