"""Filling a static segment from a CSV of domains (API upload and `intently segments add`).

The domain column is the one headed domain, website or url (any case); without such a
header the first column is read and the first row is data. Rows go in slices of 1,000,
each in its own transaction: a slice that is written stays written, and the report says
how far it got, so nothing accepted is lost or half-written if a later slice fails.

A domain is counted once, at its first row, wherever the slices fall: later rows of the
same (normalised) domain count as `duplicates`, so that rows = matched + unknownCount +
invalidCount + duplicates.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.engine import Engine

from intently.accounts import repository as accounts_repo
from intently.kit.db import read_tx, tick, write_tx
from intently.kit.domains import InvalidDomain, normalise_domain
from intently.kit.errors import BadRequest
from intently.segments import repository as repo
from intently.segments import service

DOMAIN_HEADERS = ("domain", "website", "url", "companydomain", "accountdomain")
SLICE = 1000
LISTED = 1000  # unknown and invalid values listed in the report; the counts are complete


def domain_rows(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, raw value) for every data row of a CSV, blank rows skipped."""
    reader = csv.reader(lines)
    column = 0
    first = True
    end = 0
    for row in reader:
        # A quoted value may span lines: a row is reported at the line it starts on.
        line, end = end + 1, reader.line_num
        if first:
            first = False
            keys = ["".join(ch for ch in cell.strip().lower() if ch.isalnum()) for cell in row]
            found = next((i for i, k in enumerate(keys) if k in DOMAIN_HEADERS), None)
            if found is not None:
                column = found
                continue
        value = row[column].strip() if len(row) > column else ""
        if not value and not any(cell.strip() for cell in row):
            continue
        yield line, value


def add_from_csv(
    engine: Engine, ws: int, sid: str, rows: Iterable[tuple[int, str]]
) -> dict[str, Any]:
    """Add the accounts of these domains to a static, active or draft segment."""
    with read_tx(engine) as conn:
        seg = service.require_static_open(conn, ws, sid)
    report: dict[str, Any] = {
        "rows": 0,
        "matched": 0,
        "added": 0,
        "alreadyMembers": 0,
        "unknownCount": 0,
        "invalidCount": 0,
        "duplicates": 0,
        "unknown": [],
        "invalid": [],
    }
    batch: list[tuple[int, str]] = []
    seen: set[str] = set()  # domains of earlier slices

    def flush() -> None:
        wanted: dict[str, str] = {}
        for line, raw in batch:
            try:
                domain = normalise_domain(raw)
            except InvalidDomain:
                report["invalidCount"] += 1
                if len(report["invalid"]) < LISTED:
                    report["invalid"].append(
                        {"line": line, "value": raw, "reason": "domain must be a valid domain name"}
                    )
                continue
            if domain in seen or domain in wanted:
                report["duplicates"] += 1
                continue
            wanted[domain] = raw
        with write_tx(engine) as conn:
            clock = tick(conn, ws)
            current = service.require_static_open(conn, ws, sid)
            found = accounts_repo.ids_by_domains(conn, ws, wanted)
            added = repo.add_members(conn, ws, current, list(found.values()), clock)
        report["matched"] += len(found)
        report["added"] += added
        report["alreadyMembers"] += len(found) - added
        for domain, raw in wanted.items():
            if domain not in found:
                report["unknownCount"] += 1
                if len(report["unknown"]) < LISTED:
                    report["unknown"].append(raw)
        seen.update(wanted)
        batch.clear()

    for item in rows:
        report["rows"] += 1
        batch.append(item)
        if len(batch) >= SLICE:
            flush()
    if batch:
        flush()
    if report["rows"] == 0:
        raise BadRequest("The CSV holds no domains")
    report["segmentId"] = seg["id"]
    return report
