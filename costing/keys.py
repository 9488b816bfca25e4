"""Virtual keys: issued once in clear, stored only as a SHA-256 hash with a short prefix.

The library behind both doors, `meterline keys ...` and the admin API's `/admin/keys`:
`create_key`, `list_keys`, `get_key`, `revoke_key`, `rotate_key`, and `key_record` (what
either door shows of a key: never its secret, never its hash).

A rotation gives a key a new secret and keeps its id, so its attribution and its ledger rows
stay one key's. The secret it replaced keeps working for a grace period (`grace`; the config's
`server.key_rotation_grace_seconds`, 24 hours unless set), so clients can be redeployed with
the new one; a second rotation ends the first one's grace.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from .errors import InvalidKey, KeyRequestError, UnknownKey
from .money import exact, from_pico, to_pico
from .org import Org
from .rate_limits import dump_limits, load_limits, parse_limits, shown
from .tables import KEYS, VirtualKey, utcnow

KEY_PREFIX = "sk-ml-"
VISIBLE = 10  # characters of the key shown in listings
DEFAULT_GRACE = timedelta(hours=24)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive (they were stored as UTC)."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


def _iso(ts: datetime | None) -> str | None:
    ts = _aware(ts)
    return None if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    team: str
    project: str
    name: str
    models: tuple[str, ...]  # empty: any configured model
    expires_at: datetime | None = None
    budget_usd: Decimal | None = None  # the key's own monthly budget
    limits: str = ""  # its own rate limits as the keys table holds them (JSON; rate_limits.py)

    def may_use(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, m) for m in self.models)


def key_info(row: VirtualKey) -> KeyInfo:
    return KeyInfo(
        row.id,
        row.team,
        row.project,
        row.name,
        tuple(m for m in row.models.split(",") if m),
        _aware(row.expires_at),
        None if row.budget_pico is None else from_pico(row.budget_pico),
        row.limits or "",
    )


def key_record(row: VirtualKey, org: Org | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """A key as listings show it (CLI `--json` and the admin API): no secret, no hash.
    `department` is its team's in `org` ("" for a team no longer configured)."""
    now = now or utcnow()
    team = org.teams.get(row.team) if org is not None else None
    expires = _aware(row.expires_at)
    grace = _aware(row.previous_valid_until)
    if row.revoked_at is not None:
        status = "revoked"
    elif expires is not None and expires <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "id": row.id,
        "prefix": row.prefix,
        "name": row.name,
        "team": row.team,
        "department": team.department if team else "",
        "project": row.project,
        "models": [m for m in row.models.split(",") if m],
        "budget_usd_monthly": None if row.budget_pico is None else exact(from_pico(row.budget_pico)),
        "limits": shown(load_limits(row.limits)),
        "created_at": _iso(row.created_at),
        "expires_at": _iso(expires),
        "revoked_at": _iso(row.revoked_at),
        "previous_key_valid_until": _iso(grace) if grace is not None and grace > now else None,
        "status": status,
        "revoked": row.revoked_at is not None,
    }


def _secret() -> tuple[str, str, str]:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[:VISIBLE], hash_key(secret)


def create_key(
    engine: sa.Engine,
    *,
    team: str,
    name: str = "",
    project: str = "",
    models: Iterable[str] = (),
    budget_usd: Decimal | None = None,
    expires_at: datetime | None = None,
    limits: dict[str, Any] | None = None,
    org: Org | None = None,
    now: datetime | None = None,
) -> tuple[VirtualKey, str]:
    """Store a new key and return it with its secret, which is not kept anywhere.

    With `org`, the team must be one of its teams. Raises KeyRequestError (naming the field)
    for an unknown team, an expiry not in the future, a negative budget or a bad rate limit
    (`limits`: costing/rate_limits.py); nothing is stored.
    """
    own_limits = dump_limits(parse_limits(limits))
    if org is not None and team not in org.teams:
        known = ", ".join(sorted(org.teams)) or "none configured"
        raise KeyRequestError(f"unknown team {team!r} (teams: {known})", param="team")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise KeyRequestError("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)", param="expires_at")
        if expires_at <= (now or utcnow()):
            raise KeyRequestError(f"expires_at {_iso(expires_at)} is not in the future", param="expires_at")
    if budget_usd is not None and budget_usd < 0:
        raise KeyRequestError("budget_usd_monthly cannot be negative", param="budget_usd_monthly")
    models = [m for m in models if m]
    if any("," in m for m in models):
        raise KeyRequestError("a model name cannot contain a comma", param="models")
    secret, prefix, digest = _secret()
    row = VirtualKey(
        id="key_" + secrets.token_hex(6),
        prefix=prefix,
        key_hash=digest,
        name=name,
        team=team,
        project=project,
        models=",".join(models),
        expires_at=expires_at,
        budget_pico=None if budget_usd is None else to_pico(budget_usd),
        previous_hash=None,
        limits=own_limits,
    )
    with Session(engine, expire_on_commit=False) as s:
        s.add(row)
        s.commit()
    return row, secret


