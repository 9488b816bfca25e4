"""Budget alerts announced over HTTP: `budgets.webhook_url` is POSTed each alert the core noted
first (costing/budget_alerts.py), as JSON.

The core describes an alert and notes it once fleet-wide; sending it somewhere is the proxy's,
so the core needs no HTTP client.
"""

from __future__ import annotations

import logging

from meterline.costing.budget_alerts import Alert, Announce

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


def webhook(url: str | None) -> Announce | None:
    """A callback that POSTs each alert to `url` (None when no URL is configured)."""
    if not url:
        return None

    def post(alert: Alert) -> None:
        import httpx  # here: with its CLI's Rich and Pygments it costs the proxy ~5 MB resident

        try:
            httpx.post(url, json=body(alert), timeout=TIMEOUT).raise_for_status()
        except httpx.HTTPError as e:
            log.warning("budget webhook %s failed: %s", url, e)

    return post


__all__ = ["body", "webhook"]
