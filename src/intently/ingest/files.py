"""Reading vendor files: CSV, optionally gzipped, streamed, with headers matched by name.

Every importer reads through `CsvInput`, so each accepts the same things (UTF-8 with or
without a BOM, `.gz` by content not by name, any column order, extra columns ignored)
and fails the same way on a file that is not what it expects.

What one file may cost is bounded while it streams (`FileLimits`, the operator's
`import_max_*` settings): its decompressed size, how much more than its compressed size
a `.gz` inflates to (a decompression bomb), and the length of a row, read in bounded
pieces so that a line that never ends is never held whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException

from intently.kit.errors import BadRequest
from intently.settings import Settings

# No field can be longer than its row, which `FileLimits.max_line_chars` bounds (at most
# this much, the largest the setting allows).
csv.field_size_limit(1 << 20)

# The ratio guard looks only past this much output: a file's first block may inflate far
# more than the whole file does (a header and a run of empty cells).
RATIO_FLOOR = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_UNREADABLE = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, csv.Error)


class FileFormatError(BadRequest):
    """The file is not the expected format at all (not a single row can be read)."""


class FileTooLarge(FileFormatError):
    """The file is over a size limit: decompressed size, or compression ratio."""

    status = 413


@dataclass(frozen=True, slots=True)
class FileLimits:
    """What one imported file may cost: the operator's `import_max_*` settings."""

    max_decompressed_bytes: int
    max_compression_ratio: float
    max_line_chars: int

    @classmethod
    def of(cls, settings: Settings) -> FileLimits:
        return cls(
            max_decompressed_bytes=settings.import_max_decompressed_bytes,
            max_compression_ratio=settings.import_max_compression_ratio,
            max_line_chars=settings.import_max_line_chars,
        )


# The settings' defaults, for callers that were given no settings (the demo, library use).
DEFAULT_LIMITS = FileLimits.of(Settings.model_construct())


def header_key(name: str) -> str:
    """`Composite Score`, `composite_score` and ` COMPOSITE-SCORE ` all match."""
    return "".join(ch for ch in name.strip().lower() if ch.isalnum())


