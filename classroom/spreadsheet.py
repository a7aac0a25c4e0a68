"""Cells of the CSV files people open in spreadsheets (exports, the audit log)."""

from __future__ import annotations

from typing import Any

# First characters that make a spreadsheet evaluate a cell (OWASP "CSV Injection"), with their
# full-width forms (U+FF1D = , U+FF0B + , U+FF0D - , U+FF20 @), which some spreadsheets
# normalise to the ASCII ones before parsing.
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def safe_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: user text starting like a formula gets a
    leading quote; ``None`` becomes empty; anything else is returned as it is."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return "" if value is None else value
