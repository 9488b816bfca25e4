"""Budget estimates: a conservative guess of a call's cost, made before it is sent.

For LLM calls, the request's bytes / 4 as input tokens (JSON overhead makes this an
over-count) plus the largest output token count of the model's last 50 calls (before any:
`budgets.default_output_tokens`), capped by the request's own `max_tokens` (or
`max_completion_tokens`, `max_output_tokens`) when it sets one, at the price in force; for
other calls, the largest cost of the last 50 calls of the same kind, provider and tool.

Budgets, credits and (with an estimator of their own) rate limits each tell the estimator of
the calls they settle; with budgets and credits both on, one call is told twice, so a call is
taken in once whoever tells it (else the last 50 would be the last 25, each twice).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from .money import ZERO
from .prices import PriceBook

RECENT = 50  # calls per model/tool the estimate looks back on
MAX_TOOLS = 10_000  # (kind, server, tool) whose recent costs are kept
LEARNED_IDS = 1024  # call ids remembered as taken in: its observers tell of a call together
BYTES_PER_TOKEN = 4


# Read-only members: the proxy's calls are frozen once admitted.
class _Payer(Protocol):
    @property
    def department(self) -> str: ...
    @property
    def team(self) -> str: ...


class _Key(Protocol):
    @property
    def id(self) -> str: ...


class Admissible(Protocol):
    """What budgets need of a call (the proxy's Call, for LLM and MCP calls alike)."""

    # Read-only (properties): the proxy's Call is frozen.
    @property
    def call_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def request_bytes(self) -> int: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def payer(self) -> _Payer: ...
    @property
    def key(self) -> _Key: ...

    @property
    def reserved(self) -> Decimal:
        """A price known before the call (an MCP tool's): the least that is reserved."""
        ...


class Estimator:
    """Parameters:
    prices: the price book the proxy prices calls with.
    default_output_tokens: the output an LLM call is assumed to have before its model's
        first recorded call (`budgets.default_output_tokens`).
    """

    def __init__(self, prices: PriceBook, default_output_tokens: int):
        self.prices = prices
        self.default_output_tokens = default_output_tokens
        self._outputs: dict[str, deque[int]] = {}
        self._largest: dict[str, int] = {}  # max of each `_outputs`, kept as it changes (read per call)
        self._costs: dict[tuple[str, str, str], deque[Decimal]] = {}
        self._learned: OrderedDict[str, None] = OrderedDict()

    def estimate(self, call: Admissible) -> Decimal:
        if call.kind in ("llm", "embedding"):
            upstream = getattr(call, "upstream_model", "")  # the bundled map knows the provider's name
            price = self.prices.lookup(call.model, upstream, at=call.ts) if upstream else self.prices.lookup(call.model, at=call.ts)
            if price is None:
                return ZERO  # unpriced calls are recorded at 0
            return (call.request_bytes // BYTES_PER_TOKEN) * price.input + self.output_tokens(call) * price.output
        recent_costs = self._costs.get((call.kind, call.provider, call.tool))
        return max(recent_costs) if recent_costs else ZERO

    def output_tokens(self, call: Admissible) -> int:
        """The output an LLM call is assumed to have: its model's largest of late, capped by
        the request's own `max_tokens`."""
        output = self._largest.get(call.model)
        if output is None:
            output = self.default_output_tokens if call.kind == "llm" else 0
        cap: int = getattr(call, "max_output_tokens", 0)  # the request's max_tokens: output cannot pass it
        return min(output, cap) if cap else output

    def tokens(self, call: Admissible) -> int:
        """The tokens an LLM call is assumed to use (request bytes / 4 in, `output_tokens` out),
        as rate limits count them; 0 for other calls."""
        if call.kind not in ("llm", "embedding"):
            return 0
        return call.request_bytes // BYTES_PER_TOKEN + self.output_tokens(call)

    def learn(self, event: dict[str, Any], cost: Decimal) -> None:
        """Take in a recorded call (not a refused one): its output size or its cost, once."""
        call_id = event.get("call_id")
        if call_id is not None:
            if call_id in self._learned:
                return
            self._learned[call_id] = None
            if len(self._learned) > LEARNED_IDS:
                self._learned.popitem(last=False)
        if event["kind"] in ("llm", "embedding"):
            if event["usage_source"] == "reported" and event["status"] == "ok":
                model, n = event["model"], event["output_tokens"]
                recent = self._outputs.setdefault(model, deque(maxlen=RECENT))
                dropped = recent[0] if len(recent) == RECENT else None
                recent.append(n)
                largest = self._largest.get(model)
                if largest is None or n >= largest:
                    self._largest[model] = n
                elif dropped == largest:  # the largest left the window: look again
                    self._largest[model] = max(recent)
        else:
            k = (event["kind"], event["provider"], event["tool"])
            if k in self._costs or len(self._costs) < MAX_TOOLS:  # tool names are the client's: bounded
                self._costs.setdefault(k, deque(maxlen=RECENT)).append(cost)


__all__ = ["BYTES_PER_TOKEN", "LEARNED_IDS", "MAX_TOOLS", "RECENT", "Admissible", "Estimator"]
