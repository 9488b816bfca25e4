"""The price book: litellm's bundled price map, overridden by dated `prices:` from the config.

The bundled JSON is read from the installed litellm package without importing litellm (the
import is slow and may try to fetch the map over the network).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config import PriceConfig, RatesConfig
from .money import DEFAULT_TIER, MTOK, RATE_FIELDS, TOOL_FIELDS, Price, Rates, tier_of

BUNDLED_FILE = "model_prices_and_context_window_backup.json"

# litellm's name for each Rates field, before its `_above_<N>k_tokens` and tier suffixes.
_BUNDLED_RATES = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "input_cost_per_audio_token": "input_audio",
    "output_cost_per_audio_token": "output_audio",
    "input_cost_per_image_token": "input_image",
    "output_cost_per_image_token": "output_image",
    "output_cost_per_reasoning_token": "reasoning",
}
# Service tiers a response can report; litellm's `_batches` prices are the Batch API's, which
# does not pass through the proxy.
TIERS = ("priority", "flex")
_RATE_KEY = re.compile(
    "^(" + "|".join(sorted(_BUNDLED_RATES, key=len, reverse=True)) + r")(?:_above_(\d+)k_tokens)?(?:_(priority|flex))?$"
)
# Server-side tools, as USD per 1,000 uses: (litellm field, its unit in uses).
_BUNDLED_TOOLS = {
    "search_context_cost_per_query": ("web_search", 1),
    "file_search_cost_per_1k_calls": ("file_search", 1000),
    "code_interpreter_cost_per_session": ("code_interpreter", 1),
}
Table = dict[tuple[str, int], dict[str, Decimal]]


def _is_price_field(key: str) -> bool:
    return key in _BUNDLED_TOOLS or _RATE_KEY.match(key) is not None


def bundled_price_map() -> tuple[dict[str, dict[str, Any]], str]:
    """litellm's bundled price map and a version label for it; empty if litellm is absent."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}, "none"
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.exists():
        return {}, "none"
    with path.open(encoding="utf-8") as f:
        data = json.load(f, parse_float=Decimal)
    # Only the price fields stay: the whole map (context windows, feature flags, ...) held
    # ~4 MB of Python objects for the proxy's lifetime.
    prices = {
        name: {k: v for k, v in entry.items() if _is_price_field(k)}
        for name, entry in data.items()
        if isinstance(entry, dict) and "input_cost_per_token" in entry
    }
    return prices, f"litellm-{importlib.metadata.version('litellm')}"


def build_price(
    model: str, tables: Table, tools: dict[str, Decimal], *, version: str, effective_from: str | None = None
) -> Price:
    """A Price from per-token rates by (tier, context threshold); (default, 0) is the base.

    A rate a table leaves out is taken from the same context tier at default, then the same
    service tier below every threshold, then the base: litellm's map, and a `prices:` entry,
    list only what differs. Cached input and cache writes default to the table's input rate.
    """
    base = tables.get((DEFAULT_TIER, 0), {})

    def resolve(tier: str, above: int) -> Rates:
        chain = [tables.get(k, {}) for k in ((tier, above), (DEFAULT_TIER, above), (tier, 0))] + [base]
        got: dict[str, Any] = {f: next((t[f] for t in chain if f in t), None) for f in RATE_FIELDS}
        inp = got["input"] or Decimal(0)
        got["input"] = inp
        got["output"] = got["output"] or Decimal(0)
        got["cached_input"] = inp if got["cached_input"] is None else got["cached_input"]
        got["cache_write"] = inp if got["cache_write"] is None else got["cache_write"]
        return Rates(**got)

    tiers = {t for t, _ in tables if t != DEFAULT_TIER}
    thresholds = sorted({a for _, a in tables if a})
    return Price(
        model=model,
        rates=resolve(DEFAULT_TIER, 0),
        version=version,
        effective_from=effective_from,
        tiers={t: resolve(t, 0) for t in sorted(tiers) if (t, 0) in tables},
        long_context=tuple(
            (a, {t: resolve(t, a) for t in (DEFAULT_TIER, *sorted(tiers)) if (t, a) in tables or t == DEFAULT_TIER})
            for a in thresholds
        ),
        tools=tools,
    )


