"""Reading vendor files: CSV, optionally gzipped, streamed, with headers matched by name.

Every importer reads through `CsvInput`, so each accepts the same things (UTF-8 with or
without a BOM, `.gz` by content not by name, any column order, extra columns ignored)
and fails the same way on a file that is not what it expects.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, cast

from intently.kit.errors import BadRequest

csv.field_size_limit(1 << 20)


class FileFormatError(BadRequest):
    """The file is not the expected format at all (not a single row can be read)."""


def header_key(name: str) -> str:
    """`Composite Score`, `composite_score` and ` COMPOSITE-SCORE ` all match."""
    return "".join(ch for ch in name.strip().lower() if ch.isalnum())


class CsvInput:
    """A CSV file read once, front to back, in constant memory."""

    def __init__(self, path: str | Path, *, what: str = "CSV file") -> None:
        self.path = Path(path)
        self.what = what
        try:
            self._raw: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise FileFormatError(f"cannot open {self.path}: {exc.strerror}") from None
        self.total_bytes = os.fstat(self._raw.fileno()).st_size
        magic = self._raw.read(2)
        self._raw.seek(0)
        stream = (
            cast(IO[bytes], gzip.GzipFile(fileobj=self._raw)) if magic == b"\x1f\x8b" else self._raw
        )
        self._text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        self._reader = csv.reader(self._text)
        try:
            self.header = next(self._reader)
        except StopIteration:
            self.close()
            raise FileFormatError(f"{self.path.name} is empty: expected a {what}") from None
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error) as exc:
            self.close()
            raise FileFormatError(
                f"{self.path.name} is not a UTF-8 {what} ({type(exc).__name__})"
            ) from None
        self._keys = [header_key(h) for h in self.header]

    def columns(
        self,
        required: Mapping[str, Sequence[str]],
        optional: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, int]:
        """Column index by canonical name; each name lists the header spellings it accepts.

        Fails naming the expected and the found columns when a required one is missing.
        """
        found: dict[str, int] = {}
        missing: list[str] = []
        for name, aliases in {**required, **(optional or {})}.items():
            for alias in aliases:
                k = header_key(alias)
                if k in self._keys:
                    found[name] = self._keys.index(k)
                    break
            else:
                if name in required:
                    missing.append(aliases[0])
        if missing:
            expected = ", ".join(a[0] for a in required.values())
            seen = ", ".join(h.strip() for h in self.header) or "(none)"
            raise FileFormatError(
                f"{self.path.name} is not a {self.what}: missing column(s) {', '.join(missing)}; "
                f"expected {expected}; found {seen}"
            )
        return found

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) for each data row; the header is line 1. Blank lines skipped."""
        reader = self._reader
        try:
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                yield reader.line_num, cells
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error) as exc:
            raise FileFormatError(
                f"{self.path.name}: unreadable after line {reader.line_num} ({type(exc).__name__}: "
                f"{exc})"
            ) from None

    def bytes_read(self) -> int:
        """How far into the file (compressed bytes for .gz): for progress bars."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self.total_bytes

    def record(self, cells: list[str]) -> dict[str, str]:
        """A row as {header: value}, for keeping it as a reject."""
        return {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(self.header)}

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> CsvInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
