"""Rate limits per key, team and department: requests, tokens and USD per minute and per hour.

The window: a sliding window counter. Each limit counts per fixed window (a minute or an hour
of the epoch), and what it has used at time t is

    used(t) = previous window's count x (share of the sliding window still inside it) + this window's count

so a call is weighed for one window length after it, without a log of calls: a burst at a
window's end still counts at the next window's start (a fixed window would admit twice the
limit across the boundary), and each limit costs two counters, not one entry per call (a
sliding log), which is what lets replicas share them in the database (rate_leases.py).

Counted as budgets count: a call reserves at admission (one request; its tokens estimated as
budgets estimate them, request bytes / 4 in and the model's largest recent output capped by
`max_tokens`; its USD likewise, budget_estimates.py) and settles at its real usage when it is
recorded; a call refused by a later admission step gives its reservation back. A call is
admitted while its scope's use is under the limit (as a budget admits while spend is under
it), so a limit on requests is never passed and one on tokens or USD by less than one call's
reservation.

Several replicas and workers hold a limit together through leases: each one's count in a
window may reach only what its lease allows, and leases are handed out under a fleet-wide lock
so that they add up to what the window allows (rate_leases.py: how, and the bound).

The request path costs a dict lookup when no limit applies to the call (`admit`), and a few
attribute reads and comparisons per limit when one does; all I/O is the renewal thread's.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from .budget_estimates import Admissible, Estimator
from .config import RATE_LIMIT_FIELDS, RateLimitsConfig, Settings
from .errors import KeyRequestError, RateLimited
from .money import from_pico, to_pico
from .prices import PriceBook
from .reservations import MAX_AGE as RESERVATION_MAX_AGE

MINUTE = 60.0
COLD_WAIT = 0.2  # seconds a call waiting for a scope's first lease here is asked to wait
# metric -> (what it counts, window length in minutes)
METRICS: dict[str, tuple[str, int]] = {
    "requests_per_minute": ("requests", 1),
    "requests_per_hour": ("requests", 60),
    "tokens_per_minute": ("tokens", 1),
    "tokens_per_hour": ("tokens", 60),
    "usd_per_minute": ("usd", 1),
    "usd_per_hour": ("usd", 60),
}
assert tuple(METRICS) == RATE_LIMIT_FIELDS


def parse_limits(raw: object, *, param: str = "limits") -> dict[str, int | Decimal]:
    """A key's own limits as the admin API takes them (`{"tokens_per_minute": 1000, ...}`),
    validated; raises KeyRequestError naming the field."""
    if raw is None:
        return {}
    try:
        return RateLimitsConfig.model_validate(raw).set()
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join([param, *(str(x) for x in err["loc"])])
        raise KeyRequestError(f"{where}: {err['msg']}", param=param) from None


def dump_limits(limits: dict[str, int | Decimal]) -> str | None:
    """What the keys table stores (None: no limits of its own)."""
    return json.dumps({k: str(v) if isinstance(v, Decimal) else v for k, v in sorted(limits.items())}) if limits else None


def load_limits(raw: str | None) -> dict[str, int | Decimal]:
    return parse_limits(json.loads(raw)) if raw else {}


def shown(limits: dict[str, int | Decimal]) -> dict[str, int | str]:
    """Limits as JSON answers show them: USD as decimal strings."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in limits.items()}


