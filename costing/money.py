"""Money: token counts become dollars here and nowhere else.

Amounts are `Decimal`. The ledger stores them as integers of pico-dollars (1e-12 USD), which
is exact for every per-token price with up to six decimals per million tokens, and lets SQL
sum them without floats.

A call is priced along every dimension its provider bills: text, cached and written input
(5-minute and 1-hour cache writes), audio and image tokens in and out, reasoning tokens,
server-side tool uses (web search, file search, code interpreter), under the service tier
the response says applied and the long-context tier its prompt reached. `breakdown` keeps
each dimension's cost separately; `cost_of` is their exact sum.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

PICO = Decimal("1e-12")
MTOK = Decimal(1_000_000)
ZERO = Decimal(0)
KCALLS = Decimal(1000)

# Caps on what one call can put in the ledger (issue 20): a count past MAX_TOKENS is not a
# real call's and is flagged, not priced; a call past MAX_CALL_COST is recorded at the cap,
# flagged. With these a rollup bucket needs ~900 capped calls before its int64 pico sum
# could overflow, and the rollup upsert saturates there (costing/ledger.py).
MAX_TOKENS = 10**9
MAX_CALL_COST = Decimal(10_000)

DEFAULT_TIER = "default"
# What providers put in `service_tier` for their standard tier (OpenAI answers "default",
# Anthropic "standard"; a request's "auto" is not an answer).
_DEFAULT_TIERS = frozenset(("", "default", "standard", "auto", "on_demand"))

INVALID_USAGE = "invalid_usage"  # the upstream reported counts out of range: those were not priced
PARTLY_PRICED = "partly_priced"  # a count had no rate of its own: priced as below, flagged


def tier_of(service_tier: str) -> str:
    return DEFAULT_TIER if service_tier in _DEFAULT_TIERS else service_tier


@dataclass(frozen=True, slots=True)
class Extra:
    """The rarer dimensions of a call's usage; a text-only call at the default tier has none."""

    cache_write_1h_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    web_search_calls: int = 0
    file_search_calls: int = 0
    code_interpreter_calls: int = 0
    service_tier: str = ""  # as the response reported it; "" when it did not say or said default
    flag: str = ""  # INVALID_USAGE when the upstream's counts were out of range


EXTRA_FIELDS = tuple(f.name for f in fields(Extra))
NO_EXTRA = Extra()


def _extra(name: str) -> property:
    return property(lambda self: getattr(self.extra or NO_EXTRA, name), doc=f"Extra.{name}")


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call used, each count on its own, as providers report them.

    cached, cache writes, audio and image input are parts of `input_tokens`; reasoning, audio
    and image output parts of `output_tokens`; `cache_write_1h_tokens` is the part of
    `cache_write_tokens` written for an hour. Tool counts are uses, not tokens. The rarer
    dimensions live in `extra` (None for a text-only call, which keeps the common call as
    cheap to build as before); read them as attributes of the Usage all the same.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # Anthropic's cache_creation_input_tokens, also within input
    extra: Extra | None = None

    cache_write_1h_tokens = _extra("cache_write_1h_tokens")
    input_audio_tokens = _extra("input_audio_tokens")
    output_audio_tokens = _extra("output_audio_tokens")
    input_image_tokens = _extra("input_image_tokens")
    output_image_tokens = _extra("output_image_tokens")
    web_search_calls = _extra("web_search_calls")
    file_search_calls = _extra("file_search_calls")
    code_interpreter_calls = _extra("code_interpreter_calls")
    service_tier = _extra("service_tier")
    flag = _extra("flag")

    @classmethod
    def of(
        cls,
        input_tokens: int = 0,
        cached_input_tokens: int = 0,
        output_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_tokens: int = 0,
        **extra: Any,
    ) -> Usage:
        """A Usage from every count by name (the Extra fields too), `extra` only if needed."""
        e = Extra(**extra) if any(extra.values()) else None
        return cls(input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cache_write_tokens, e)

    def is_plain(self) -> bool:
        """Text in and out only, at the default tier: the common call, priced on the fast path."""
        e = self.extra
        return e is None or not (
            e.service_tier
            or e.cache_write_1h_tokens
            or e.input_audio_tokens
            or e.output_audio_tokens
            or e.input_image_tokens
            or e.output_image_tokens
            or e.web_search_calls
            or e.file_search_calls
            or e.code_interpreter_calls
        )


COUNT_FIELDS = (*(f.name for f in fields(Usage) if f.type == "int"), *(f.name for f in fields(Extra) if f.type == "int"))
"""Every count of a Usage, in order: the ledger has a column for each."""


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token of each token dimension, for one service tier and context tier.

    None: the provider has no rate of its own for it; such tokens are priced at the rate
    named in FALLBACK and the call flagged partly priced.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    input_image: Decimal | None = None
    output_image: Decimal | None = None
    reasoning: Decimal | None = None  # None: reasoning is billed as output (OpenAI), no flag


