"""Showback, chargeback and exports; they read the ledger and never write it."""

from .chargeback import ChargebackLine, ChargebackReport, chargeback, chargeback_report
from .exports import EVENTS_CSV_COLUMNS, EXPORTS
from .showback import Showback, showback

__all__ = [
    "EVENTS_CSV_COLUMNS",
    "EXPORTS",
    "ChargebackLine",
    "ChargebackReport",
    "Showback",
    "chargeback",
    "chargeback_report",
    "showback",
]