def list_keys(
    engine: sa.Engine,
    *,
    teams: Collection[str] | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[VirtualKey]:
    """Keys oldest first; of `teams` only, when given; those after the key id `after` (a page's
    last id: pages stay stable while keys are added); at most `limit`."""
    q = select(VirtualKey).order_by(VirtualKey.created_at, VirtualKey.id)  # type: ignore[arg-type]
    if teams is not None:
        q = q.where(VirtualKey.team.in_(list(teams)))  # type: ignore[attr-defined]
    with Session(engine) as s:
        if after is not None:
            cursor = s.get(VirtualKey, after)
            if cursor is None:
                raise UnknownKey(after)
            q = q.where(
                sa.or_(
                    VirtualKey.created_at > cursor.created_at,  # type: ignore[arg-type]
                    sa.and_(VirtualKey.created_at == cursor.created_at, VirtualKey.id > cursor.id),  # type: ignore[arg-type]
                )
            )
        if limit is not None:
            q = q.limit(limit)
        return list(s.exec(q).all())


def get_key(engine: sa.Engine, key_id: str) -> VirtualKey:
    with Session(engine) as s:
        row = s.get(VirtualKey, key_id)
    if row is None:
        raise UnknownKey(key_id)
    return row


def revoke_key(engine: sa.Engine, key_id: str, *, now: datetime | None = None) -> VirtualKey:
    """Revoke a key (again is fine). Raises UnknownKey."""
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(VirtualKey, key_id)
        if row is None:
            raise UnknownKey(key_id)
        if row.revoked_at is None:
            row.revoked_at = row.updated_at = now or utcnow()
            s.add(row)
            s.commit()
        return row


def set_key_limits(engine: sa.Engine, key_id: str, limits: dict[str, Any] | None, *, now: datetime | None = None) -> VirtualKey:
    """Replace a key's own rate limits (None or {}: it has none). Every replica's key cache
    picks them up at its next refresh. Raises UnknownKey, or KeyRequestError for a bad limit."""
    raw = dump_limits(parse_limits(limits))
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(VirtualKey, key_id, with_for_update=True)
        if row is None:
            raise UnknownKey(key_id)
        row.limits, row.updated_at = raw, now or utcnow()
        s.add(row)
        s.commit()
    return row


def rotate_key(
    engine: sa.Engine, key_id: str, *, grace: timedelta = DEFAULT_GRACE, now: datetime | None = None
) -> tuple[VirtualKey, str]:
    """A new secret for the key; the one it replaces works until `now + grace` (zero: at once).

    Raises UnknownKey, or KeyRequestError for a revoked key."""
    if grace < timedelta(0):
        raise KeyRequestError("grace_seconds cannot be negative", param="grace_seconds")
    now = now or utcnow()
    secret, prefix, digest = _secret()
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(VirtualKey, key_id, with_for_update=True)
        if row is None:
            raise UnknownKey(key_id)
        if row.revoked_at is not None:
            raise KeyRequestError(f"key {key_id} is revoked; issue a new one instead", param="id")
        row.previous_hash, row.previous_valid_until = (row.key_hash, now + grace) if grace else (None, None)
        row.key_hash, row.prefix, row.updated_at = digest, prefix, now
        s.add(row)
        s.commit()
    return row, secret


@dataclass(frozen=True, slots=True)
class _Entry:
    info: KeyInfo
    until: float | None  # a replaced secret: the end of its grace (epoch seconds)


class KeyCache:
    """The keys by hash, so authenticating a call needs no query.

    Refreshed from the database so every replica sees revocations: refreshes read only rows
    changed since the last one (less `OVERLAP`), so they stay cheap with many keys.
    `updated_at` is set by whichever process made the change, by its clock and before its
    commit: the overlap catches a change that committed after a refresh had read past its
    timestamp, or came from a host whose clock is a little behind.

    A secret it does not know may be a key made a moment ago (here or on another replica):
    `lookup` asks the database for it (the proxy does that off the event loop, several
    unknown secrets in one query). A secret the database does not know either is remembered
    as unknown, at most `NEGATIVE_SIZE` of them for `NEGATIVE_SECONDS` each, so a client
    retrying a wrong key costs no query; a key is never made with a secret that was tried
    before it existed, so remembering one cannot refuse a real key.

    Parameters:
    engine: the ledger.
    clock: epoch seconds (time.time); tests move it to see keys expire.
    """

    OVERLAP = timedelta(minutes=5)
    NEGATIVE_SIZE = 100_000
    NEGATIVE_SECONDS = 60.0

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.clock = clock
        self._by_hash: dict[str, _Entry] = {}
        self._hashes: dict[str, tuple[str, ...]] = {}  # key id -> its hashes in _by_hash
        self._unknown: OrderedDict[str, float] = OrderedDict()  # hash -> remembered until
        self._since: datetime | None = None
        self._write = threading.Lock()  # refresh and lookups run on threads; reads need none
        self.lookups = 0  # queries made for secrets not in the cache (the bench reads it)

    def refresh(self) -> None:
        q = select(VirtualKey)
        if self._since is not None:
            q = q.where(VirtualKey.updated_at >= self._since - self.OVERLAP)
        with Session(self.engine) as s:
            rows = s.exec(q).all()
        self.apply(rows)
        with self._write:
            for r in rows:
                updated = _aware(r.updated_at)
                if updated is not None and (self._since is None or updated > self._since):
                    self._since = updated

    def apply(self, rows: Iterable[VirtualKey]) -> None:
        """Take in keys as they are now in the ledger (after a refresh, a lookup, or a change
        made through this process, which is then honoured here at once)."""
        with self._write:
            for r in rows:
                for h in self._hashes.pop(r.id, ()):
                    self._by_hash.pop(h, None)
                self._unknown.pop(r.key_hash, None)
                if r.revoked_at is not None:
                    continue
                info = key_info(r)
                hashes = [r.key_hash]
                self._by_hash[r.key_hash] = _Entry(info, None)
                grace = _aware(r.previous_valid_until)
                if r.previous_hash and grace is not None:
                    self._by_hash[r.previous_hash] = _Entry(info, grace.timestamp())
                    hashes.append(r.previous_hash)
                self._hashes[r.id] = tuple(hashes)

    def known(self) -> list[KeyInfo]:
        """Every key the cache holds, once each."""
        return list({e.info.id: e.info for e in list(self._by_hash.values())}.values())

    def check(self, digest: str) -> KeyInfo | None:
        """The key whose secret has this SHA-256, None when the cache cannot say; raises
        InvalidKey for a secret known to be wrong, expired, or replaced past its grace."""
        entry = self._by_hash.get(digest)
        now = self.clock()
        if entry is None:
            until = self._unknown.get(digest)
            if until is not None and until > now:
                raise InvalidKey("invalid or revoked API key")
            return None
        info = entry.info
        if entry.until is not None and now >= entry.until:
            raise InvalidKey(
                f"this secret of key {info.id} was replaced by a rotation and stopped working at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(entry.until))}: use the new one"
            )
        if info.expires_at is not None and now >= info.expires_at.timestamp():
            raise InvalidKey(f"API key {info.id} expired at {_iso(info.expires_at)}; ask for a new key")
        return info

    def lookup(self, digests: Collection[str]) -> None:
        """Ask the ledger for secrets the cache does not know, in one query; what it does not
        have (or has revoked) is remembered as unknown."""
        if not digests:
            return
        wanted = list(digests)
        q = select(VirtualKey).where(
            sa.or_(KEYS.c.key_hash.in_(wanted), KEYS.c.previous_hash.in_(wanted))
        )
        with Session(self.engine) as s:
            rows = s.exec(q).all()
        self.lookups += 1
        self.apply(rows)
        until = self.clock() + self.NEGATIVE_SECONDS
        with self._write:
            for d in wanted:
                if d not in self._by_hash:
                    self._unknown[d] = until
                    self._unknown.move_to_end(d)
            while len(self._unknown) > self.NEGATIVE_SIZE:
                self._unknown.popitem(last=False)

    def authenticate(self, key: str | None) -> KeyInfo:
        """The key for a secret from the cache alone (no I/O: safe on the event loop)."""
        info = self.check(self.digest(key))
        if info is None:
            raise InvalidKey("invalid or revoked API key")
        return info

    def find(self, key: str | None) -> KeyInfo:
        """The key for a secret, asking the ledger if the cache cannot say (blocking: the
        proxy calls `check`, then `lookup` on a thread for several secrets at once)."""
        digest = self.digest(key)
        info = self.check(digest)
        if info is None:
            self.lookup([digest])
            info = self.check(digest)
        if info is None:
            raise InvalidKey("invalid or revoked API key")
        return info

    @staticmethod
    def digest(key: str | None) -> str:
        if not key:
            raise InvalidKey("missing API key: send `Authorization: Bearer <virtual key>`")
        # Looked up by the secret's SHA-256, never by the secret: whatever the lookup's timing
        # tells is about a digest, and learning a secret from digests means inverting SHA-256.
        return hash_key(key)


__all__ = [
    "DEFAULT_GRACE",
    "KeyCache",
    "KeyInfo",
    "create_key",
    "get_key",
    "hash_key",
    "key_info",
    "key_record",
    "list_keys",
    "revoke_key",
    "rotate_key",
    "set_key_limits",
]
