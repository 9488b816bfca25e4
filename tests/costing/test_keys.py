"""Virtual keys: stored only as hashes, and a cache that sees every change on the ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from meterline.costing import InvalidKey, create_engine, create_key, create_schema, revoke_key
from meterline.costing.keys import KeyCache
from meterline.costing.ledger import VirtualKey, utcnow


@pytest.fixture
def engine(tmp_path):
    e = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(e)
    yield e
    e.dispose()


def test_a_key_is_stored_as_a_hash_and_a_prefix_never_in_clear(engine):
    _, secret = create_key(engine, team="nlp")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM keys")).mappings().one()
    assert secret not in " ".join(str(v) for v in row.values())
    assert secret.startswith(row["prefix"]) and len(row["prefix"]) < len(secret) // 3


def test_a_revocation_stamped_before_the_last_refresh_is_still_seen(engine):
    # A revocation committed late, or by a host whose clock is behind, carries an `updated_at`
    # older than what the cache has already read past.
    row, secret = create_key(engine, team="nlp")
    cache = KeyCache(engine)
    cache.refresh()
    create_key(engine, team="web")
    cache.refresh()
    assert cache.authenticate(secret).id == row.id
    earlier = utcnow() - timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(sa.update(VirtualKey.__table__).where(VirtualKey.__table__.c.id == row.id).values(revoked_at=earlier, updated_at=earlier))

    cache.refresh()

    with pytest.raises(InvalidKey):
        cache.authenticate(secret)


def test_revoked_missing_and_wrong_keys_are_refused_alike(engine):
    row, secret = create_key(engine, team="nlp")
    revoke_key(engine, row.id)
    cache = KeyCache(engine)
    cache.refresh()
    for bad in (secret, None, "", secret[:-1], "sk-ml-" + "x" * 43):
        with pytest.raises(InvalidKey):
            cache.authenticate(bad)
