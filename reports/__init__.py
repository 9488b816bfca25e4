"""Showback, chargeback and exports; they read the ledger and never write it."""

from .chargeback import ChargebackLine, chargeback
from .exports import EXPORTS, EVENTS_CSV_COLUMNS
from .showback import Showback, showback

__all__ = ["EVENTS_CSV_COLUMNS", "EXPORTS", "ChargebackLine", "Showback", "chargeback", "showback"]