def match_columns(header: Sequence[str], names: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Column index by canonical name, for the names whose spellings the header has."""
    keys = [header_key(h) for h in header]
    found: dict[str, int] = {}
    for name, aliases in names.items():
        for alias in aliases:
            k = header_key(alias)
            if k in keys:
                found[name] = keys.index(k)
                break
    return found


class _Exceeded(Exception):
    """Raised inside the decompressing stream; CsvInput turns it into FileTooLarge."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


class _Inflated(io.RawIOBase):
    """A gzip stream's decompressed bytes, counted against the limits as they come out."""

    def __init__(self, gz: gzip.GzipFile, raw: IO[bytes], limits: FileLimits) -> None:
        super().__init__()
        self._gz, self._raw, self._limits = gz, raw, limits
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._gz.readinto(buffer)
        self.size += n
        limits = self._limits
        if self.size > limits.max_decompressed_bytes:
            raise _Exceeded("size")
        # raw.tell(): the compressed bytes read so far (the decompressor reads ahead 8 KB).
        if self.size > RATIO_FLOOR and self.size > limits.max_compression_ratio * self._raw.tell():
            raise _Exceeded("ratio")
        return n


class CsvInput:
    """A CSV file read once, front to back, in constant memory."""

    def __init__(
        self, path: str | Path, *, what: str = "CSV file", limits: FileLimits | None = None
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.limits = limits or DEFAULT_LIMITS
        try:
            self._raw: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise FileFormatError(f"cannot open {self.path}: {exc.strerror}") from None
        self.total_bytes = os.fstat(self._raw.fileno()).st_size
        magic = self._raw.read(2)
        self._raw.seek(0)
        stream: IO[bytes]
        if magic == _GZIP_MAGIC:
            inflated = _Inflated(gzip.GzipFile(fileobj=self._raw), self._raw, self.limits)
            stream = io.BufferedReader(inflated, 1 << 16)
        else:
            if self.total_bytes > self.limits.max_decompressed_bytes:
                self.close()
                limit = self.limits.max_decompressed_bytes
                raise FileTooLarge(
                    f"{self.path.name} is {self.total_bytes:,} bytes, more than the limit of "
                    f"{limit:,} (INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES)"
                )
            stream = self._raw
        self._text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        self._line = 0  # physical lines read
        self._row_start = 1  # the line the row being read starts on
        self._row_chars = 0  # its characters so far (a quoted cell may span lines)
        self._reader = csv.reader(self._lines())
        try:
            self.header = next(self._reader)
        except StopIteration:
            self.close()
            raise FileFormatError(f"{self.path.name} is empty: expected a {what}") from None
        except FileFormatError:
            self.close()
            raise
        except _UNREADABLE as exc:
            self.close()
            raise FileFormatError(
                f"{self.path.name} is not a UTF-8 {what} ({type(exc).__name__})"
            ) from None
        self._next_row()

    def _lines(self) -> Iterator[str]:
        """The file's lines for the CSV reader, each read in a piece at most one longer
        than the limit, so an over-long row fails before it is all in memory."""
        limit = self.limits.max_line_chars
        readline = self._text.readline
        while True:
            try:
                line = readline(limit + 2)  # the longest row allowed and its \r\n
            except _Exceeded as exc:
                raise self._too_large(exc.limit) from None
            if not line:
                return
            self._line += 1
            n = len(line)
            if line[-1] == "\n":
                n -= 2 if n > 1 and line[-2] == "\r" else 1
            elif line[-1] == "\r":
                n -= 1
            self._row_chars += n
            if self._row_chars > limit:
                raise FileFormatError(
                    f"{self.path.name}: line {self._row_start} is longer than {limit:,} "
                    "characters (the limit, INTENTLY_IMPORT_MAX_LINE_CHARS)"
                )
            yield line

    def _next_row(self) -> None:
        self._row_start, self._row_chars = self._line + 1, 0

    def _too_large(self, limit: str) -> FileTooLarge:
        name, limits = self.path.name, self.limits
        where = f"stopped at line {self._line + 1}"
        if limit == "size":
            return FileTooLarge(
                f"{name} holds more than {limits.max_decompressed_bytes:,} bytes once "
                f"decompressed (the limit, INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES); {where}"
            )
        return FileTooLarge(
            f"{name} decompresses to more than {limits.max_compression_ratio:g} times its "
            "compressed size, as a decompression bomb does (the limit, "
            f"INTENTLY_IMPORT_MAX_COMPRESSION_RATIO); {where}"
        )

    def columns(
        self,
        required: Mapping[str, Sequence[str]],
        optional: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, int]:
        """Column index by canonical name; each name lists the header spellings it accepts.

        Fails naming the expected and the found columns when a required one is missing.
        """
        found = match_columns(self.header, {**required, **(optional or {})})
        missing = [aliases[0] for name, aliases in required.items() if name not in found]
        if missing:
            raise self.missing_columns(missing, ", ".join(a[0] for a in required.values()))
        return found

    def missing_columns(self, missing: Sequence[str], expected: str) -> FileFormatError:
        """The error for a header that lacks `missing`: all of them at once, with what was
        expected and what was found."""
        seen = ", ".join(h.strip() for h in self.header) or "(none)"
        sep = "; " if any("," in m for m in missing) else ", "
        return FileFormatError(
            f"{self.path.name} is not a {self.what}: missing column(s) {sep.join(missing)}; "
            f"expected {expected}; found {seen}"
        )

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) for each data row; the header is line 1. Blank lines skipped.

        A row over a limit, or a file that breaks off, raises FileFormatError naming the line.
        """
        reader = self._reader
        try:
            for cells in reader:
                self._next_row()
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                yield reader.line_num, cells
        except _UNREADABLE as exc:
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


# ---- spreadsheets ------------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
# The widest header read from a sheet: a sheet may declare 16,384 columns it never fills.
MAX_SHEET_COLUMNS = 1000


class XlsxInput:
    """The first sheet of an Excel workbook (.xlsx), read once with openpyxl in read-only
    mode (rows stream from the file) and cached values, never formulas.

    Shaped like CsvInput (`header`, `rows()`, `columns()`) but its cells keep the sheet's
    types (text, numbers, dates, None). The same limits bound it: the workbook's
    decompressed size and ratio, as its zip directory states them (zipfile never
    inflates an entry past its stated size), and the characters of one row.
    """

    def __init__(
        self, path: str | Path, *, what: str = "spreadsheet", limits: FileLimits | None = None
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.limits = limits = limits or DEFAULT_LIMITS
        name = self.path.name
        self.total_bytes = os.path.getsize(self.path)
        try:
            with zipfile.ZipFile(self.path) as z:
                inflated = sum(i.file_size for i in z.infolist())
        except (zipfile.BadZipFile, OSError):
            raise FileFormatError(f"{name} is not an Excel workbook (.xlsx)") from None
        if inflated > limits.max_decompressed_bytes:
            raise FileTooLarge(
                f"{name} holds more than {limits.max_decompressed_bytes:,} bytes once "
                "decompressed (the limit, INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES)"
            )
        if inflated > RATIO_FLOOR and inflated > limits.max_compression_ratio * self.total_bytes:
            raise FileTooLarge(
                f"{name} decompresses to more than {limits.max_compression_ratio:g} times its "
                "compressed size, as a decompression bomb does (the limit, "
                "INTENTLY_IMPORT_MAX_COMPRESSION_RATIO)"
            )
        try:
            self._book = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
            sheet = self._book.worksheets[0]
            first = next(
                sheet.iter_rows(min_row=1, max_row=1, max_col=MAX_SHEET_COLUMNS, values_only=True),
                (),
            )
        except (zipfile.BadZipFile, InvalidFileException, KeyError, IndexError, ValueError):
            raise FileFormatError(f"{name} is not an Excel workbook (.xlsx)") from None
        header = ["" if c is None else str(c).strip() for c in first]
        while header and not header[-1]:
            header.pop()
        if not header:
            self.close()
            raise FileFormatError(f"{name} is empty: expected a {what} with a header row")
        self.header = header
        self._sheet = sheet

    def columns(
        self,
        required: Mapping[str, Sequence[str]],
        optional: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, int]:
        found = match_columns(self.header, {**required, **(optional or {})})
        missing = [aliases[0] for name, aliases in required.items() if name not in found]
        if missing:
            seen = ", ".join(self.header)
            raise FileFormatError(
                f"{self.path.name} is not a {self.what}: missing column(s) {', '.join(missing)}; "
                f"found {seen}"
            )
        return found

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        """(row number, cells) for each data row; the header is row 1. Blank rows skipped."""
        limit = self.limits.max_line_chars
        width = len(self.header)
        try:
            for line, values in enumerate(
                self._sheet.iter_rows(min_row=2, max_col=width, values_only=True), start=2
            ):
                cells = list(values)
                if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                    continue
                if sum(len(str(c)) for c in cells if c is not None) > limit:
                    raise FileFormatError(
                        f"{self.path.name}: row {line} is longer than {limit:,} characters "
                        "(the limit, INTENTLY_IMPORT_MAX_LINE_CHARS)"
                    )
                yield line, cells
        except (zipfile.BadZipFile, KeyError, ValueError, zlib.error) as exc:
            raise FileFormatError(
                f"{self.path.name}: unreadable ({type(exc).__name__}: {exc})"
            ) from None

    def close(self) -> None:
        self._book.close()

    def __enter__(self) -> XlsxInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_table(
    path: str | Path, *, what: str, limits: FileLimits | None = None
) -> CsvInput | XlsxInput:
    """A CSV (or .csv.gz) or an Excel workbook, told apart by content, not by name."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == _ZIP_MAGIC:
        return XlsxInput(path, what=what, limits=limits)
    return CsvInput(path, what=what, limits=limits)
