"""Spreadsheet-safe CSV: no cell of an export can be read as a formula (OWASP "CSV injection").

Excel, LibreOffice and Sheets evaluate a text cell that starts with `=`, `+`, `-` or `@`
(and some a tab or CR first). Meterline writes names that clients choose (models matched
by a glob, MCP tool names, projects, tags), so every text cell goes through `safe_text`:

- A trigger counts after anything a reader may drop or not show: whitespace, control and
  format characters (U+200B zero width space, U+FEFF BOM, U+202E right-to-left override,
  ...), and in its compatibility form (full-width `＝` is `=` to an importer that
  normalizes, as Sheets does).
- Not only the first line: a value with a line break (CR, LF, or any of the separators
  `str.splitlines` knows) becomes a new row in a reader that splits lines before it parses
  quotes, so each line is checked on its own.
- A risky line gets a leading `'`, the prefix spreadsheets take as "this is text"; the
  value is otherwise kept, so it still matches what the ledger holds apart from that quote.

`csv_line` writes one row with quoting that protects embedded line breaks: Python's csv
writer with `lineterminator="\\n"` leaves a lone CR unquoted, which a spreadsheet reads as
the end of the row. Rows end with `\\n`, as the exports always have.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_TRIGGERS = frozenset("=+-@")
# What a reader may skip before it looks at the first character: spaces, controls
# (tab, CR, ...), format characters (zero-width, BOM, bidi overrides) and separators.
_SKIPPED = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
# Every line boundary `str.splitlines` knows: \n \r \v \f \x1c \x1d \x1e \x85 U+2028 U+2029.
_LINE_BREAK = re.compile("(\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029])")
_NEEDS_QUOTES = re.compile('[",\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]')


def _risky(line: str) -> bool:
    if line[:1] in ("\t", "\r"):  # a trigger of its own for some readers
        return True
    for ch in line:
        if unicodedata.category(ch) not in _SKIPPED:
            return unicodedata.normalize("NFKC", ch)[:1] in _TRIGGERS
    return False


def safe_text(value: str) -> str:
    """`value` with a leading `'` on every line a spreadsheet could read as a formula."""
    if not value:
        return value
    if _LINE_BREAK.search(value) is None:
        return "'" + value if _risky(value) else value
    parts = _LINE_BREAK.split(value)  # [line, break, line, break, ..., line]
    for i in range(0, len(parts), 2):
        if _risky(parts[i]):
            parts[i] = "'" + parts[i]
    return "".join(parts)


def quote_cell(cell: str) -> str:
    """One CSV field (RFC 4180 quoting), quoted whenever it holds a comma, a quote or any
    line break."""
    if _NEEDS_QUOTES.search(cell) is None:
        return cell
    return '"' + cell.replace('"', '""') + '"'


def csv_line(cells: Iterable[str]) -> str:
    """One CSV row of already formatted cells, ending in `\\n`."""
    return ",".join(quote_cell(c) for c in cells) + "\n"


__all__ = ["csv_line", "quote_cell", "safe_text"]
