"""CSV cells that a spreadsheet will not run as formulas (CSV / formula injection).

Every CSV file the service writes (export, import error reports) goes through :func:`csv_writer`.
Following OWASP's CSV-injection guidance, a text cell that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return gets a leading ``'``, which spreadsheets show as "this is text" and do
not evaluate. A cell that already starts with ``'`` gets one too, so the escaping is reversible:
:func:`cell_unescape` (applied by the CSV import to every cell) removes exactly one leading ``'``
when the next character is one of those, so an exported file imports back to the original values.
The cost of that choice: a hand-written import cell ``'=x`` is read as ``=x`` (write ``''=x`` to
import the quote).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"
_ESCAPED_STARTS = (*FORMULA_STARTS, TEXT_MARK)


def cell_escape(value: Any) -> Any:
    """``value`` as a CSV cell no spreadsheet evaluates; non-text values are left alone."""
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return TEXT_MARK + value
    return value


def cell_unescape(text: str) -> str:
    """The value :func:`cell_escape` was given (identity for a cell it did not change)."""
    if text.startswith(TEXT_MARK) and text[1:2] and text[1:2] in _ESCAPED_STARTS:
        return text[1:]
    return text


class SafeCsvWriter:
    """``csv.writer`` whose rows are escaped cell by cell."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([cell_escape(value) for value in row])


def csv_writer(handle: IO[str]) -> SafeCsvWriter:
    return SafeCsvWriter(handle)