RATE_FIELDS = tuple(f.name for f in fields(Rates))
# A count without a rate of its own is priced at this one (and flagged, but for reasoning).
FALLBACK = {
    "cache_write_1h": "cache_write",
    "input_audio": "input",
    "input_image": "input",
    "output_audio": "output",
    "output_image": "output",
    "reasoning": "output",
}

TOOL_FIELDS = ("web_search", "file_search", "code_interpreter")
"""Server-side tools billed per use: USD per 1,000 uses on a Price."""


@dataclass(frozen=True, slots=True)
class Price:
    """One model's price version, in force from `effective_from` (None: always).

    `rates` is the default tier below every context threshold. `tiers` holds the rates of
    other service tiers; `long_context` the rates once the prompt passes a threshold, per
    tier: crossing it reprices the whole call, as Google, Anthropic and OpenAI bill.
    `tools` is USD per 1,000 uses of each server-side tool.
    """

    model: str
    rates: Rates
    version: str  # stored with each event: which price priced it
    effective_from: str | None = None
    tiers: Mapping[str, Rates] = field(default_factory=dict)
    long_context: tuple[tuple[int, Mapping[str, Rates]], ...] = ()  # (above N input tokens, tier -> rates), ascending
    tools: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def input(self) -> Decimal:
        return self.rates.input

    @property
    def output(self) -> Decimal:
        return self.rates.output

    @property
    def cached_input(self) -> Decimal:
        return self.rates.cached_input

    @property
    def cache_write(self) -> Decimal:
        return self.rates.cache_write

    # Text-only pricing: no context tiers and no reasoning rate (the fast path applies).
    simple: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "simple", not self.long_context and self.rates.reasoning is None)

    @classmethod
    def per_mtok(
        cls,
        model: str,
        input: Decimal,
        output: Decimal,
        cached_input: Decimal | None = None,
        cache_write: Decimal | None = None,
        *,
        version: str,
        effective_from: str | None = None,
        **more: Decimal | None,
    ) -> Price:
        """A price from USD per 1M tokens; `more` sets the other Rates fields the same way."""
        return cls(
            model=model,
            rates=rates_per_mtok(input, output, cached_input, cache_write, **more),
            version=version,
            effective_from=effective_from,
        )

    def rates_for(self, usage: Usage) -> tuple[Rates, str, int]:
        """The rates a call is billed at, the tier they are of, and the context threshold
        its prompt passed (0: none). A tier without rates of its own is billed at default."""
        tier = tier_of(usage.service_tier)
        above = 0
        table: Mapping[str, Rates] = self.tiers
        for threshold, by_tier in self.long_context:
            if usage.input_tokens > threshold:
                above, table = threshold, by_tier
        if tier == DEFAULT_TIER:
            base = table.get(DEFAULT_TIER) if above else self.rates
            return base or self.rates, tier, above
        rates = table.get(tier)
        if rates is None:
            return (table.get(DEFAULT_TIER) if above else None) or self.rates, DEFAULT_TIER, above
        return rates, tier, above


def rates_per_mtok(
    input: Decimal,
    output: Decimal,
    cached_input: Decimal | None = None,
    cache_write: Decimal | None = None,
    **more: Decimal | None,
) -> Rates:
    return Rates(
        input=input / MTOK,
        output=output / MTOK,
        cached_input=(input if cached_input is None else cached_input) / MTOK,
        cache_write=(input if cache_write is None else cache_write) / MTOK,
        **{k: None if v is None else v / MTOK for k, v in more.items()},
    )


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A call's cost by dimension (only dimensions with a count), exact; `total` is their sum."""

    parts: Mapping[str, Decimal]
    tier: str  # the service tier billed
    above: int  # the context threshold passed (0: none)
    flag: str  # "", PARTLY_PRICED, INVALID_USAGE or both, comma-separated

    @property
    def total(self) -> Decimal:
        return sum(self.parts.values(), ZERO)


