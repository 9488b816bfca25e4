"""Spreadsheet-safe text cells: a leading =, +, -, @, tab or CR makes Excel and Sheets
evaluate a cell as a formula (OWASP "CSV injection"), so such text gets a leading quote."""

from __future__ import annotations

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    return "'" + value if value.startswith(_TRIGGERS) else value
