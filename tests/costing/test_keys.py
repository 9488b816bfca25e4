"""Virtual keys: stored only as hashes, and a cache that sees every change on the ledger."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from meterline.costing import (
    InvalidKey,
    create_engine,
    create_key,
    create_schema,
    get_key,
    key_record,
    list_keys,
    revoke_key,
    rotate_key,
)
from meterline.costing.keys import KeyCache, hash_key
from meterline.costing.tables import VirtualKey, utcnow


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


def test_a_key_made_after_the_last_refresh_is_found_in_the_ledger_with_one_query(engine):
    cache = KeyCache(engine)
    cache.refresh()
    row, secret = create_key(engine, team="nlp")
    assert cache.find(secret).id == row.id
    assert cache.lookups == 1
    cache.find(secret)
    assert cache.lookups == 1  # known now


def test_an_unknown_secret_is_remembered_so_retrying_it_costs_no_query(engine):
    cache = KeyCache(engine)
    cache.refresh()
    for _ in range(50):
        with pytest.raises(InvalidKey, match="invalid or revoked"):
            cache.find("sk-ml-made-up")
    assert cache.lookups == 1
    cache.lookup([hash_key(f"sk-ml-other-{i}") for i in range(500)])  # many unknown secrets, one query
    assert cache.lookups == 2


def test_the_negative_cache_is_bounded_and_forgets(engine):
    now = [1000.0]
    cache = KeyCache(engine, clock=lambda: now[0])
    cache.NEGATIVE_SIZE = 10
    cache.lookup([hash_key(f"bad-{i}") for i in range(25)])
    assert len(cache._unknown) == 10
    with pytest.raises(InvalidKey):
        cache.check(hash_key("bad-24"))
    now[0] += cache.NEGATIVE_SECONDS + 1
    assert cache.check(hash_key("bad-24")) is None  # asked again


def test_an_expired_key_is_refused_saying_when_it_expired(engine):
    expires = utcnow() + timedelta(hours=1)
    row, secret = create_key(engine, team="nlp", expires_at=expires)
    now = [expires.timestamp() - 1]
    cache = KeyCache(engine, clock=lambda: now[0])
    cache.refresh()
    assert cache.find(secret).expires_at == expires
    now[0] = expires.timestamp()
    with pytest.raises(InvalidKey, match=f"expired at {expires:%Y-%m-%dT%H:%M:%S}Z"):
        cache.find(secret)


def test_rotation_keeps_the_id_and_the_old_secret_works_until_the_grace_ends(engine):
    row, old = create_key(engine, team="nlp", name="ci", project="p1")
    cache = KeyCache(engine)
    cache.refresh()
    t0 = utcnow()
    rotated, new = rotate_key(engine, row.id, grace=timedelta(minutes=10), now=t0)
    assert (rotated.id, rotated.team, rotated.project) == (row.id, "nlp", "p1") and new != old
    cache.refresh()
    assert cache.find(new).id == cache.find(old).id == row.id
    cache.clock = lambda: (t0 + timedelta(minutes=10)).timestamp()
    with pytest.raises(InvalidKey, match="replaced by a rotation"):
        cache.find(old)
    assert cache.find(new).id == row.id
    # A second rotation ends the first one's grace; the secret it replaces gets its own.
    again, newest = rotate_key(engine, row.id, grace=timedelta(0))
    fresh = KeyCache(engine)  # another replica: finds the new secret in the ledger
    assert fresh.find(newest).id == row.id
    for gone in (old, new):
        with pytest.raises(InvalidKey):
            fresh.find(gone)


def test_bad_requests_change_nothing(engine):
    from meterline.costing import KeyRequestError, Org, UnknownKey, settings_from_dict

    org = Org(settings_from_dict({"departments": [{"id": "r", "teams": [{"id": "nlp"}]}]}, environ={}))
    for kw, param in (
        ({"team": "nope"}, "team"),
        ({"team": "nlp", "expires_at": utcnow() - timedelta(seconds=1)}, "expires_at"),
        ({"team": "nlp", "budget_usd": Decimal("-1")}, "budget_usd_monthly"),
    ):
        with pytest.raises(KeyRequestError) as e:
            create_key(engine, org=org, **kw)
        assert e.value.param == param
    for fn in (revoke_key, rotate_key, get_key):
        with pytest.raises(UnknownKey):
            fn(engine, "key_nope")
    row, _ = create_key(engine, team="nlp")
    revoke_key(engine, row.id)
    with pytest.raises(KeyRequestError):
        rotate_key(engine, row.id)
    assert [k.id for k in list_keys(engine)] == [row.id]


def test_listing_filters_by_team_and_pages_by_id(engine):
    made = [create_key(engine, team=t)[0].id for t in ("nlp", "web", "nlp", "nlp", "web")]
    assert [k.id for k in list_keys(engine, teams=["nlp"])] == [made[0], made[2], made[3]]
    first = list_keys(engine, limit=2)
    rest = list_keys(engine, after=first[-1].id, limit=10)
    assert [k.id for k in first + rest] == made
    record = key_record(list_keys(engine)[0])
    assert "key_hash" not in record and "key" not in record and record["status"] == "active"
