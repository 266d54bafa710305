"""CSV that a spreadsheet opens as data: cells that would start a formula are neutralised (OWASP "CSV injection").

A customer's text (a prefix description, a reason an operator typed, a deployment's error) can start with `=`,
`+`, `-`, `@`, a tab or a carriage return; Excel, LibreOffice and Sheets treat such a cell as a formula and some
run it (`=HYPERLINK(...)`, DDE `=cmd|...`). A leading apostrophe makes the cell text; the value is otherwise kept.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: Any) -> Any:
    """The value, with an apostrophe in front when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeCsvWriter:
    """`csv.writer` whose every cell goes through `safe_cell`: the one way Sluice writes CSV."""

    def __init__(self, stream: _Writable) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])
