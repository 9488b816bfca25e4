"""Showback, chargeback and exports; they read the ledger and never write it."""

from .agents import CallNode, Run, ToolCost, call_tree, tool_costs, top_runs, top_tool_calls
from .budgets_report import BudgetStatus, budget_status
from .capped_runs import CappedRun, capped_runs
from .chargeback import ChargebackLine, ChargebackReport, chargeback_report
from .drilldown import Drill, drilldown
from .exports import EVENTS_CSV_COLUMNS, EXPORTS, FOCUS_FORMATS
from .filters import Filters
from .invoice import Invoice, chargeback_file, invoice
from .overview import Overview, overview
from .showback import Showback, showback

__all__ = [
    "CappedRun",
    "capped_runs",
    "EVENTS_CSV_COLUMNS",
    "EXPORTS",
    "FOCUS_FORMATS",
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
    "chargeback_report",
    "showback",
    "BudgetStatus",
    "Drill",
    "Filters",
    "Invoice",
    "Overview",
    "budget_status",
    "chargeback_file",
    "drilldown",
    "invoice",
    "overview",
]