class PriceBook:
    """Finds the price in force for a model at a time.

    Parameters:
        overrides: the config's `prices:`; for a model they win over the bundled map from
            their `effective_from` on (no date: always).
        bundled: a price map shaped like litellm's (None: read litellm's bundled file).
    """

    def __init__(
        self,
        overrides: list[PriceConfig] = (),  # type: ignore[assignment]
        bundled: dict[str, dict[str, Any]] | None = None,
        bundled_version: str = "custom",
    ):
        if bundled is None:
            bundled, bundled_version = bundled_price_map()
        self._bundled = bundled
        self._bundled_version = bundled_version
        self._versions: dict[str, list[Price]] = {}
        for p in overrides:
            eff = p.effective_from.isoformat() if p.effective_from else None
            price = build_price(p.model, _config_tables(p), _config_tools(p), version=f"config:{p.model}@{eff or 'always'}", effective_from=eff)
            self._versions.setdefault(p.model, []).append(price)
        for versions in self._versions.values():
            versions.sort(key=lambda v: v.effective_from or "")
        self._cache: dict[tuple[str, ...], Price | None] = {}
        # (names, day) -> the price in force: every call is priced (and estimated) this way,
        # and the book does not change once built.
        self._in_force: dict[tuple[tuple[str, ...], date], Price | None] = {}

    def lookup(self, *names: str, at: datetime | date | None = None) -> Price | None:
        """The price for the first of `names` that has one, in force at `at` (default: now)."""
        day = at.date() if isinstance(at, datetime) else at or date.today()
        key = (names, day)
        try:
            return self._in_force[key]
        except KeyError:
            pass
        found = self._in_force_on(names, day.isoformat())
        if len(self._in_force) >= 10_000:  # names may be the client's (a glob route): stay bounded
            self._in_force.clear()
        self._in_force[key] = found
        return found

    def _in_force_on(self, names: tuple[str, ...], day: str) -> Price | None:
        for name in names:
            for v in reversed(self._versions.get(name, [])):
                if v.effective_from is None or v.effective_from <= day:
                    return v
        return self._from_bundled(names)

    def history(self, name: str) -> list[Price]:
        """Every price version for a model, oldest first, the bundled one (if any) first."""
        base = self._from_bundled((name,))
        return ([base] if base else []) + list(self._versions.get(name, []))

    def _from_bundled(self, names: tuple[str, ...]) -> Price | None:
        if names in self._cache:
            return self._cache[names]
        found = None
        for name in names:
            for key in (name, name.split("/", 1)[-1]):
                entry = self._bundled.get(key)
                if entry and "input_cost_per_token" in entry:
                    found = _bundled_price(key, entry, self._bundled_version)
                    break
            if found:
                break
        if len(self._cache) < 10_000:  # names may be the client's (a glob route): keep it bounded
            self._cache[names] = found
        return found


def _bundled_price(key: str, entry: dict[str, Any], version: str) -> Price:
    tables: Table = {}
    tools: dict[str, Decimal] = {}
    for k, v in entry.items():
        if k in _BUNDLED_TOOLS:
            name, unit = _BUNDLED_TOOLS[k]
            if isinstance(v, dict):  # per search context size: medium is OpenAI's default
                v = v.get("search_context_size_medium", next(iter(v.values()), None))
            if v is not None and not isinstance(v, dict):
                tools[name] = Decimal(str(v)) * 1000 / unit
            continue
        m = _RATE_KEY.match(k)
        if m and v is not None:
            above = int(m.group(2)) * 1000 if m.group(2) else 0
            tables.setdefault((m.group(3) or DEFAULT_TIER, above), {})[_BUNDLED_RATES[m.group(1)]] = Decimal(str(v))
    return build_price(key, tables, tools, version=f"{version}:{key}")


def _rates_of(r: RatesConfig) -> dict[str, Decimal]:
    out = {}
    for f in RATE_FIELDS:
        v = getattr(r, f"{f}_per_mtok")
        if v is not None:
            out[f] = v / MTOK
    return out


def _config_tables(p: PriceConfig) -> Table:
    tables: Table = {(DEFAULT_TIER, 0): _rates_of(p)}
    for tier, r in p.tiers.items():
        tables[(tier_of(tier), 0)] = _rates_of(r)
    for lc in p.long_context:
        tables[(DEFAULT_TIER, lc.above_input_tokens)] = _rates_of(lc)
        for tier, r in lc.tiers.items():
            tables[(tier_of(tier), lc.above_input_tokens)] = _rates_of(r)
    return tables


def _config_tools(p: PriceConfig) -> dict[str, Decimal]:
    return {t: v for t in TOOL_FIELDS if (v := getattr(p, f"{t}_per_1k_calls")) is not None}


def per_mtok(amount: Decimal) -> Decimal:
    return (amount * MTOK).normalize()
