"""Rate-limit leases: what makes a rate limit hold for a fleet of replicas and workers.

Every replica renews its leases every `budgets.refresh_seconds` (sooner when a call waits for
one), in one transaction under a fleet-wide lock. For each limit it counts, in window b at
the fraction f of it, it publishes a row per window (`rate_leases`):

    b-1: used = committed = its count there (what it held and did not use goes back)
    b:   used = its count u, committed = u + share
    b+1: committed = a share of the next window, in the last moments of b only (so that the
         next window opens with a lease); b's share is then halved, leaving the next its room

    share      = room / replicas counting the limit
    room(b)    = min(limit - P x (1 - f),  limit - N) - O(b) - u
    room(b+1)  = limit - C(b) - N
    P = every replica's count in b-1, O = the others' committed in b, C = everyone's committed
    in b, N = the others' committed in b+1

and admits a call only while its count in the window is under its committed (rate_limits.py).
Each renewal keeps the sliding window's use (P x (1 - f) + the committed of b) and, for the
next window's start, the committed of b and b+1 together, within the limit; f only grows and
b-1 only shrinks, so what others were granted before stays covered. The bound this gives:

    in every window, the fleet's sliding count passes a limit by less than one call's
    reservation per replica (on requests only a replica's first call on a scope before its
    first lease there; on tokens and USD the call admitted last, just under its lease), plus
    what calls in flight at the edge use beyond their estimates (nothing when estimates are
    not below actual usage).

What it costs: near a limit a replica may refuse while room is left in another's share, until
the next renewal hands it out again; a scope new to a replica gets its first call before the
first lease (the renewal is woken, a few ms). A replica's new lease is in force locally before its renewal commits, and
what it admitted meanwhile (under its previous lease, which the others respected) is in what
it publishes. Limits of the guarantee, as with budget leases: a replica that dies stops
holding its share after `ttl`; while the database is down each
replica keeps its leases and, in windows it has none for, counts alone against limit /
replicas (as last seen).
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from .engine import dialect_insert
from .rate_limits import RateLimits, Window
from .tables import RATE_LEASES

log = logging.getLogger("meterline.rate_limits")

RATE_LOCK = 0x6D6C_726C  # PostgreSQL advisory lock: renewals take turns
MIN_WAIT = 0.02  # seconds between renewals a refused call may wake


def lock(conn: sa.Connection) -> None:
    """Take the fleet's renewal lock for this transaction (SQLite: its single write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": RATE_LOCK})
    else:
        conn.execute(sa.text("DELETE FROM rate_leases WHERE 1 = 0"))


