"""The one CSV writer: every CSV file the product writes goes through it.

A cell that starts with = + - @ (or a tab or carriage return) is a formula to a
spreadsheet, which runs it when the file is opened (CSV injection). A file meant for a
person's spreadsheet is written with `defuse`, which makes such a cell text with a
leading quote; a file a program reads back (an importer's input) keeps every value
exactly, so each caller says which kind it writes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defused(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made text; any other value as is."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


class CsvWriter:
    """`csv.writer` rows (the default dialect) on the text file `f`, opened with newline="";
    every cell defused when `defuse` is set."""

    def __init__(self, f: IO[str], *, defuse: bool) -> None:
        self._writer = csv.writer(f)
        self.defuse = defuse

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow(map(defused, row) if self.defuse else row)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        if not self.defuse:
            self._writer.writerows(rows)
            return
        for row in rows:
            self.writerow(row)
