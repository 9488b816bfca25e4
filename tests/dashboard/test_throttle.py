"""Password sign-in is throttled per user and per client: guessing runs at the throttle's pace."""

from __future__ import annotations

from meterline.costing.config import DashboardConfig
from meterline.dashboard import throttle as throttle_module
from meterline.dashboard.auth import sign_in
from meterline.dashboard.throttle import FREE, MAX_LOCK, Throttle
from tests.dashboard.conftest import ADMIN_PASSWORD, signed_in


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def config() -> DashboardConfig:
    return DashboardConfig.model_validate({"password": ADMIN_PASSWORD})


def test_200_wrong_guesses_in_a_row_are_throttled_and_the_right_password_waits_too():
    gate, cfg = Throttle(Clock()), config()  # the clock stands still: 200 guesses in no time
    answers = [sign_in(cfg, "admin", f"guess-{i}", "10.0.0.9", gate)[1] for i in range(200)]
    checked = [a for a in answers if a == "Wrong user or password."]
    refused = [a for a in answers if a.startswith("Too many failed sign-ins: try again in")]
    assert len(checked) == FREE + 1 and len(refused) == 200 - FREE - 1  # only 6 were even looked at
    viewer, why = sign_in(cfg, "admin", ADMIN_PASSWORD, "10.0.0.9", gate)
    assert viewer is None and why.startswith("Too many failed sign-ins")


def test_each_failure_past_the_free_ones_doubles_the_wait_up_to_a_cap():
    clock = Clock()
    gate, cfg = Throttle(clock), config()
    waits = []
    for i in range(30):
        sign_in(cfg, "admin", f"guess-{i}", "10.0.0.9", gate)
        waits.append(gate.wait("admin", "10.0.0.9"))
        clock.t += waits[-1]  # the attacker waits out every lock
    assert waits[:FREE] == [0.0] * FREE
    assert waits[FREE : FREE + 4] == [2.0, 4.0, 8.0, 16.0]
    assert max(waits) == MAX_LOCK
    assert sum(waits) > 4 * 3600  # 30 guesses take hours; 200 take days
    viewer, why = sign_in(cfg, "admin", ADMIN_PASSWORD, "10.0.0.9", gate)
    assert viewer is not None and why == ""  # once the lock is over, the owner gets in
    assert gate.wait("admin", "10.0.0.9") == 0.0


def test_another_client_guessing_other_names_is_throttled_as_a_client():
    clock = Clock()
    gate, cfg = Throttle(clock), config()
    for i in range(FREE + 1):
        sign_in(cfg, f"user-{i}", "x", "10.0.0.66", gate)
    assert gate.wait("someone-else", "10.0.0.66") > 0  # the client is locked, whatever name it tries
    assert gate.wait("admin", "10.0.0.1") == 0  # the admin from elsewhere is not


def test_the_sign_in_form_says_when_guessing_is_throttled(ledger, monkeypatch):
    monkeypatch.setattr(throttle_module, "_now", lambda: 1000.0)  # time stands still: the lock holds
    for _ in range(FREE):
        assert [e.value for e in signed_in("admin", "wrong").error] == ["Wrong user or password."]
    at = signed_in("admin", "wrong")  # the sixth is checked, then locks
    at = signed_in("admin", ADMIN_PASSWORD)
    assert any(e.value.startswith("Too many failed sign-ins: try again in") for e in at.error)
    assert not at.metric
