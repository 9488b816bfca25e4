"""Which price applies when: a model's price versions with the dates they are in force."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from meterline.costing import Price, PriceBook, Rates, UnknownModelPrice
from meterline.costing.money import RATE_FIELDS

MTOK = Decimal(1_000_000)


@dataclass
class PriceVersion:
    version: str
    effective_from: str | None  # None: from the start
    until: str | None  # the next version's effective_from (None: open-ended)
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal
    cache_write_per_mtok: Decimal
    output_per_mtok: Decimal
    in_force: bool  # the one that applies on the asked day
    shadowed: bool  # never applies: a later version takes over from the same day or earlier
    # Every other rate, USD per 1M tokens (per 1,000 uses for tools): (where, dimension, rate),
    # `where` being "" for the base rates, a tier ("priority"), "above 200000" or both.
    rates: list[tuple[str, str, Decimal]] = field(default_factory=list)


def price_versions(book: PriceBook, model: str, on: date | None = None) -> list[PriceVersion]:
    """Every price version of `model`, oldest first. Raises UnknownModelPrice if it has none."""
    history = book.history(model)
    if not history:
        raise UnknownModelPrice(model)
    current = book.lookup(model, at=on or date.today())
    out: list[PriceVersion] = []
    for i, p in enumerate(history):
        nxt = history[i + 1].effective_from if i + 1 < len(history) else None
        later_always = i + 1 < len(history) and nxt is None
        out.append(
            PriceVersion(
                version=p.version,
                effective_from=p.effective_from,
                until=nxt,
                input_per_mtok=_mtok(p.input),
                cached_input_per_mtok=_mtok(p.cached_input),
                cache_write_per_mtok=_mtok(p.cache_write),
                output_per_mtok=_mtok(p.output),
                in_force=current is not None and p.version == current.version,
                shadowed=later_always or (nxt is not None and (p.effective_from or "") >= nxt),
                rates=other_rates(p),
            )
        )
    return out


_BASE_SHOWN = ("input", "cached_input", "cache_write", "output")  # the table's own columns


def other_rates(p: Price) -> list[tuple[str, str, Decimal]]:
    """The rates of `p` beyond its four base columns: every dimension, tier and context tier."""
    out: list[tuple[str, str, Decimal]] = []

    def add(where: str, r: Rates, skip: tuple[str, ...] = ()) -> None:
        for f in RATE_FIELDS:
            v = getattr(r, f)
            if v is not None and f not in skip:
                out.append((where, f, _mtok(v)))

    add("", p.rates, _BASE_SHOWN)
    for tier, r in p.tiers.items():
        add(tier, r)
    for above, by_tier in p.long_context:
        for tier, r in by_tier.items():
            add(f"above {above}" + ("" if tier == "default" else f" {tier}"), r)
    for tool, per_k in p.tools.items():
        out.append(("per 1,000 uses", tool, _plain(per_k)))
    return out


def _mtok(per_token: Decimal) -> Decimal:
    return _plain(per_token * MTOK)


def _plain(v: Decimal) -> Decimal:
    v = v.normalize()
    return v.quantize(Decimal(1)) if v == v.to_integral_value() else v


def prices_table(model: str, versions: list[PriceVersion], on: date | None = None) -> str:
    day = (on or date.today()).isoformat()
    lines = [
        f"Prices for {model} (USD per 1M tokens)",
        "",
        f"{'FROM':<12} {'UNTIL':<12} {'INPUT':>10} {'CACHED':>10} {'CACHE WR':>10} {'OUTPUT':>10}  VERSION",
    ]
    for v in versions:
        mark = f"  <- applies on {day}" if v.in_force else ("  (never applies)" if v.shadowed else "")
        lines.append(
            f"{v.effective_from or 'start':<12} {v.until or '-':<12} {v.input_per_mtok:>10} {v.cached_input_per_mtok:>10} "
            f"{v.cache_write_per_mtok:>10} {v.output_per_mtok:>10}  {v.version}{mark}"
        )
        groups: dict[str, list[str]] = {}
        for where, dim, rate in v.rates:
            groups.setdefault(where or "other rates", []).append(f"{dim} {rate}")
        lines.extend(f"{'':<12} {where}: {', '.join(parts)}" for where, parts in groups.items())
    return "\n".join(lines)


__all__ = ["PriceVersion", "price_versions", "prices_table"]
