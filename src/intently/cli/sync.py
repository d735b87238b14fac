"""`intently sync push|pull`: a CRM's CSV files to and from any Recotap-compatible API
(Intently or Recotap itself), through `intently.client`."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress

from intently.catalog import ALL_SCORES, COMPUTED_FIT, PROFILE_FIELDS
from intently.cli.common import err_console, fail, out_console
from intently.client import Client, SyncState
from intently.kit.csvout import CsvWriter

sync_app = typer.Typer(
    help="Push CRM records from CSV files, or pull accounts to a CSV file, over the API.",
    no_args_is_help=True,
)

Url = typer.Option(..., "--url", help="The API root, e.g. http://127.0.0.1:8000/api/v1")
Key = typer.Option(..., "--key", envvar="INTENTLY_API_KEY", help="The API key.")

# CSV column -> how the value becomes the API field (columns not named here, and not
# `cf:KEY` custom fields on accounts, are an error: a typo must not drop data silently).
_TEXT = str


def _number(value: str) -> float:
    return float(value)


def _int(value: str) -> int:
    return int(value)


def _count(value: str) -> int | float:
    # "250" and "250.0" are both a head count; 2.5 goes on, for the API to refuse by name.
    number = float(value.replace(",", ""))
    return int(number) if number.is_integer() else number


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(";") if v.strip()]


FIELDS: dict[str, dict[str, Callable[[str], Any]]] = {
    "accounts": {
        "domain": _TEXT,
        "name": _TEXT,
        "externalId": _TEXT,
        "shortName": _TEXT,
        "linkedinUrl": _TEXT,
        "tags": _list,
        # The company profile (spec/api-v1.md "Account profile"); the API checks values.
        "industry": _TEXT,
        "employeeCount": _count,
        "annualRevenue": _number,
        "country": _TEXT,
        "city": _TEXT,
        "logoUrl": _TEXT,
    },
    "deals": {
        "externalDealId": _TEXT,
        "name": _TEXT,
        "amount": _number,
        "stageId": _TEXT,
        "stageLabel": _TEXT,
        "pipelineId": _TEXT,
        "pipelineLabel": _TEXT,
        "startDate": _TEXT,
        "closedDate": _TEXT,
        "ownerName": _TEXT,
        "ownerEmail": _TEXT,
        "ownerId": _TEXT,
        "dealCurrencyCode": _TEXT,
        "accountDomains": _list,
        "accountExternalIds": _list,
    },
    "activities": {
        "externalActivityId": _TEXT,
        "activityType": _TEXT,
        "occurredAt": _TEXT,
        "domain": _TEXT,
        "ownerEmail": _TEXT,
        "ownerName": _TEXT,
        "ownerId": _TEXT,
        "accountName": _TEXT,
        "subject": _TEXT,
        "callTitle": _TEXT,
        "durationMinutes": _number,
        "outcome": _TEXT,
        "direction": _TEXT,
        "openCount": _int,
        "clickCount": _int,
        "replyCount": _int,
        "contactEmails": _list,
    },
}
CUSTOM = "cf:"


def register(app: typer.Typer) -> None:
    app.add_typer(sync_app, name="sync")


def _mapping(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        column, eq, field = pair.partition("=")
        if not eq or not column.strip() or not field.strip():
            fail(f"--map '{pair}' should be CSV_COLUMN=FIELD")
        out[column.strip()] = field.strip()
    return out


def _record(kind: str, row: dict[str, str], line: int) -> dict[str, Any]:
    """One CSV row as an API record; empty cells are left out."""
    fields = FIELDS[kind]
    record: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for field, raw in row.items():
        value = (raw or "").strip()
        if not value:
            continue
        if kind == "accounts" and field.startswith(CUSTOM):
            custom[field[len(CUSTOM) :]] = value
            continue
        try:
            record[field] = fields[field](value)
        except ValueError:
            raise ValueError(f"line {line}: {field} '{value}' is not a number") from None
    if custom:
        record["customFields"] = custom
    if kind == "deals":
        linked = [{"domain": d} for d in record.pop("accountDomains", [])]
        linked += [{"externalId": e} for e in record.pop("accountExternalIds", [])]
        if linked:
            record["associatedAccounts"] = linked
    if kind == "activities":
        record["contacts"] = [{"email": e} for e in record.pop("contactEmails", [])]
    return record


def _rows(path: Path, kind: str, mapping: dict[str, str]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [mapping.get(c, c) for c in reader.fieldnames or []]
        unknown = [
            c
            for c in header
            if c not in FIELDS[kind] and not (kind == "accounts" and c.startswith(CUSTOM))
        ]
        if unknown:
            fail(
                f"{path}: column(s) {', '.join(repr(c) for c in unknown)} are not {kind} fields; "
                f"rename them with --map COLUMN=FIELD (fields: {', '.join(FIELDS[kind])}"
                + (", cf:KEY for custom fields" if kind == "accounts" else "")
                + ")"
            )
        for n, row in enumerate(reader, start=2):
            yield n, {mapping.get(k, k): v for k, v in row.items() if k is not None}


@sync_app.command("push")
def push(
    kind: str = typer.Argument(..., help="accounts, deals or activities"),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A CSV file with a header."),
    url: str = Url,
    key: str = Key,
    mapping: list[str] = typer.Option([], "--map", help="CSV_COLUMN=FIELD, repeatable."),
    upsert: bool = typer.Option(False, help="Accounts: update existing domains."),
    report: Path | None = typer.Option(None, help="Per-row results CSV (default FILE.report.csv)."),
) -> None:
    """Push every row; write one result per row; exit 1 when any row failed."""
    if kind not in FIELDS:
        fail(f"KIND should be accounts, deals or activities; got '{kind}'")
    names = _mapping(mapping)
    lines: list[int] = []
    records: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for line, row in _rows(file, kind, names):
        try:
            records.append(_record(kind, row, line))
            lines.append(line)
        except ValueError as exc:
            bad.append((line, str(exc)))
    report = report or file.with_suffix(".report.csv")
    failed = len(bad)
    with Client(url, key) as api, Progress(console=err_console) as progress:
        task = progress.add_task(f"pushing {kind}", total=len(records))
        push_one = {
            "accounts": lambda batch: api.push_accounts(batch, upsert=upsert),
            "deals": api.push_deals,
            "activities": api.push_activities,
        }[kind]
        size = {"accounts": 100, "deals": 100, "activities": 50}[kind]
        done: list[tuple[int, str, str, str]] = [(line, "failed", "", r) for line, r in bad]
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            for result in push_one(chunk):
                data = result.data or {}
                ident = (
                    data.get("rtp_aid")
                    or data.get("externalDealId")
                    or data.get("externalActivityId")
                    or ""
                )
                reason = result.reason or ""
                if result.error is not None:
                    reason = result.error.custom_message or str(result.error)
                    if result.error.data:
                        reason = f"{reason}: {json.dumps(result.error.data)[:300]}"
                done.append((lines[start + result.index], result.status, ident, reason))
                failed += not result.ok
            progress.advance(task, len(chunk))
    with report.open("w", newline="", encoding="utf-8") as out:
        # Written as given: scripts match the report's lines and reasons to their file.
        writer = CsvWriter(out, defuse=False)
        writer.writerow(["line", "status", "id", "reason"])
        writer.writerows(sorted(done))
    total = len(records) + len(bad)
    out_console.print(
        f"{total - failed:,} of {total:,} rows pushed; {failed:,} failed; report: {report}",
        markup=False,
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)


_BASE_COLUMNS = (
    "rtp_aid",
    "domain",
    "name",
    "externalId",
    "shortName",
    "linkedinUrl",
    "tags",
    "segments",
    *ALL_SCORES,
    "rtp_journey_stage",
    "rtp_last_account_date",
    *(f for f in PROFILE_FIELDS if f != "shortName"),
    *COMPUTED_FIT,
)


@sync_app.command("pull")
def pull(
    kind: str = typer.Argument(..., help="accounts"),
    url: str = Url,
    key: str = Key,
    state: Path = typer.Option(..., help="JSON file keeping the last syncTimestamp."),
    out: Path = typer.Option(..., help="The CSV file to write."),
) -> None:
    """Accounts changed since the state's syncTimestamp (all, the first time), every rtp_
    field and custom field a column. The file is written whole, then the state: stopped
    half-way, the next run repeats the same pull."""
    if kind != "accounts":
        fail(f"KIND should be accounts; got '{kind}'")
    saved = SyncState()
    if state.exists():
        try:
            saved.sync_timestamp = json.loads(state.read_text())["syncTimestamp"]
        except (ValueError, KeyError, TypeError):
            fail(f"{state} is not a sync state file (JSON with syncTimestamp)")
    with Client(url, key) as api, err_console.status("pulling accounts"):
        keys = [f["key"] for f in api.list_custom_fields() if "key" in f]
        items, stamp = api.sync_accounts(saved)
    for item in items:
        for k in item.get("customFields") or {}:
            if k not in keys:
                keys.append(k)
    columns = [*_BASE_COLUMNS, *(CUSTOM + k for k in keys)]
    _atomic_write(out, lambda f: _write_accounts(f, columns, items))
    _atomic_write(state, lambda f: f.write(json.dumps({"syncTimestamp": stamp}) + "\n"))
    out_console.print(
        f"{len(items):,} accounts written to {out}; syncTimestamp {stamp} kept in {state}",
        markup=False,
        highlight=False,
    )


def _write_accounts(f: Any, columns: list[str], items: list[dict[str, Any]]) -> None:
    # The file is for spreadsheets as much as for scripts: no cell may run as a formula.
    writer = CsvWriter(f, defuse=True)
    writer.writerow(columns)
    for item in items:
        custom = item.get("customFields") or {}
        row = []
        for c in columns:
            if c.startswith(CUSTOM):
                value = custom.get(c[len(CUSTOM) :])
            elif c == "tags":
                value = ";".join(item.get("tags") or [])
            elif c == "segments":
                value = ";".join(s.get("name", "") for s in item.get("segments") or [])
            else:
                value = item.get(c)
            if isinstance(value, list | dict):
                value = json.dumps(value)
            row.append("" if value is None else value)
        writer.writerow(row)


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write a temporary file beside `path`, then rename it over: never half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
