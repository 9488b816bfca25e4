"""Which provider serves a model a client asks for: exact names, aliases, then glob patterns."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from meterline.costing.config import ModelConfig


@dataclass(frozen=True, slots=True)
class Route:
    model: str  # the name the client used (aliases resolved), recorded in the ledger
    provider: str
    upstream_model: str  # what the provider is asked for


class Router:
    def __init__(self, models: list[ModelConfig]):
        self._exact: dict[str, ModelConfig] = {}
        self._globs: list[ModelConfig] = []
        for m in models:
            if any(c in m.name for c in "*?["):
                self._globs.append(m)
            else:
                self._exact[m.name] = m
            for alias in m.aliases:
                self._exact[alias] = m
        self._cache: dict[str, Route | None] = {}

    def route(self, model: str) -> Route | None:
        if model in self._cache:
            return self._cache[model]
        m = self._exact.get(model)
        if m is not None:
            name = m.name
        else:
            m = next((g for g in self._globs if fnmatch.fnmatchcase(model, g.name)), None)
            name = model
        route = Route(name, m.provider, m.upstream_model or name) if m else None
        if len(self._cache) < 10_000:  # client-chosen names: keep the cache bounded
            self._cache[model] = route
        return route

    def listed(self) -> list[str]:
        """Model ids for /v1/models: every exact name and alias (patterns are not ids)."""
        return sorted(self._exact)
