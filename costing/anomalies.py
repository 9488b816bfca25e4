"""Spend anomalies: each team's and key's spend per hour against its own recent hours.

The method, seasonal by hour of day with a robust z-score: an hour h of a scope is a spike when

    spend(h) - its largest call >= alerts.min_usd                              worth telling, and no one call
    (that - median) / scale >= alerts.threshold                                far from its usual
    that >= alerts.min_ratio x max(median, p95 of its last 168 hours)          and beyond its busiest

    median, MAD = of the same hour of the day on each of the last 14 days (zero-spend days count)
    scale       = max(1.4826 x MAD, median / 10, min_usd / threshold)

Why: spend follows the working day, so a plain z-score over the last hours takes every
morning for a spike (most hours of a week are nights and weekends, and their median is near
zero); comparing an hour with the same hour on earlier days removes the daily cycle. Median
and MAD, not mean and standard deviation, so that one earlier spike does not hide the next.
An EWMA would take hours to follow the day's rise and fall and alarm on each. Hour of the week
would also remove the weekly cycle, but needs several weeks of history for each hour; weekends
only ever spend less, and only rises are alerted, so the day is enough. The scale's floors keep a
flat or empty history (MAD 0) from making any cent a spike, and the last condition keeps a
quiet hour that is merely busier than other days' same hour (an evening's work) from alarming:
a spike must pass what the scope spends in its busiest hours too. The hour's largest call is
left out: one expensive call (a long document) is not a runaway, a loop of calls is. A scope is judged once it has
7 days of history.

Consecutive spike hours are one spike, alerted once at its first hour: the note
`spend_anomaly` with subject `team:nlp@2026-12-01T13:00Z` is stored once fleet-wide, so
every replica checking (and every later check during the same spike) finds it noted. Notes,
logs and the webhook hold scopes, hours and amounts, never prompt text.

    hourly_spend    the ledger's spend per scope and hour (one grouped query)
    judge           one hour of one scope: its statistics and whether it is a spike
    spikes          every spike in a range of hours (`meterline report anomalies`)
    current         spikes that are still going on (the proxy's periodic check)
    store           the note that makes an alert happen once
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from .config import AlertsConfig
from .money import PICO, usd
from .notes import note_once
from .tables import EVENTS, NOTES

HOUR = timedelta(hours=1)
SAME_HOUR_DAYS = 14  # the same hour on each of these last days is the baseline
MIN_HISTORY_DAYS = 7  # a scope is judged once it has this much history
RECENT_HOURS = 168  # its busiest hours: the BUSIEST quantile of these
BUSIEST = 0.95
MAX_RUN_HOURS = 48  # how far back a spike's start is looked for
KIND = "spend_anomaly"
SCOPES = ("team", "key")

Scope = tuple[str, str]  # ("team" | "key", id)
Series = dict[datetime, Decimal]  # hour start (UTC) -> spend


def hour_of(ts: datetime) -> datetime:
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Ledger:
    """What the detector reads of the ledger: spend per scope and hour, the largest call of each
    (scope, hour), and each key's team."""

    spend: dict[Scope, Series]
    largest: dict[tuple[Scope, datetime], Decimal]
    teams: dict[str, str]  # key id -> the team its calls are charged to


def hourly_spend(engine: sa.Engine, since: datetime, until: datetime) -> Ledger:
    """Spend per team and per key and hour, for calls in [since, until)."""
    t = EVENTS
    if engine.dialect.name == "postgresql":
        hour = sa.func.date_trunc("hour", t.c.ts)
    else:
        hour = sa.func.strftime("%Y-%m-%d %H:00:00", t.c.ts)
    out = Ledger({}, {}, {})
    with engine.connect() as conn:
        for kind, column in (("team", t.c.team), ("key", t.c.key_id)):
            rows = conn.execute(
                sa.select(column, hour.label("hour"), sa.func.sum(t.c.cost_pico), sa.func.max(t.c.cost_pico), sa.func.max(t.c.team))
                .where(t.c.ts >= since, t.c.ts < until, t.c.cost_pico > 0, column != "")
                .group_by(column, hour)
            )
            for name, h, pico, largest, team in rows:
                when = hour_of(h if isinstance(h, datetime) else datetime.fromisoformat(h))
                out.spend.setdefault((kind, name), {})[when] = Decimal(pico) * PICO
                out.largest[((kind, name), when)] = Decimal(largest) * PICO
                if kind == "key":
                    out.teams[name] = team
    return out


