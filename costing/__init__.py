"""The metering core: config, organisation, prices, money, the ledger. Imports nothing above it."""

from .budgets import configured_limits
from .chargeback import Chargeback, ChargebackLine, DepartmentCharge, load_chargeback
from .config import Settings, load_settings, settings_from_dict
from .engine import create_engine, create_schema
from .errors import (
    BudgetExceeded,
    ConfigError,
    CostingError,
    InvalidKey,
    KeyRequestError,
    LedgerWriteError,
    PeriodClosed,
    UnknownKey,
    UnknownModelPrice,
)
from .ingest import charge_period, next_period, period_of
from .keys import create_key, get_key, key_record, list_keys, revoke_key, rotate_key
from .ledger_writes import write_events
from .money import PICO, ZERO, Price, Usage, cost_of, exact, from_pico, largest_remainder, usd
from .org import Org, Team
from .periods import close_period, is_closed
from .prices import PriceBook
from .tables import (
    EVENT_COLUMNS,
    ROLLUP_SUMS,
    TOKEN_FIELDS,
    Event,
    Note,
    PeriodSnapshot,
    Rollup,
    VirtualKey,
)

__all__ = [
    "EVENT_COLUMNS",
    "PICO",
    "ROLLUP_SUMS",
    "TOKEN_FIELDS",
    "ZERO",
    "BudgetExceeded",
    "Chargeback",
    "ChargebackLine",
    "ConfigError",
    "CostingError",
    "DepartmentCharge",
    "Event",
    "InvalidKey",
    "KeyRequestError",
    "LedgerWriteError",
    "Note",
    "Org",
    "PeriodClosed",
    "PeriodSnapshot",
    "Price",
    "PriceBook",
    "Rollup",
    "Settings",
    "Team",
    "UnknownKey",
    "UnknownModelPrice",
    "Usage",
    "VirtualKey",
    "charge_period",
    "close_period",
    "configured_limits",
    "cost_of",
    "create_engine",
    "create_key",
    "create_schema",
    "exact",
    "get_key",
    "key_record",
    "from_pico",
    "largest_remainder",
    "is_closed",
    "list_keys",
    "load_chargeback",
    "load_settings",
    "next_period",
    "period_of",
    "revoke_key",
    "rotate_key",
    "settings_from_dict",
    "usd",
    "write_events",
]
