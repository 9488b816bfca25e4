"""Virtual keys: issued once in clear, stored only as a SHA-256 hash with a short prefix."""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from .errors import InvalidKey
from .ledger import VirtualKey, utcnow

KEY_PREFIX = "sk-ml-"
VISIBLE = 10  # characters of the key shown in listings


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    team: str
    project: str
    name: str
    models: tuple[str, ...]  # empty: any configured model

    def may_use(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, m) for m in self.models)


def create_key(
    engine: sa.Engine, *, team: str, name: str = "", project: str = "", models: list[str] = ()  # type: ignore[assignment]
) -> tuple[VirtualKey, str]:
    """Store a new key and return it with its secret, which is not kept anywhere."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = VirtualKey(
        id="key_" + secrets.token_hex(6),
        prefix=secret[:VISIBLE],
        key_hash=hash_key(secret),
        name=name,
        team=team,
        project=project,
        models=",".join(models),
    )
    with Session(engine, expire_on_commit=False) as s:
        s.add(row)
        s.commit()
    return row, secret


def list_keys(engine: sa.Engine) -> list[VirtualKey]:
    with Session(engine) as s:
        return list(s.exec(select(VirtualKey).order_by(VirtualKey.created_at)).all())


def revoke_key(engine: sa.Engine, key_id: str) -> VirtualKey:
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(VirtualKey, key_id)
        if row is None:
            raise InvalidKey(f"no key with id {key_id!r} (see `meterline keys list`)")
        if row.revoked_at is None:
            row.revoked_at = row.updated_at = utcnow()
            s.add(row)
            s.commit()
        return row


class KeyCache:
    """The active keys by hash, refreshed from the database so every replica sees revocations.

    Refreshes read only rows changed since the last one (less `OVERLAP`), so they stay cheap
    with many keys. `updated_at` is set by whichever process made the change, by its clock and
    before its commit: the overlap catches a change that committed after a refresh had read
    past its timestamp, or came from a host whose clock is a little behind.
    """

    OVERLAP = timedelta(minutes=5)

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._by_hash: dict[str, KeyInfo] = {}
        self._since: datetime | None = None

    def refresh(self) -> None:
        q = select(VirtualKey)
        if self._since is not None:
            q = q.where(VirtualKey.updated_at >= self._since - self.OVERLAP)
        with Session(self.engine) as s:
            rows = s.exec(q).all()
        for r in rows:
            if r.revoked_at is None:
                self._by_hash[r.key_hash] = KeyInfo(
                    r.id, r.team, r.project, r.name, tuple(m for m in r.models.split(",") if m)
                )
            else:
                self._by_hash.pop(r.key_hash, None)
            if self._since is None or r.updated_at > self._since:
                self._since = r.updated_at

    def authenticate(self, key: str | None) -> KeyInfo:
        if not key:
            raise InvalidKey("missing API key: send `Authorization: Bearer <virtual key>`")
        # Looked up by the secret's SHA-256, never by the secret: whatever the lookup's timing
        # tells is about a digest, and learning a secret from digests means inverting SHA-256.
        info = self._by_hash.get(hash_key(key))
        if info is None:
            raise InvalidKey("invalid or revoked API key")
        return info
