"""Plain-text tables for the terminal."""

from __future__ import annotations

from decimal import Decimal

from meterline.costing import previous_period, usd

from .chargeback import ChargebackReport
from .reprice import Reprice
from .showback import Showback
from .trend import change_text


def showback_table(sb: Showback) -> str:
    prev = previous_period(sb.period)
    lines = [
        f"Showback {sb.period}",
        "",
        f"{'DEPARTMENT':<22} {'TEAM':<22} {'REQUESTS':>10} {'COST USD':>16} {prev + ' USD':>16} {'CHANGE':>9}",
    ]
    for d in sb.departments:
        trend = f"{usd(d.previous_cost_usd):>16} {change_text(d.cost_usd, d.previous_cost_usd):>9}"
        lines.append(f"{d.name:<22} {'':<22} {d.requests:>10,} {usd(d.cost_usd):>16} {trend}")
        for t in d.teams:
            lines.append(f"{'':<22} {t.team:<22} {t.requests:>10,} {usd(t.cost_usd):>16}")
    trend = f"{usd(sb.previous_total_usd):>16} {change_text(sb.total_usd, sb.previous_total_usd):>9}"
    lines.append(f"{'TOTAL':<22} {'':<22} {sb.requests:>10,} {usd(sb.total_usd):>16} {trend}")
    for u in sb.unpriced:  # never folded into the total as if it were free
        tokens = f"{u.input_tokens:,} in / {u.output_tokens:,} out tokens"
        lines.append(f"{'UNPRICED':<22} {u.model:<22} {u.requests:>10,} {'no price':>16} {tokens}")
    if sb.forecast_usd is not None:
        lines.append(f"\nForecast for the end of {sb.period}: {usd(sb.forecast_usd, 2)} USD (run rate so far)")
    if sb.unpriced_requests:
        lines.append(f"\n{sb.unpriced_requests:,} requests have no price (unpriced usage): add them under `prices:`")
    if sb.estimated_requests:
        lines.append(f"{sb.estimated_requests:,} requests have estimated usage (upstream reported none)")
    return "\n".join(lines)


def chargeback_table(report: ChargebackReport) -> str:
    cb = report.chargeback
    prev = previous_period(cb.period)
    state = f"closed {cb.closed_at}" if cb.closed_at else "open"
    cur = cb.currency
    head = (
        f"{'DEPARTMENT':<22} {'COST CENTER':<12} {'USAGE':>14} {'SHARED':>14} {'MARKUP':>12} "
        f"{'BILLED ' + cur:>14} {prev:>14} {'CHANGE':>9}"
    )
    lines = [f"Chargeback {cb.period} ({state}, {cur})", "", head]
    for d in cb.departments:
        before = report.previous_billed.get(d.department)
        lines.append(
            f"{d.name:<22} {d.cost_center:<12} {usd(d.cost_usd):>14} {usd(d.allocated_usd):>14} "
            f"{usd(d.markup_usd):>12} {usd(d.billed, 2):>14} {usd(before or Decimal(0), 2):>14} {change_text(d.billed, before):>9}"
        )
    this_month = {d.department for d in cb.departments}
    for dept, before in sorted(report.previous_billed.items()):
        if dept not in this_month and before:  # billed last month, nothing this month
            name = report.previous_names.get(dept, dept or "(unallocated)")
            lines.append(f"{name:<22} {'':<12} {'':>14} {'':>14} {'':>12} {usd(Decimal(0), 2):>14} {usd(before, 2):>14} {'-100.0%':>9}")
    lines.append(
        f"{'TOTAL':<22} {'':<12} {'':>14} {'':>14} {'':>12} {usd(cb.total, 2):>14} "
        f"{usd(report.previous_total, 2):>14} {change_text(cb.total, report.previous_total):>9}"
    )
    late = [ln for ln in cb.lines if ln.adjustment]
    if late:
        amount = sum((ln.charge_usd for ln in late), Decimal(0))
        lines.append(f"\nAdjustments: {len(late)} lines, {usd(amount)} {cur} of usage from closed months billed here")
    if cb.shared_costs:
        lines.append(f"Shared costs of {usd(cb.shared_costs, 2)} {cur} allocated by the `chargeback.allocation` rule")
    for w in cb.warnings:
        lines.append(f"Note: {w}")
    if report.forecast is not None:
        lines.append(f"Forecast for the end of {cb.period}: {usd(report.forecast, 2)} {cur} (run rate so far)")
    return "\n".join(lines)


def reprice_table(r: Reprice) -> str:
    lines = [
        f"Reprice {r.period} (dry run: nothing is written)",
        "",
        f"{'DEPARTMENT':<22} {'MODEL':<28} {'REQUESTS':>10} {'CHANGED':>8} {'STORED USD':>16} {'REPRICED USD':>16} {'DIFF USD':>16}",
    ]
    for x in r.rows:
        lines.append(
            f"{x.department or '(unattributed)':<22} {x.model:<28} {x.requests:>10,} {x.changed:>8,} "
            f"{usd(x.old_usd):>16} {usd(x.new_usd):>16} {usd(x.diff_usd):>16}"
        )
    lines.append(
        f"{'TOTAL':<22} {'':<28} {sum(x.requests for x in r.rows):>10,} {r.changed:>8,} "
        f"{usd(r.old_usd):>16} {usd(r.new_usd):>16} {usd(r.new_usd - r.old_usd):>16}"
    )
    versions = sorted({v for x in r.rows for v in x.versions})
    if versions:
        lines.append("\nPrice versions that would change:")
        lines.extend(f"  {a} -> {b}" for a, b in versions)
    elif not r.changed:
        lines.append("\nThe current prices change nothing in this month.")
    return "\n".join(lines)
