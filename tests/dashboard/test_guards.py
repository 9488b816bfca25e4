"""The Guards page: a key's spend spike going on, and rate limits' use as the replicas
published it; a department's viewer sees only its own; and a picture of it in Chromium."""

from __future__ import annotations

import os
import random
import shutil
from datetime import timedelta
from decimal import Decimal

import pytest

from meterline.costing.tables import RATE_LEASES
from tests.dashboard.conftest import ADMIN_PASSWORD, NOW, VIEWER_PASSWORD, cells, page, signed_in
from tests.dashboard.screens import CHROMIUM, dashboard, screenshots
from tests.dashboard.test_screenshots import ARTIFACTS
from tests.seed import event, seed


@pytest.fixture
def guarded(ledger):
    """The dashboard's ledger with ten days of a key's ordinary spend, then a runaway hour on
    it at NOW, and replica `r1`'s count of nlp's requests this minute."""
    rng = random.Random(2)
    rows = []
    for h in range(2, 10 * 24):
        ts = NOW - timedelta(hours=h)
        for _ in range(rng.randint(0, 3 if 8 <= ts.hour < 19 else 1)):
            rows.append(event(Decimal("0.02"), ts, key_id="key_looping", team="vision", department="research"))
    rows += [event(Decimal("0.25"), NOW - timedelta(minutes=50 - i), key_id="key_looping", team="vision", department="research") for i in range(40)]
    seed(ledger.engine, rows)
    with ledger.engine.begin() as conn:
        conn.execute(RATE_LEASES.insert().values(
            scope="team:nlp", metric="requests_per_minute", bucket=int(NOW.timestamp() // 60), replica="r1",
            used=480, committed=600, heartbeat_at=NOW,
        ))  # fmt: skip
    return ledger


def test_the_guards_page_shows_the_spike_going_on_and_the_limits_in_use(guarded):
    at = page(signed_in(), "guards")
    assert [m.value for m in at.metric[:2]] == ["1", "1"]  # one spike going on, one in the week
    assert any("key_looping" in w.value and "spent" in w.value for w in at.warning)
    spikes = cells(at, 0)
    assert [(r["Team or key"], r["State"]) for r in spikes] == [("key_looping (key)", "going on")]
    assert spikes[0]["That hour"] == "$10.00"
    limits = {(r["Limit on"], r["Per"]): r for r in cells(at, 1)}
    nlp = limits[("nlp (team, Research)", "requests / minute")]
    assert (nlp["Limit"], nlp["In use"], nlp["Used"], nlp["Replicas counting"]) == ("600", "480", "80.0%", "1")
    assert limits[("Product (department)", "USD / hour")]["In use"] == "$0.00"
    assert any("nlp (team, Research)" in w.value and "80.0%" in w.value for w in at.warning)


def test_a_departments_viewer_sees_only_its_own_guards(guarded):
    at = page(signed_in("product-lead", VIEWER_PASSWORD), "guards")
    assert at.metric[0].value == "0"  # the spike is research's
    assert [r["Limit on"] for r in cells(at, 0)] == ["Product (department)"]


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
def test_the_guards_page_in_chromium(guarded):
    out = ARTIFACTS / "guards"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": ADMIN_PASSWORD}
    with dashboard(guarded.config_path, env, out / "dashboard.log", NOW.isoformat()) as url:
        shots, problems = screenshots(url, ADMIN_PASSWORD, out, widths=(1400,))
    assert not problems, problems
    assert shots[("Guards", 1400)].stat().st_size > 20_000
