"""The price book: litellm's bundled price map, overridden by dated `prices:` from the config.

The bundled JSON is read from the installed litellm package without importing litellm (the
import is slow and may try to fetch the map over the network).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config import PriceConfig
from .money import MTOK, Price

BUNDLED_FILE = "model_prices_and_context_window_backup.json"
PRICE_FIELDS = frozenset(
    ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost", "cache_creation_input_token_cost")
)


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
        name: {k: v for k, v in entry.items() if k in PRICE_FIELDS}
        for name, entry in data.items()
        if isinstance(entry, dict) and "input_cost_per_token" in entry
    }
    return prices, f"litellm-{importlib.metadata.version('litellm')}"


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
            price = Price.per_mtok(
                p.model,
                p.input_per_mtok,
                p.output_per_mtok,
                p.cached_input_per_mtok,
                p.cache_write_per_mtok,
                version=f"config:{p.model}@{eff or 'always'}",
                effective_from=eff,
            )
            self._versions.setdefault(p.model, []).append(price)
        for versions in self._versions.values():
            versions.sort(key=lambda v: v.effective_from or "")
        self._cache: dict[tuple[str, ...], Price | None] = {}

    def lookup(self, *names: str, at: datetime | date | None = None) -> Price | None:
        """The price for the first of `names` that has one, in force at `at` (default: now)."""
        day = (at.date() if isinstance(at, datetime) else at or date.today()).isoformat()
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
        self._cache[names] = found
        return found


def _bundled_price(key: str, entry: dict[str, Any], version: str) -> Price:
    def dec(field: str, default: Decimal) -> Decimal:
        v = entry.get(field)
        return default if v is None else Decimal(str(v))

    inp = dec("input_cost_per_token", Decimal(0))
    return Price(
        model=key,
        input=inp,
        output=dec("output_cost_per_token", Decimal(0)),
        cached_input=dec("cache_read_input_token_cost", inp),
        cache_write=dec("cache_creation_input_token_cost", inp),
        version=f"{version}:{key}",
    )


def per_mtok(amount: Decimal) -> Decimal:
    return (amount * MTOK).normalize()
