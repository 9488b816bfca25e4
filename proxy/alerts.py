"""Alerts announced over HTTP: `budgets.webhook_url` is POSTed each budget alert the core noted
first (costing/budget_alerts.py), and `alerts.webhook_url` (else the budgets') each spend
anomaly (costing/anomalies.py), as JSON.

The core describes an alert and notes it once fleet-wide; sending it somewhere is the proxy's,
so the core needs no HTTP client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from meterline.costing.anomalies import Spike
from meterline.costing.budget_alerts import Alert, Announce
from meterline.costing.credit_alerts import CreditAlert

log = logging.getLogger("meterline.budgets")

TIMEOUT = 5.0  # seconds; the budgets' background thread waits for the webhook


def body(alert: Alert) -> dict[str, str]:
    """What the webhook receives."""
    return {
        "kind": alert.kind,
        "scope": alert.scope[0],
        "id": alert.scope[1],
        "period": alert.period,
        "budget_usd": str(alert.budget),
        "spent_usd": str(alert.spent),
        "threshold_percent": str(alert.threshold_percent),
    }


def anomaly_body(spike: Spike) -> dict[str, Any]:
    """What the webhook receives for a spend anomaly: amounts and ids, no prompt text."""
    return {
        "kind": "spend_anomaly",
        "scope": spike.scope[0],
        "id": spike.scope[1],
        "hour": spike.start.strftime("%Y-%m-%dT%H:00:00Z"),
        "spend_usd": str(spike.spend),
        "usual_usd": str(spike.median),
        "z": str(spike.z),
        "message": spike.message,
    }


def credit_body(alert: CreditAlert) -> dict[str, str]:
    """What the webhook receives when a credit balance falls below a threshold."""
    return {
        "kind": alert.kind,
        "scope": alert.scope[0],
        "id": alert.scope[1],
        "period": alert.period,
        "threshold_usd": str(alert.threshold),
        "balance_usd": str(alert.balance),
        "message": alert.message,
    }


def credit_webhook(url: str | None) -> Callable[[CreditAlert], None] | None:
    """A callback that POSTs each credit alert to `url` (None when no URL is configured)."""
    return _poster(url, credit_body, "credit")


def webhook(url: str | None) -> Announce | None:
    """A callback that POSTs each alert to `url` (None when no URL is configured)."""
    return _poster(url, body, "budget")


def anomaly_webhook(url: str | None) -> Callable[[Spike], None] | None:
    """A callback that POSTs each spend anomaly to `url` (None when no URL is configured)."""
    return _poster(url, anomaly_body, "anomaly")


def _poster(url: str | None, make: Callable[[Any], dict[str, Any]], what: str) -> Callable[[Any], None] | None:
    if not url:
        return None

    def post(item: Any) -> None:
        import httpx  # here: with its CLI's Rich and Pygments it costs the proxy ~5 MB resident

        try:
            httpx.post(url, json=make(item), timeout=TIMEOUT).raise_for_status()
        except httpx.HTTPError as e:
            log.warning("%s webhook %s failed: %s", what, url, e)

    return post


__all__ = ["anomaly_body", "anomaly_webhook", "body", "credit_body", "credit_webhook", "webhook"]
