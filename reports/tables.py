"""Plain-text tables for the terminal."""

from __future__ import annotations

from costing import usd

from .showback import Showback


def showback_table(sb: Showback) -> str:
    lines = [f"Showback {sb.period}", "", f"{'DEPARTMENT':<22} {'TEAM':<22} {'REQUESTS':>10} {'COST USD':>16}"]
    for d in sb.departments:
        lines.append(f"{d.name:<22} {'':<22} {d.requests:>10,} {usd(d.cost_usd):>16}")
        for t in d.teams:
            lines.append(f"{'':<22} {t.team:<22} {t.requests:>10,} {usd(t.cost_usd):>16}")
    lines.append(f"{'TOTAL':<22} {'':<22} {sb.requests:>10,} {usd(sb.total_usd):>16}")
    if sb.unpriced_requests:
        lines.append(f"\n{sb.unpriced_requests:,} requests have no price (unpriced usage): add them under `prices:`")
    if sb.estimated_requests:
        lines.append(f"{sb.estimated_requests:,} requests have estimated usage (upstream reported none)")
    return "\n".join(lines)