class RateLeases:
    """The renewal thread of one replica's rate limits.

    Parameters:
    engine: the shared database.
    limits: this replica's counts (rate_limits.py).
    replica: its name (budget_leases.replica_id).
    ttl: after how long without a renewal a replica's rows are ignored.
    """

    def __init__(self, engine: sa.Engine, limits: RateLimits, replica: str, ttl: timedelta):
        self.engine = engine
        self.limits = limits
        self.replica = replica
        self.ttl = ttl
        self._published: dict[tuple[str, str, int], tuple[int, int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterline-rate-limits", daemon=True)

    def start(self) -> None:
        """Take the first leases before serving (so configured limits have them from the first
        call), then renew in the background."""
        try:
            self.renew()
        except sa.exc.SQLAlchemyError as e:
            self.limits.degraded = True
            log.warning("rate-limit leases not taken yet (database unavailable): %s", str(e).splitlines()[0])
        self._thread.start()  # keys may be given limits at any time: renewing nothing costs nothing

    def stop(self) -> None:
        self._stop.set()
        self.limits.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        wake, period = self.limits.wake, self.limits.refresh_seconds
        while not self._stop.is_set():
            woken = wake.wait(period)
            if self._stop.is_set():
                return
            wake.clear()
            try:
                self.renew()
                self.limits.degraded = False
            except sa.exc.SQLAlchemyError as e:
                self.limits.degraded = True
                log.warning("rate-limit leases not renewed (database unavailable): %s", str(e).splitlines()[0])
            if woken:
                self._stop.wait(MIN_WAIT)  # a burst of refusals wakes one renewal, not one each

    def renew(self) -> None:
        """Renew this replica's leases on every window it counts (see the module's doc)."""
        clock = self.limits.clock()
        snap = self.limits.snapshot(clock)
        if not snap:
            return
        now = datetime.fromtimestamp(clock, UTC)
        t = RATE_LEASES
        with self.engine.begin() as conn:
            lock(conn)
            rows = conn.execute(
                sa.select(t.c.scope, t.c.metric, t.c.bucket, t.c.replica, t.c.used, t.c.committed).where(
                    t.c.replica != self.replica, t.c.heartbeat_at >= now - self.ttl
                )
            ).all()
            others: dict[tuple[str, str, int], int] = {}  # committed: what leases must leave them
            counted: dict[tuple[str, str, int], int] = {}  # used: what clients are told is in use
            sharing: dict[tuple[str, str], set[str]] = {}
            for scope, metric, bucket, replica, used, committed in rows:
                others[(scope, metric, bucket)] = others.get((scope, metric, bucket), 0) + committed
                counted[(scope, metric, bucket)] = counted.get((scope, metric, bucket), 0) + used
                sharing.setdefault((scope, metric), set()).add(replica)
            values = []
            for w, b, used_prev, used in snap:
                k = (w.scope, w.metric)
                o_prev, o_cur, o_next = (others.get((*k, b + i), 0) for i in (-1, 0, 1))
                live = 1 + len(sharing.get(k, ()))
                f = clock / w.seconds - b
                lead = min(0.5, 3 * self.limits.refresh_seconds / w.seconds)
                room = min(w.limit - (o_prev + used_prev) * (1.0 - f), w.limit - o_next) - o_cur - used
                ending = f >= 1.0 - lead  # the last renewals of the window: half its room is for the next
                # Past what is left (its last call went over its lease, others hold the rest):
                # the whole deficit comes off its own lease, so that it admits again only once
                # its calls settle below it. Raising the lease to its count instead let every
                # renewal at the edge admit one more call past it.
                share = room / (2 * live if ending else live) if room > 0 else room
                lease = used + math.floor(share)
                lease_next = int(max(0, w.limit - o_cur - max(lease, used) - o_next) / live) if ending else None
                # In force here before it is published, so that what this replica admitted while
                # the renewal ran (under its previous lease) is in what it publishes.
                used, lease, lease_next = self.limits.apply(w, b, lease, lease_next, tuple(counted.get((*k, b + i), 0) for i in (-1, 0, 1)))
                wanted = [(b, used, lease)]
                if used_prev or (w.scope, w.metric, b - 1) in self._published:
                    wanted.append((b - 1, used_prev, used_prev))
                if lease_next is not None:
                    wanted.append((b + 1, 0, lease_next))
                for bucket, u, c in wanted:
                    if self._due(w, bucket, u, c, clock):
                        values.append(
                            {"scope": w.scope, "metric": w.metric, "bucket": bucket, "replica": self.replica,
                             "used": u, "committed": c, "heartbeat_at": now}  # fmt: skip
                        )
            if values:
                ins = dialect_insert(self.engine, t)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["scope", "metric", "bucket", "replica"],
                        set_={"used": ins.excluded.used, "committed": ins.excluded.committed, "heartbeat_at": ins.excluded.heartbeat_at},
                    ),
                    values,
                )
            # Rows nobody renewed for a while: windows gone by, replicas gone.
            conn.execute(sa.delete(t).where(t.c.heartbeat_at < now - max(self.ttl * 10, timedelta(hours=3))))
        self.limits.replicas = max([1, *(1 + len(s) for s in sharing.values())])
        self._published = {k: v for k, v in self._published.items() if v[2] >= clock - 3 * 3600}

    def _due(self, w: Window, bucket: int, used: int, committed: int, clock: float) -> bool:
        """Whether a row must be written: it changed, or its heartbeat is a third of `ttl` old.
        A row of nothing is written too: it says this replica counts the limit, so the others
        leave it a share."""
        k = (w.scope, w.metric, bucket)
        last = self._published.get(k)
        if last is not None and last[0] == used and last[1] == committed and clock - last[2] < self.ttl.total_seconds() / 3:
            return False
        self._published[k] = (used, committed, clock)
        return True


__all__ = ["RATE_LOCK", "RateLeases", "lock"]
