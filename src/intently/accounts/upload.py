"""The company profile from an uploaded CSV or XLSX file, its columns mapped by the user.

The user maps each column of the file to a profile field (catalog.PROFILE_FIELDS) or to
`domain` (required), or leaves it out. Each row names an account by domain (normalised
as the API does) and sets the fields whose cells are not empty; only accounts that exist
change, and a file never creates one.

A row with any cell that is no value of its field is refused whole (its line, field and
value reported) and the rest of the file is applied: nothing of a refused row is written.
Good rows are written in slices of SLICE domains, one statement and one transaction each,
stamped with the workspace clock so API delta syncs see the change; a later row of the
same domain wins over an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from intently.accounts import repository as repo
from intently.accounts.profile import BadCell, read_cell
from intently.catalog import PROFILE_FIELDS
from intently.ingest.files import FileLimits, open_table
from intently.kit.db import tick, write_tx
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest

DOMAIN = "domain"
TARGETS = (DOMAIN, *PROFILE_FIELDS)
WHAT = "company profile file"
SLICE = 1000
LISTED = 200  # refused rows and unknown domains listed in the report; the counts are complete

# Header spellings that suggest a field when the mapping form first shows a file.
_GUESSES: dict[str, tuple[str, ...]] = {
    DOMAIN: ("domain", "website", "url", "companydomain", "accountdomain", "web"),
    "shortName": ("shortname",),
    "industry": ("industry", "sector", "vertical"),
    "employeeCount": ("employeecount", "employees", "size", "companysize", "headcount"),
    "annualRevenue": ("annualrevenue", "revenue", "annualrevenueusd", "revenueusd"),
    "country": ("country", "countrycode", "hqcountry"),
    "city": ("city", "hqcity", "town"),
    "logoUrl": ("logourl", "logo"),
}


def header_of(path: Path, limits: FileLimits) -> list[str]:
    """The file's column names (its first row), for the mapping form."""
    with open_table(path, what=WHAT, limits=limits) as table:
        return list(table.header)


def guess(header: list[str]) -> list[str]:
    """A field for each column whose name suggests one ("" for none), each field once."""
    taken: set[str] = set()
    out = []
    for name in header:
        key = "".join(ch for ch in name.lower() if ch.isalnum())
        hit = next((f for f, keys in _GUESSES.items() if key in keys and f not in taken), "")
        if hit:
            taken.add(hit)
        out.append(hit)
    return out


@dataclass
class Report:
    rows: int = 0
    # Counted by account (a domain on several rows counts once): the rows not refused.
    updated: int = 0  # accounts whose profile changed
    unchanged: int = 0  # accounts found whose profile already held the file's values
    not_found: int = 0  # domains without an account
    refused: int = 0  # rows not applied, for a bad cell
    refusals: list[dict[str, Any]] = field(default_factory=list)  # line, field, value, reason
    unknown: list[dict[str, Any]] = field(default_factory=list)  # line, domain
    fields: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "notFound": self.not_found,
            "refused": self.refused,
            "refusals": self.refusals,
            "unknown": self.unknown,
            "fields": self.fields,
        }


def check_mapping(header: list[str], mapping: dict[int, str]) -> None:
    """Each target once, domain among them, every column in the file."""
    for column, target in mapping.items():
        if not 0 <= column < len(header):
            raise BadRequest(f"mapping: the file has no column {column + 1}")
        if target not in TARGETS:
            raise BadRequest(f"mapping: '{target}' is not a profile field")
    targets = list(mapping.values())
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise BadRequest(f"mapping: {', '.join(twice)} is mapped from more than one column")
    if DOMAIN not in targets:
        raise BadRequest("mapping: choose the column that holds each account's domain")
    if len(targets) == 1:
        raise BadRequest("mapping: choose at least one profile field to fill")


def apply_file(
    engine: Engine,
    ws: int,
    path: Path,
    mapping: dict[int, str],
    *,
    limits: FileLimits,
    expected_header: list[str] | None = None,
) -> Report:
    """Fill the profile of existing accounts from the file's rows (see the module doc).

    `expected_header`: the columns the mapping was chosen for; a file whose columns
    differ is refused rather than read under a mapping meant for another.
    """
    with open_table(path, what=WHAT, limits=limits) as table:
        header = list(table.header)
        if expected_header is not None and header != expected_header:
            raise BadRequest(
                "file: its columns are not the ones the mapping was chosen for; "
                "upload it again and choose the mapping anew"
            )
        check_mapping(header, mapping)
        domain_at = next(c for c, t in mapping.items() if t == DOMAIN)
        fields = [(c, t) for c, t in sorted(mapping.items()) if t != DOMAIN]
        columns = tuple(PROFILE_FIELDS[t] for _, t in fields)
        report = Report(fields=[t for _, t in fields])
        pending: dict[str, tuple[int, list[Any]]] = {}  # domain -> (line, values)
        for line, cells in table.rows():
            if all(c is None or not str(c).strip() for c in cells):
                continue  # a spreadsheet's row of empty cells says nothing
            report.rows += 1
            raw = cells[domain_at] if domain_at < len(cells) else None
            text = "" if raw is None else str(raw).strip()
            domain = try_normalise_domain(text) if text else None
            if domain is None:
                reason = "is empty" if not text else "is not a domain name"
                _refuse(report, line, DOMAIN, text, f"{DOMAIN} {reason}")
                continue
            values: list[Any] = []
            bad = False
            for column, target in fields:
                cell = cells[column] if column < len(cells) else None
                try:
                    values.append(read_cell(target, cell))
                except BadCell as exc:
                    _refuse(report, line, target, cell, str(exc))
                    bad = True
                    break
            if bad:
                continue
            previous = pending.get(domain)
            if previous is not None:
                values = [
                    v if v is not None else p for v, p in zip(values, previous[1], strict=True)
                ]
            pending[domain] = (line, values)
            if len(pending) >= SLICE:
                _write(engine, ws, columns, pending, report)
                pending = {}
        _write(engine, ws, columns, pending, report)
    return report


def _refuse(report: Report, line: int, target: str, value: Any, reason: str) -> None:
    report.refused += 1
    if len(report.refusals) < LISTED:
        shown = "" if value is None else str(value)
        report.refusals.append(
            {"line": line, "field": target, "value": shown[:200], "reason": reason}
        )


def _write(
    engine: Engine,
    ws: int,
    columns: tuple[str, ...],
    pending: dict[str, tuple[int, list[Any]]],
    report: Report,
) -> None:
    if not pending:
        return
    with write_tx(engine) as conn:
        clock = tick(conn, ws)  # first, as every account write takes it
        found = repo.ids_by_domains(conn, ws, pending)
        rows = [(d, *values) for d, (_line, values) in pending.items() if d in found]
        changed = set(repo.set_profiles(conn, ws, columns, rows, clock, only_unset=False))
    for domain, (line, _values) in pending.items():
        if domain in report.seen:
            continue  # counted in an earlier slice
        report.seen.add(domain)
        if domain not in found:
            report.not_found += 1
            if len(report.unknown) < LISTED:
                report.unknown.append({"line": line, "domain": domain})
        elif domain in changed:
            report.updated += 1
        else:
            report.unchanged += 1