class Window:
    """One limit of one scope as this replica counts it: the current window's count and the
    previous one's, its lease, and what the other replicas hold (as of the last renewal)."""

    __slots__ = (
        "bucket", "kind", "lease", "lease_next", "limit", "metric", "others", "others_next", "others_prev",
        "scope", "seconds", "seen", "used", "used_prev", "value",
    )  # fmt: skip

    def __init__(self, scope: str, metric: str, value: int | Decimal, minute: float):
        self.scope = scope  # "team:nlp"
        self.metric = metric
        self.value = value  # as configured (USD a Decimal)
        self.kind, minutes = METRICS[metric]
        self.limit = to_pico(Decimal(value)) if self.kind == "usd" else int(value)  # in counted units
        self.seconds = minute * minutes
        self.bucket = -1  # epoch seconds // self.seconds
        self.used = self.used_prev = 0  # this replica's counts, reservations included
        self.lease: int | None = None  # how far `used` may go in this window (None: no lease yet)
        self.lease_next: int | None = None  # the lease on the next window, handed out near its start
        self.others = self.others_prev = self.others_next = 0  # what other replicas have used
        self.seen = 0.0  # epoch seconds of the last call

    def roll(self, bucket: int) -> None:
        if bucket == self.bucket + 1:
            self.used_prev, self.others_prev = self.used, self.others
            self.lease, self.others = self.lease_next, self.others_next
        else:
            self.used_prev = self.others_prev = 0
            self.lease, self.others = None, 0
        self.used, self.lease_next, self.others_next, self.bucket = 0, None, 0, bucket

    def fraction(self, now: float) -> float:
        """How far into its window `now` is, 0..1."""
        return now / self.seconds - self.bucket

    def in_use(self, now: float) -> float:
        """The fleet's use as this replica knows it: the sliding window counter."""
        return (self.used_prev + self.others_prev) * (1.0 - self.fraction(now)) + self.used + self.others

    def free_in(self, now: float) -> float:
        """Seconds until the fleet's use is under the limit again, from what is known now."""
        prev, cur, limit, f = self.used_prev + self.others_prev, self.used + self.others, self.limit, self.fraction(now)
        if cur < limit:
            if prev <= 0:
                return 0.0
            return max(0.0, (1.0 - (limit - cur) / prev) - f) * self.seconds
        # Not within this window: the next one, where this window's count is the previous one's.
        return (1.0 - f + (1.0 - limit / cur if cur else 0.0)) * self.seconds

    def reset_in(self, now: float) -> float:
        """Seconds until the window is back to its full limit (OpenAI's `x-ratelimit-reset-*`)."""
        if self.used + self.others > 0:
            return (2.0 - self.fraction(now)) * self.seconds
        if self.used_prev + self.others_prev > 0:
            return (1.0 - self.fraction(now)) * self.seconds
        return 0.0


@dataclass(frozen=True, slots=True)
class Use:
    """A limit's current use, as `GET /admin/limits` shows it."""

    scope: str
    metric: str
    limit: int | Decimal
    used: Decimal  # in the limit's unit (USD for usd_*)
    remaining: Decimal
    reset_seconds: float
    lease: Decimal | None  # what this replica may count in the window