def breakdown(usage: Usage, price: Price) -> Breakdown:
    """Each dimension's cost of one call. Counts are bounded by their totals (cached, writes,
    audio and image never make text negative), so the parts add up to what the provider bills."""
    rates, tier, above = price.rates_for(usage)
    partly = tier != tier_of(usage.service_tier)
    parts: dict[str, Decimal] = {}

    def rate(name: str) -> Decimal:
        nonlocal partly
        r: Decimal | None = getattr(rates, name)
        if r is None:
            fallback = FALLBACK[name]
            partly = partly or name != "reasoning"
            fb: Decimal = getattr(rates, fallback)
            return fb
        return r

    def add(name: str, count: int, r: Decimal) -> None:
        if count:
            parts[name] = count * r

    inp, out = usage.input_tokens, usage.output_tokens
    cached = min(usage.cached_input_tokens, inp)
    write = min(usage.cache_write_tokens, inp - cached)
    write_1h = min(usage.cache_write_1h_tokens, write)
    audio_in = min(usage.input_audio_tokens, inp - cached - write)
    image_in = min(usage.input_image_tokens, inp - cached - write - audio_in)
    audio_out = min(usage.output_audio_tokens, out)
    image_out = min(usage.output_image_tokens, out - audio_out)
    reasoning = min(usage.reasoning_tokens, out - audio_out - image_out) if rates.reasoning is not None else 0
    add("input", inp - cached - write - audio_in - image_in, rates.input)
    add("cached_input", cached, rates.cached_input)
    add("cache_write", write - write_1h, rates.cache_write)
    if write_1h:
        add("cache_write_1h", write_1h, rate("cache_write_1h"))
    if audio_in:
        add("input_audio", audio_in, rate("input_audio"))
    if image_in:
        add("input_image", image_in, rate("input_image"))
    add("output", out - audio_out - image_out - reasoning, rates.output)
    if reasoning:
        add("reasoning", reasoning, rates.reasoning)  # type: ignore[arg-type]
    if audio_out:
        add("output_audio", audio_out, rate("output_audio"))
    if image_out:
        add("output_image", image_out, rate("output_image"))
    for tool in TOOL_FIELDS:
        uses = getattr(usage, f"{tool}_calls")
        if uses:
            per_k = price.tools.get(tool)
            if per_k is None:
                partly = True  # a use whose price is unknown: counted, not priced
            else:
                parts[tool] = uses * per_k / KCALLS
    flags = [f for f in (usage.flag, PARTLY_PRICED if partly else "") if f]
    return Breakdown(parts, tier, above, ",".join(flags))


def text_cost(usage: Usage, r: Rates) -> Decimal:
    """The cost of a text-only call (Usage.is_plain) at simple rates (Price.simple)."""
    inp = usage.input_tokens
    cached = min(usage.cached_input_tokens, inp)
    write = min(usage.cache_write_tokens, inp - cached)
    return (inp - cached - write) * r.input + cached * r.cached_input + write * r.cache_write + usage.output_tokens * r.output


def priced(usage: Usage, price: Price) -> tuple[Decimal, str]:
    """(exact cost, flag) of one call; text-only calls skip the breakdown."""
    if price.simple and usage.is_plain():
        return text_cost(usage, price.rates), usage.flag
    b = breakdown(usage, price)
    return b.total, b.flag


def cost_of(usage: Usage, price: Price) -> Decimal:
    """Exact cost of one call: the sum of its dimensions' costs."""
    return priced(usage, price)[0]


def capped(cost: Decimal, flag: str) -> tuple[Decimal, str]:
    """A cost no single call could have is recorded at MAX_CALL_COST and flagged."""
    if cost <= MAX_CALL_COST:
        return cost, flag
    return MAX_CALL_COST, flag if INVALID_USAGE in flag else ",".join(f for f in (INVALID_USAGE, flag) if f)
def cost_detail(b: Breakdown) -> str:
    """A breakdown as the ledger keeps it: `dim=pico;...` (reports parse it with parse_detail)."""
    return ";".join(f"{k}={to_pico(v)}" for k, v in b.parts.items())


def parse_detail(detail: str) -> dict[str, int]:
    """pico-dollars by dimension from a ledger `cost_detail` ("" for a text-only call)."""
    out: dict[str, int] = {}
    for part in detail.split(";") if detail else ():
        k, _, v = part.partition("=")
        if v.lstrip("-").isdigit():
            out[k] = out.get(k, 0) + int(v)
    return out


def to_pico(amount: Decimal) -> int:
    return int((amount / PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_pico(pico: int) -> Decimal:
    return Decimal(pico) * PICO


def usd(amount: Decimal, places: int = 6) -> str:
    """A fixed-point string, as exports and headers show money."""
    return f"{amount.quantize(_quantum(places), rounding=ROUND_HALF_EVEN):f}"


@functools.cache
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def exact(amount: Decimal) -> str:
    """The full stored precision, trailing zeros trimmed but never below six places."""
    q = amount.quantize(PICO)
    text = f"{q:f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(6, '0')}"


def largest_remainder(amounts: list[Decimal], places: int) -> list[Decimal]:
    """Round each amount to `places` so that the rounded parts add up exactly to the rounded total.

    The remainder units go to the largest fractional remainders (ties: first in order), the
    method finance uses for invoice lines that must sum to the invoice.
    """
    unit = Decimal(1).scaleb(-places)
    total = sum(amounts, ZERO).quantize(unit, rounding=ROUND_HALF_EVEN)
    floors = [a.quantize(unit, rounding=ROUND_FLOOR) for a in amounts]
    # round(total) >= floor(total) >= sum(floors), so there is never a unit to take back.
    left = int((total - sum(floors, ZERO)) / unit)
    order = sorted(range(len(amounts)), key=lambda i: (-(amounts[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += unit
    return floors
