"""Each package's public names, pinned: adding or removing one is a decision this file records
(as httpx's tests/test_exported_members.py). Other packages import only these."""

from __future__ import annotations

import importlib
import types

import pytest

PUBLIC = {
    "meterline.costing": [
        "BILLING_COLUMNS",
        "Breakdown",
        "BudgetExceeded",
        "Chargeback",
        "ChargebackLine",
        "ConfigError",
        "CostingError",
        "DIMENSION_FIELDS",
        "DepartmentCharge",
        "EVENT_COLUMNS",
        "Event",
        "InvalidKey",
        "InvalidMonth",
        "KeyRequestError",
        "LedgerWriteError",
        "Note",
        "Org",
        "PICO",
        "PeriodClosed",
        "PeriodNotEnded",
        "PeriodSnapshot",
        "Price",
        "PriceBook",
        "ROLLUP_SUMS",
        "RUN_CAPPED_NOTE",
        "Rates",
        "Recovered",
        "Rollup",
        "Settings",
        "TOKEN_FIELDS",
        "Team",
        "UnknownKey",
        "UnknownModelPrice",
        "Usage",
        "VirtualKey",
        "ZERO",
        "adopt_orphans",
        "breakdown",
        "charge_period",
        "close_period",
        "closed_periods",
        "configured_limits",
        "cost_of",
        "create_engine",
        "create_key",
        "create_schema",
        "current_period",
        "exact",
        "from_pico",
        "get_key",
        "has_ended",
        "is_closed",
        "is_month",
        "key_record",
        "largest_remainder",
        "list_keys",
        "load_chargeback",
        "load_settings",
        "month_end",
        "month_start",
        "next_period",
        "parse_detail",
        "parse_month",
        "period_of",
        "previous_period",
        "recover_spool",
        "revoke_key",
        "rotate_key",
        "settings_from_dict",
        "usd",
        "write_events",
    ],
    "meterline.reports": [
        "BudgetStatus",
        "CallNode",
        "CappedRun",
        "ChargebackLine",
        "ChargebackReport",
        "Drill",
        "EVENTS_CSV_COLUMNS",
        "EXPORTS",
        "FOCUS_FORMATS",
        "Filters",
        "Invoice",
        "Overview",
        "Run",
        "Showback",
        "ToolCost",
        "budget_status",
        "call_tree",
        "capped_runs",
        "chargeback_file",
        "chargeback_report",
        "drilldown",
        "invoice",
        "overview",
        "showback",
        "tool_costs",
        "top_runs",
        "top_tool_calls",
    ],
    "meterline.proxy": ["create_app"],
    "meterline.testing": ["MCPSimServer", "SimServer"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned(package: str) -> None:
    assert sorted(importlib.import_module(package).__all__) == PUBLIC[package]


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_exported_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    missing = []
    for name in module.__all__:
        try:
            exec(f"from {package} import {name}", {})
        except ImportError:
            missing.append(name)
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("package", ["meterline.costing", "meterline.reports", "meterline.proxy"])
def test_all_imports_are_exported(package: str) -> None:
    """A name imported into a package's __init__ is public only if __all__ says so."""
    module = importlib.import_module(package)
    public = {n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert sorted(public - set(module.__all__)) == []