@dataclass(frozen=True, slots=True)
class Judged:
    spend: Decimal
    median: Decimal  # of the same hour on the last days
    busiest: Decimal  # 95th percentile of the last RECENT_HOURS
    z: Decimal  # robust z-score
    spike: bool


@dataclass(frozen=True, slots=True)
class Spike:
    scope: Scope
    start: datetime  # its first hour
    last: datetime  # its last hour so far
    spend: Decimal  # in its first hour
    peak: Decimal  # its largest hour
    total: Decimal  # over its hours
    median: Decimal  # the first hour's usual spend (same hour, last days)
    z: Decimal

    @property
    def subject(self) -> str:
        return f"{self.scope[0]}:{self.scope[1]}@{self.start:%Y-%m-%dT%H:00Z}"

    @property
    def message(self) -> str:
        return (
            f"{self.scope[0]} {self.scope[1]!r} spent {usd(self.spend, 2)} USD in the hour from "
            f"{self.start:%Y-%m-%d %H:00} UTC, against a usual {usd(self.median, 2)} USD at that hour "
            f"(robust z {self.z}); {usd(self.total, 2)} USD over {self.hours} hour{'s' if self.hours != 1 else ''} so far"
        )

    @property
    def hours(self) -> int:
        return int((self.last - self.start) / HOUR) + 1


def judge(series: Series, hour: datetime, first: datetime, cfg: AlertsConfig, largest: Decimal = Decimal(0)) -> Judged | None:
    """Hour `hour` of a scope whose spend is `series` and whose history starts at `first`;
    None before it has MIN_HISTORY_DAYS of history. `largest`: the hour's largest call, which
    is left out (one expensive call is not a spike; a loop of calls is)."""
    if hour - first < timedelta(days=MIN_HISTORY_DAYS):
        return None
    x = series.get(hour, Decimal(0)) - largest
    same = [series.get(hour - timedelta(days=d), Decimal(0)) for d in range(1, SAME_HOUR_DAYS + 1) if hour - timedelta(days=d) >= first]
    recent = sorted(series.get(hour - k * HOUR, Decimal(0)) for k in range(1, RECENT_HOURS + 1))
    median = Decimal(statistics.median(same))
    mad = Decimal(statistics.median(abs(v - median) for v in same))
    busiest = recent[min(len(recent) - 1, int(len(recent) * BUSIEST))]
    scale = max(Decimal("1.4826") * mad, median / 10, cfg.min_usd / cfg.threshold, Decimal("0.000001"))
    z = ((x - median) / scale).quantize(Decimal("0.1"))
    spike = x >= cfg.min_usd and z >= cfg.threshold and x >= cfg.min_ratio * max(median, busiest)
    return Judged(x + largest, median, busiest, z, spike)


