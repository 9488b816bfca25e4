"""Showback, chargeback and exports; they read the ledger and never write it."""

from .agents import CallNode, Run, ToolCost, call_tree, tool_costs, top_runs, top_tool_calls
from .chargeback import ChargebackLine, ChargebackReport, chargeback, chargeback_report
from .exports import EVENTS_CSV_COLUMNS, EXPORTS
from .showback import Showback, showback

__all__ = [
    "EVENTS_CSV_COLUMNS",
    "EXPORTS",
    "CallNode",
    "Run",
    "ToolCost",
    "call_tree",
    "tool_costs",
    "top_runs",
    "top_tool_calls",
    "ChargebackLine",
    "ChargebackReport",
    "Showback",
    "chargeback",
    "chargeback_report",
    "showback",
]
