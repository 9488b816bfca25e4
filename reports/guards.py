"""The guards as reports read them: spend anomalies from the ledger (costing/anomalies.py) and
rate limits' use from the replicas' lease rows (costing/rate_leases.py). Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from meterline.costing import anomalies
from meterline.costing.config import AlertsConfig, Settings
from meterline.costing.money import PICO, usd
from meterline.costing.months import month_end, month_start
from meterline.costing.rate_limits import METRICS, MINUTE, load_limits
from meterline.costing.tables import KEYS, RATE_LEASES

HOUR = timedelta(hours=1)
FRESH = timedelta(seconds=30)  # a replica's rows count while renewed this recently (its ttl)


def spike_row(s: anomalies.Spike, now: datetime | None = None) -> dict[str, Any]:
    """A spike as JSON shows it; `open` when it goes on into the current or the last full hour."""
    row: dict[str, Any] = {
        "scope": s.scope[0],
        "id": s.scope[1],
        "start": s.start.strftime("%Y-%m-%dT%H:00:00Z"),
        "hours": s.hours,
        "spend_usd": usd(s.spend, 6),
        "peak_usd": usd(s.peak, 6),
        "total_usd": usd(s.total, 6),
        "usual_usd": usd(s.median, 6),
        "z": str(s.z),
        "message": s.message,
    }
    if now is not None:
        row["open"] = s.last >= anomalies.hour_of(now) - HOUR
    return row


def key_teams(engine: sa.Engine) -> dict[str, str]:
    """Each key's team, for showing a key's guards to its department's viewers only."""
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(sa.select(KEYS.c.id, KEYS.c.team))}


def in_department(scope: str, settings: Settings, department: str | None, keys: dict[str, str]) -> bool:
    """Whether a scope ("team:nlp", "key:key_...", "department:research") is `department`'s
    (always, with no department to limit to)."""
    if department is None:
        return True
    kind, _, name = scope.partition(":")
    if kind == "department":
        return name == department
    team = keys.get(name, "") if kind == "key" else name
    return any(t.id == team for d in settings.departments if d.id == department for t in d.teams)


def month_anomalies(engine: sa.Engine, cfg: AlertsConfig, month: str) -> list[anomalies.Spike]:
    """Every spike that started in `month`, from the ledger (the same whether or not a proxy
    with `alerts.anomalies` was running then)."""
    return anomalies.spikes(engine, cfg, month_start(month), month_end(month))


def recent_anomalies(
    engine: sa.Engine, cfg: AlertsConfig, now: datetime, hours: int = 24, *, settings: Settings | None = None, department: str | None = None
) -> list[dict[str, Any]]:
    """Spikes that started in the last `hours`, newest first, with whether each is still open;
    of `department`'s teams and keys only, when given (with `settings`)."""
    found = anomalies.spikes(engine, cfg, anomalies.hour_of(now) - hours * HOUR, now + HOUR)
    if department is not None and settings is not None:
        keys = key_teams(engine)
        found = [s for s in found if in_department(f"{s.scope[0]}:{s.scope[1]}", settings, department, keys)]
    return [spike_row(s, now) for s in sorted(found, key=lambda s: s.start, reverse=True)]


def anomalies_table(month: str, spikes: list[anomalies.Spike]) -> str:
    if not spikes:
        return f"No spend anomalies in {month}."
    lines = [f"Spend anomalies in {month} (spend per hour against the same hour on the last 14 days):"]
    for s in spikes:
        lines.append(
            f"  {s.start:%Y-%m-%d %H:00}  {s.scope[0]} {s.scope[1]}: {usd(s.spend, 2)} USD/h against a usual "
            f"{usd(s.median, 2)} (z {s.z}), {s.hours} h, {usd(s.total, 2)} USD in all"
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class LimitUse:
    scope: str  # "team:nlp"
    metric: str
    limit: Decimal  # in the limit's unit (USD for usd_*)
    used: Decimal  # the fleet's sliding window count, from the replicas' lease rows
    replicas: int  # counting it now

    @property
    def used_percent(self) -> Decimal:
        return (self.used * 100 / self.limit).quantize(Decimal("0.1")) if self.limit else Decimal(0)


def rate_use(engine: sa.Engine, settings: Settings, now: datetime | None = None, department: str | None = None) -> list[LimitUse]:
    """Each rate limit (`limits:` and keys' own) with the fleet's use of it, as the replicas last
    published it (within `budgets.refresh_seconds`). A limit nobody counts now shows 0. Of
    `department`'s teams and keys only, when given."""
    now = now or datetime.now(UTC)
    limits: dict[tuple[str, str], Decimal] = {}
    for entry in settings.limits:
        kind, name = entry.scope
        for metric, value in entry.set().items():
            limits[(f"{kind}:{name}", metric)] = Decimal(value)
    t, k = RATE_LEASES, KEYS
    with engine.connect() as conn:
        for key_id, raw in conn.execute(sa.select(k.c.id, k.c.limits).where(k.c.limits.is_not(None), k.c.revoked_at.is_(None))):
            for metric, value in load_limits(raw).items():
                limits.setdefault((f"key:{key_id}", metric), Decimal(value))
        rows = conn.execute(
            sa.select(t.c.scope, t.c.metric, t.c.bucket, t.c.replica, t.c.used).where(t.c.heartbeat_at >= now - FRESH)
        ).all()
    counts: dict[tuple[str, str, int], int] = {}
    sharing: dict[tuple[str, str], set[str]] = {}
    for scope, metric, bucket, replica, used in rows:
        counts[(scope, metric, bucket)] = counts.get((scope, metric, bucket), 0) + used
        sharing.setdefault((scope, metric), set()).add(replica)
    epoch = now.timestamp()
    keys = key_teams(engine) if department is not None else {}
    out = []
    for (scope, metric), limit in sorted(limits.items()):
        if not in_department(scope, settings, department, keys):
            continue
        unit, minutes = METRICS[metric]
        seconds = MINUTE * minutes
        bucket = int(epoch // seconds)
        f = epoch / seconds - bucket
        used = Decimal(counts.get((scope, metric, bucket - 1), 0)) * Decimal(str(round(1 - f, 6))) + counts.get((scope, metric, bucket), 0)
        if unit == "usd":
            used *= PICO
        out.append(LimitUse(scope, metric, limit, used.quantize(Decimal("0.000001") if unit == "usd" else Decimal(1)), len(sharing.get((scope, metric), ()))))
    return out


__all__ = ["LimitUse", "anomalies_table", "in_department", "key_teams", "month_anomalies", "rate_use", "recent_anomalies", "spike_row"]
