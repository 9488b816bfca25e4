"""Run caps remember a bounded number of calls, however many runs or calls there are."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from meterline.costing import run_caps
from meterline.costing.config import settings_from_dict


def _call(trace: str, n: int, parent: str = ""):
    return SimpleNamespace(call_id=f"{trace}-{n}", trace_id=trace, parent_call_id=parent, link="",
                           payer=SimpleNamespace(team="nlp", department="research"))  # fmt: skip


def _caps() -> run_caps.RunCaps:
    settings = settings_from_dict({"runs": {"max_depth": 1000}}, environ={})
    return run_caps.RunCaps(settings, lambda call: Decimal(0))


def test_many_runs_keep_the_remembered_calls_under_the_bound(monkeypatch):
    monkeypatch.setattr(run_caps, "MAX_DEPTHS", 100)
    caps = _caps()
    for r in range(60):
        for n in range(5):
            caps.admit(_call(f"run{r}", n))
    remembered = sum(len(st.depths) for st in caps._runs.values())
    assert remembered <= 100 and caps._depths == remembered
    assert "run59" in caps._runs and "run0" not in caps._runs  # the least recently active went


def test_one_long_run_forgets_its_oldest_calls_and_keeps_counting_depth(monkeypatch):
    monkeypatch.setattr(run_caps, "MAX_DEPTHS", 100)
    caps = _caps()
    parent = ""
    for n in range(300):  # a chain: each call made under the one before
        caps.admit(_call("deep", n, parent))
        parent = f"deep-{n}"
    st = caps._runs["deep"]
    assert len(st.depths) == caps._depths == 100
    assert st.depths["deep-299"] == 299  # its parent was still remembered