def duration(seconds: float) -> str:
    """A wait as OpenAI's headers write it: `20ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    m, s = divmod(math.ceil(seconds), 60)
    return f"{m}m{s}s"


class RateLimits:
    """Parameters:
    settings: `limits:` (teams, departments, keys by id) and the org; keys' own limits come
        with the calls (`KeyInfo.limits`, from the keys table).
    prices: the price book, for USD estimates.
    refresh_seconds: how often the renewal thread renews leases (`budgets.refresh_seconds`).
    clock: epoch seconds; replaceable in tests.
    minute: the length of a minute in seconds, the seam that lets a test see a window pass
        without waiting one (an hour is 60 of them).
    """

    def __init__(
        self,
        settings: Settings,
        prices: PriceBook,
        *,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        minute: float = MINUTE,
    ):
        self.clock = clock
        self.minute = minute
        self.refresh_seconds = refresh_seconds
        self.estimator = Estimator(prices, settings.budgets.default_output_tokens)
        self._lock = threading.Lock()
        self._configured: dict[str, tuple[Window, ...]] = {}  # scope name -> its windows
        for entry in settings.limits:
            kind, name = entry.scope
            self._configured[f"{kind}:{name}"] = self._windows(f"{kind}:{name}", entry.set())
        # The request path's lookups: a team's windows with its department's, and keys by id.
        self._by_team: dict[str, tuple[Window, ...]] = {}
        for d in settings.departments:
            for t in d.teams:
                ws = self._configured.get(f"team:{t.id}", ()) + self._configured.get(f"department:{d.id}", ())
                if ws:
                    self._by_team[t.id] = ws
        self._by_key: dict[str, tuple[Window, ...]] = {
            s.removeprefix("key:"): ws for s, ws in self._configured.items() if s.startswith("key:")
        }
        self._config_keys = frozenset(self._by_key)
        self._own: dict[str, str] = {}  # key id -> the limits JSON its windows were built from
        self._reservations: dict[str, tuple[tuple[Window, ...], tuple[int, ...], int, float]] = {}
        self.wake = threading.Event()  # set by a call refused for want of a lease: renew now
        self.degraded = False  # renewals are failing: each replica counts alone (rate_leases.py)
        self.replicas = 1  # the most replicas seen sharing a limit at the last renewal

    def _windows(self, scope: str, limits: dict[str, int | Decimal]) -> tuple[Window, ...]:
        return tuple(Window(scope, m, v, self.minute) for m, v in limits.items())

    def set_minute(self, seconds: float) -> None:
        """The clock seam: from now on a minute lasts `seconds` (tests)."""
        with self._lock:
            self.minute = seconds
            for w in self.windows():
                w.seconds = seconds * METRICS[w.metric][1]
                w.roll(-2)

    def windows(self) -> list[Window]:
        """Every window this replica counts."""
        seen = {id(w): w for ws in (*self._configured.values(), *self._by_key.values()) for w in ws}
        return list(seen.values())

    def prepare(self, key: Any) -> None:
        """Count a key's own limits before its first call (a key made or changed here, or known
        at start), and have the renewal lease them at once."""
        if getattr(key, "limits", None) and key.id not in self._config_keys:
            self._key_windows(key)
            self.wake.set()

    def _key_windows(self, key: Any) -> tuple[Window, ...]:
        """A key's own limits, (re)built when the keys table changed them."""
        raw: str = key.limits
        if self._own.get(key.id) != raw:
            with self._lock:
                old = {w.metric: w for w in self._by_key.get(key.id, ())}
                ws = []
                for metric, value in load_limits(raw).items():
                    w = old.get(metric)
                    if w is None or w.value != value:
                        w = Window(f"key:{key.id}", metric, value, self.minute)
                    ws.append(w)
                self._by_key = {**self._by_key, key.id: tuple(ws)}
                self._own[key.id] = raw
        return self._by_key.get(key.id, ())

    # -- the request path ---------------------------------------------------------------------

    def admit(self, call: Admissible) -> dict[str, str] | None:
        """Reserve the call in every limit of its team, department and key, or raise
        RateLimited. Returns the `x-ratelimit-*` headers for its response (None: no limit)."""
        ws = self._by_team.get(call.payer.team, ())
        key = call.key
        if key.id in self._config_keys:
            ws = ws + self._by_key[key.id]
        elif getattr(key, "limits", None):
            ws = ws + self._key_windows(key)
        if not ws:
            return None
        return self._admit(call, ws)

    def _admit(self, call: Admissible, ws: tuple[Window, ...]) -> dict[str, str]:
        now = self.clock()
        tokens = usd = -1
        needs = []
        for w in ws:
            if w.kind == "requests":
                needs.append(1)
            elif w.kind == "tokens":
                if tokens < 0:
                    tokens = self.estimator.tokens(call)
                needs.append(tokens)
            else:
                if usd < 0:
                    # An estimate in pico-dollars: scaleb, not to_pico's exact rounding (a third of the cost).
                    usd = int(max(call.reserved, self.estimator.estimate(call)).scaleb(12))
                needs.append(usd)
        with self._lock:
            for w in ws:
                bucket = int(now // w.seconds)
                if bucket != w.bucket:
                    w.roll(bucket)
                w.seen = now
                lease = w.lease
                if lease is None:
                    # No lease on this window yet (a scope new to this replica, or the renewal
                    # fell behind): its first call only, and the renewal is woken; with the
                    # database down, each replica counts alone against its share of the limit.
                    ok = w.in_use(now) < w.limit / self.replicas if self.degraded else w.used == 0
                    self.wake.set()
                else:
                    ok = w.used < lease
                if not ok:
                    error = self._refusal(w, ws, now, call)
                    break
            else:
                for w, need in zip(ws, needs, strict=True):
                    w.used += need
                self._reservations[call.call_id] = (ws, tuple(needs), ws[0].bucket, now)
                return self.headers(ws, now)
        raise error

    def _refusal(self, w: Window, ws: tuple[Window, ...], now: float, call: Admissible) -> RateLimited:
        """The error for a call `w` refuses (under the lock)."""
        if w.lease is None and not self.degraded:
            wait = COLD_WAIT  # the first lease on a scope new here: the renewal was woken, a few ms
        else:
            wait = w.free_in(now)
            if wait <= 0:  # the fleet has room but this replica's lease is spent: the next renewal
                self.wake.set()
            wait = max(wait, 0.0) + self.refresh_seconds
        kind = "requests" if w.kind == "requests" else "tokens"
        scope_kind, _, name = w.scope.partition(":")
        unit = {"requests": "requests", "tokens": "tokens", "usd": "USD"}[w.kind]
        used = Decimal(int(w.in_use(now)))
        if w.kind == "usd":
            used = used * Decimal("1e-12")
        per = "minute" if METRICS[w.metric][1] == 1 else "hour"
        message = (
            f"rate limit reached for {scope_kind} {name!r} on {unit} per {per}: limit {w.value}, "
            f"used {used.normalize():f}; try again in {duration(wait)}"
        )
        headers = self.headers(ws, now)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return RateLimited(message, kind=kind, retry_after=wait, headers=headers)

    def headers(self, ws: Iterable[Window], now: float) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers from the tightest limit on requests and on tokens."""
        tight: dict[str, tuple[float, float, Window]] = {}  # kind -> (share left, in use, window)
        for w in ws:
            kind = w.kind
            if kind == "usd":  # USD limits have no OpenAI header
                continue
            f = now / w.seconds - w.bucket
            used = (w.used_prev + w.others_prev) * (1.0 - f) + w.used + w.others
            share = (w.limit - used) / w.limit if w.limit else 0.0
            best = tight.get(kind)
            if best is None or share < best[0]:
                tight[kind] = (share, used, w)
        out: dict[str, str] = {}
        for kind, (_, used, w) in tight.items():
            out[f"x-ratelimit-limit-{kind}"] = str(w.limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(w.limit - used)))
            out[f"x-ratelimit-reset-{kind}"] = duration(w.reset_in(now))
        return out

    def settle(self, event: dict[str, Any], call: Any = None) -> None:
        """Meter observer: a recorded call's reservation gives way to its real usage (a refused
        call's, to nothing)."""
        held = self._reservations.pop(event["call_id"], None) if self._reservations else None
        if held is None:
            return
        ws, needs, bucket, _ = held
        if event["status"] == "rejected":
            actual = {"requests": 0, "tokens": 0, "usd": 0}
        else:
            actual = {
                "requests": 1,
                "tokens": (event["input_tokens"] or 0) + (event["output_tokens"] or 0),
                "usd": event["cost_pico"] or 0,
            }
            if event["kind"] in ("llm", "embedding") or event["cost_pico"]:
                self.estimator.learn(event, from_pico(event["cost_pico"] or 0))
        with self._lock:
            for w, need in zip(ws, needs, strict=True):
                delta = actual[w.kind] - need
                if w.bucket == bucket:
                    w.used += delta
                elif w.bucket == bucket + 1:
                    w.used_prev += delta

    # -- what GET /admin/limits shows ---------------------------------------------------------

    def uses(self) -> list[Use]:
        now = self.clock()
        out = []
        with self._lock:
            for w in self.windows():
                bucket = int(now // w.seconds)
                if bucket != w.bucket:
                    w.roll(bucket)
                scale = Decimal("1e-12") if w.kind == "usd" else Decimal(1)
                used = Decimal(int(w.in_use(now))) * scale
                remaining = max(Decimal(0), Decimal(w.limit) * scale - used)
                lease = None if w.lease is None else Decimal(w.lease) * scale
                out.append(Use(w.scope, w.metric, w.value, used.normalize(), remaining.normalize(), w.reset_in(now), lease))
        return sorted(out, key=lambda u: (u.scope, u.metric))

    # -- the renewal's side (rate_leases.py) ----------------------------------------------------

    def snapshot(self, now: float) -> list[tuple[Window, int, int, int]]:
        """Each window rolled to `now`, with (bucket, used_prev, used) as of now; reservations
        too old to be settled are dropped (their counts stay, as the calls may have run)."""
        with self._lock:
            cutoff = now - RESERVATION_MAX_AGE
            for cid in [c for c, held in self._reservations.items() if held[3] < cutoff]:
                del self._reservations[cid]
            out = []
            for w in self.windows():
                bucket = int(now // w.seconds)
                if bucket != w.bucket:
                    w.roll(bucket)
                out.append((w, w.bucket, w.used_prev, w.used))
            return out

    def apply(
        self, w: Window, bucket: int, lease: int, lease_next: int | None, others: tuple[int, ...]
    ) -> tuple[int, int, int | None]:
        """A renewal's result for window `bucket` of `w`: this replica's leases and what the
        others have used in the previous, this and the next window. Returns what to publish:
        the count now (calls admitted since the snapshot included) and the leases, raised to
        it where it passed them, since what was admitted is used whatever the lease. Here the
        lease stays as given, below the count if need be: calls are admitted again only once
        the count is back under it."""
        with self._lock:
            if w.bucket == bucket:
                w.lease, w.lease_next = lease, lease_next
                w.others_prev, w.others, w.others_next = others
                return w.used, max(lease, w.used), lease_next
            if w.bucket == bucket + 1:  # the next window began meanwhile: its lease is `lease_next`
                w.lease, w.others_prev, w.others = lease_next, others[1], others[2]
                return w.used_prev, max(lease, w.used_prev), max(lease_next or 0, w.used)
            return w.used, lease, lease_next


__all__ = [
    "METRICS",
    "MINUTE",
    "RateLimits",
    "Use",
    "Window",
    "dump_limits",
    "duration",
    "load_limits",
    "parse_limits",
    "shown",
]
