"""Money: token counts become dollars here and nowhere else.

Amounts are `Decimal`. The ledger stores them as integers of pico-dollars (1e-12 USD), which
is exact for every per-token price with up to six decimals per million tokens, and lets SQL
sum them without floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

PICO = Decimal("1e-12")
MTOK = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as providers report them: cached is a subset of input, reasoning of output."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # Anthropic's cache_creation_input_tokens, also within input


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token for one model, in force from `effective_from` (None: always)."""

    model: str
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    version: str  # stored with each event: which price priced it
    effective_from: str | None = None

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
    ) -> Price:
        return cls(
            model=model,
            input=input / MTOK,
            output=output / MTOK,
            cached_input=(input if cached_input is None else cached_input) / MTOK,
            cache_write=(input if cache_write is None else cache_write) / MTOK,
            version=version,
            effective_from=effective_from,
        )


def cost_of(usage: Usage, price: Price) -> Decimal:
    """Exact cost of one call. Reasoning tokens are billed as the output tokens they are part of."""
    fresh = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    return (
        fresh * price.input
        + usage.cached_input_tokens * price.cached_input
        + usage.cache_write_tokens * price.cache_write
        + usage.output_tokens * price.output
    )


def to_pico(amount: Decimal) -> int:
    return int((amount / PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_pico(pico: int) -> Decimal:
    return Decimal(pico) * PICO


def usd(amount: Decimal, places: int = 6) -> str:
    """A fixed-point string, as exports and headers show money."""
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


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
