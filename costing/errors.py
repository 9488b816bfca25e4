"""Errors raised by the metering core.

    CostingError
    ├── ConfigError          a bad or missing setting (names the key and the file)
    ├── UnknownModelPrice    no price for a model (the call is recorded unpriced)
    ├── BudgetExceeded       a department, team or key is over its monthly budget
    ├── CreditsExhausted     a team or department that requires credits has none left
    ├── RateLimited          a key, team or department is over a rate limit (retry later)
    ├── RunCapExceeded       an agent run is past one of its caps (`runs:`), and stays refused
    ├── InvalidKey           missing, unknown, revoked or expired virtual key
    ├── UnknownKey           no key with that id (managing keys, not calling with one)
    ├── KeyRequestError      a key cannot be made or changed as asked (names the field)
    ├── LedgerWriteError     the ledger refused rows for what they hold (retrying cannot help)
    ├── LedgerSchemaError    the ledger's schema is newer than this version of Meterline
    ├── InvalidMonth         not a month written YYYY-MM (also a ValueError, for validators)
    ├── PeriodNotEnded       a month cannot be closed before it is over
    └── PeriodClosed         a closed month cannot be changed
"""

from __future__ import annotations


class CostingError(Exception):
    """Base of every error the metering core raises on purpose."""


class ConfigError(CostingError):
    def __init__(self, message: str, *, key: str | None = None, path: str | None = None):
        where = f"{path}: " if path else ""
        what = f"{key}: " if key else ""
        super().__init__(f"{where}{what}{message}")
        self.key = key
        self.path = path


class UnknownModelPrice(CostingError):
    def __init__(self, model: str):
        super().__init__(
            f"no price for model {model!r}: add it under 'prices:' in the config; "
            "its calls are recorded as unpriced meanwhile"
        )
        self.model = model


class InvalidKey(CostingError):
    pass


class UnknownKey(CostingError):
    def __init__(self, key_id: str):
        super().__init__(f"no key with id {key_id!r} (see `meterline keys list`)")
        self.key_id = key_id


class KeyRequestError(CostingError):
    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class BudgetExceeded(CostingError):
    def __init__(self, scope: str, name: str, budget: str, spent: str):
        super().__init__(
            f"{scope} {name!r} is over its monthly budget of {budget} USD "
            f"(spent {spent} USD this month)"
        )
        self.scope = scope
        self.name = name


class CreditsExhausted(CostingError):
    def __init__(self, scope: str, name: str, balance: str):
        super().__init__(
            f"{scope} {name!r} requires credits and has none left (balance {balance} USD); "
            "ask for a credit grant"
        )
        self.scope = scope
        self.name = name


class RateLimited(CostingError):
    """A call refused by a rate limit. `kind` is what OpenAI's error type says: `requests`, or
    `tokens` for a limit on tokens or on USD; `retry_after` in seconds; `headers` the
    `x-ratelimit-*` a client reads (costing/rate_limits.py)."""

    def __init__(self, message: str, *, kind: str, retry_after: float, headers: dict[str, str]):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.headers = headers


class RunCapExceeded(CostingError):
    """A call refused because its agent run is past a cap (cost, calls, depth, duration, a loop)."""


class LedgerWriteError(CostingError):
    """Raised by write_events, with nothing written: the database (or the row handling before
    it) refuses what the rows hold, so writing the same rows again cannot help. Write them one
    by one to find those refused (the ledger writer keeps them in the spool's `rejected/`)."""

    def __init__(self, reason: str, *, rows: int):
        super().__init__(f"the ledger refused {rows} event{'s' if rows != 1 else ''}: {reason}")
        self.reason = reason
        self.rows = rows


class InvalidMonth(CostingError, ValueError):
    def __init__(self, value: object):
        super().__init__(f"expected YYYY-MM, got {value!r}")
        self.value = value


class PeriodNotEnded(CostingError):
    def __init__(self, period: str, current: str):
        super().__init__(f"{period} has not ended yet (now {current})")
        self.period = period
        self.current = current


class PeriodClosed(CostingError):
    pass


class LedgerSchemaError(CostingError):
    pass