class _Scope:
    """One scope's history, judged hour by hour."""

    def __init__(self, scope: Scope, data: Ledger, cfg: AlertsConfig):
        self.scope, self.series, self.cfg = scope, data.spend[scope], cfg
        self.largest = data.largest
        self.first = min(self.series)  # its history's start: a scope silent for weeks starts over

    def judge(self, hour: datetime) -> Judged | None:
        if not self.series.get(hour):
            return None
        return judge(self.series, hour, self.first, self.cfg, self.largest.get((self.scope, hour), Decimal(0)))

    def spike_to(self, hour: datetime, j: Judged) -> Spike:
        """The spike `hour` (judged `j`, a spike) is the last hour of so far."""
        hours = [j]
        start = hour
        for _ in range(MAX_RUN_HOURS):
            before = self.judge(start - HOUR)
            if before is None or not before.spike:
                break
            start -= HOUR
            hours.insert(0, before)
        return Spike(
            scope=self.scope, start=start, last=hour, spend=hours[0].spend, peak=max(h.spend for h in hours),
            total=sum((h.spend for h in hours), Decimal(0)), median=hours[0].median, z=hours[0].z,
        )  # fmt: skip


def _read(engine: sa.Engine, since: datetime, until: datetime) -> Ledger:
    """The ledger from `since - SAME_HOUR_DAYS - MAX_RUN_HOURS`: the baselines hours from `since` need."""
    return hourly_spend(engine, since - timedelta(days=SAME_HOUR_DAYS) - MAX_RUN_HOURS * HOUR, until)


def _one_per_spike(found: list[Spike], data: Ledger) -> list[Spike]:
    """A team's spike that one of its keys' spikes explains (it starts within an hour of it) is
    that key's: told once, as the key's, whose message names the team."""
    keyed = {(data.teams.get(s.scope[1], ""), s.start) for s in found if s.scope[0] == "key"}
    return [
        s for s in found
        if s.scope[0] != "team" or not any((s.scope[1], s.start + d * HOUR) in keyed for d in (-1, 0, 1))
    ]  # fmt: skip


def spikes(engine: sa.Engine, cfg: AlertsConfig, since: datetime, until: datetime) -> list[Spike]:
    """Every spike that starts in [since, until), oldest first, each once (with its whole run)."""
    data = _read(engine, since, until)
    out = []
    first_hour, end = hour_of(since), hour_of(until)
    for scope in sorted(data.spend):
        sc = _Scope(scope, data, cfg)
        hour, run = first_hour, None
        while hour <= end:
            j = sc.judge(hour)
            if j is not None and j.spike:
                run = sc.spike_to(hour, j)
            elif run is not None:
                if run.start >= first_hour:
                    out.append(run)
                run = None
            hour += HOUR
        if run is not None and run.start >= first_hour:
            out.append(run)
    return sorted(_one_per_spike(out, data), key=lambda s: (s.start, s.scope))


def current(engine: sa.Engine, cfg: AlertsConfig, now: datetime) -> list[Spike]:
    """Spikes going on at `now`: the hour so far (its spend only grows, so a spike in it is one
    already) or the last full hour is one."""
    this = hour_of(now)
    data = _read(engine, this - HOUR, now + HOUR)
    out = []
    for scope in sorted(data.spend):
        sc = _Scope(scope, data, cfg)
        for hour in (this, this - HOUR):
            j = sc.judge(hour)
            if j is not None and j.spike:
                out.append(sc.spike_to(hour, j))
                break
    return _one_per_spike(out, data)


def store(engine: sa.Engine, spike: Spike, now: datetime) -> bool:
    """Note the spike once fleet-wide; True if this call stored it."""
    return note_once(engine, KIND, spike.subject, f"{spike.start:%Y-%m}", spike.message, now)


def noted(engine: sa.Engine, since: datetime) -> list[tuple[datetime, str, str]]:
    """Spikes noted since `since`: (noted at, subject, message), newest first."""
    t = NOTES
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.ts, t.c.subject, t.c.message).where(t.c.kind == KIND, t.c.ts >= since).order_by(t.c.ts.desc())
        ).all()
    return [(r[0] if r[0].tzinfo else r[0].replace(tzinfo=UTC), r[1], r[2]) for r in rows]


__all__ = ["KIND", "Judged", "Ledger", "Spike", "current", "hour_of", "hourly_spend", "judge", "noted", "spikes", "store"]
