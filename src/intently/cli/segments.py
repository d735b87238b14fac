"""`intently segments ...` (create, list, add a CSV of domains, preview, refresh) and
`intently events ...` (the change log and score thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import typer
from sqlalchemy import select
from sqlalchemy.engine import Engine

from intently.catalog import ACCOUNT_SCORE
from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    fail,
    intently_errors,
    out_console,
    print_json,
    read_json_file,
    workspace_id,
)
from intently.events import service as events_service
from intently.events.schemas import ThresholdsIn
from intently.kit.db import read_tx
from intently.kit.ids import is_id
from intently.kit.validation import validate
from intently.segments import service as segments_service
from intently.segments import upload
from intently.segments.schemas import PreviewIn, SegmentIn
from intently.segments.tables import segments as sg

segments_app = typer.Typer(help="Static and dynamic segments.", no_args_is_help=True)
events_app = typer.Typer(help="Change events and score thresholds.", no_args_is_help=True)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)

# Output goes through rich: names, values and paths from the user are printed with
# markup off (fail() escapes), so "[/x]" in a CSV or a segment name is shown, not parsed.


def register(app: typer.Typer) -> None:
    app.add_typer(segments_app, name="segments")
    app.add_typer(events_app, name="events")


def _segment_id(eng: Engine, ws: int, ref: str) -> str:
    """A segment id, or the id of the one segment with this name."""
    if is_id(ref):
        return ref
    with read_tx(eng) as conn:
        ids = list(
            conn.execute(
                select(sg.c.id).where(sg.c.workspace_id == ws, sg.c.name == ref.strip())
            ).scalars()
        )
    if not ids:
        fail(f"segment '{ref}' not found (give its id or its exact name)")
    if len(ids) > 1:
        fail(f"several segments are named '{ref}': give the id ({', '.join(ids)})")
    return ids[0]


@segments_app.command("list")
def list_segments(workspace: str | None = Workspace) -> None:
    """Every segment: id, type, status, members, name."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    codec_free = segments_service.all_segments(eng, ws)
    for seg in codec_free:
        out_console.print(
            f"{seg['segmentId']}  {seg['type']:<7}  {seg['status']:<8}  "
            f"{seg['memberCount']:>9,}  {seg['name']}",
            highlight=False,
            markup=False,
        )


@segments_app.command("create")
def create(
    name: str = typer.Argument(..., help="The segment's name."),
    rules: Path | None = typer.Option(
        None, "--rules", exists=True, dir_okay=False, help="A rule tree (JSON): a dynamic segment."
    ),
    status: str = typer.Option("active", "--status", help="active, draft or archived."),
    workspace: str | None = Workspace,
) -> None:
    """Create a static segment, or with --rules a dynamic one (its members are computed)."""
    body = {"name": name, "status": status, "type": "static"}
    if rules is not None:
        body |= {"type": "dynamic", "rules": read_json_file(rules)}
    eng = engine()
    with intently_errors():
        data = segments_service.create(eng, workspace_id(eng, workspace), validate(SegmentIn, body))
    print_json(data)


@segments_app.command("add")
def add(
    segment: str = typer.Argument(..., help="Segment id or name (a static segment)."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV of domains."),
    workspace: str | None = Workspace,
) -> None:
    """Add the accounts of a CSV of domains to a static segment (column domain, website or
    url, else the first); reports matched, unknown and invalid domains."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    sid = _segment_id(eng, ws, segment)
    try:
        handle = open(file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot open {file}: {exc.strerror}")
    with handle, intently_errors():
        try:
            report = upload.add_from_csv(eng, ws, sid, upload.domain_rows(handle))
        except UnicodeDecodeError:
            fail(f"{file} is not UTF-8 text")
    out_console.print(
        f"{report['rows']:,} rows: {report['matched']:,} matched "
        f"({report['added']:,} added, {report['alreadyMembers']:,} already members), "
        f"{report['unknownCount']:,} unknown, {report['invalidCount']:,} invalid, "
        f"{report['duplicates']:,} duplicates",
        highlight=False,
        markup=False,
    )
    for bad in report["invalid"]:
        out_console.print(
            f"  line {bad['line']}: invalid '{bad['value']}': {bad['reason']}",
            highlight=False,
            markup=False,
        )
    for domain in report["unknown"]:
        out_console.print(f"  unknown: {domain}", highlight=False, markup=False)


@segments_app.command("preview")
def preview(
    rules: Path = typer.Argument(..., exists=True, dir_okay=False, help="A rule tree (JSON)."),
    sample: int = typer.Option(10, "--sample", min=0, max=100),
    workspace: str | None = Workspace,
) -> None:
    """How many accounts a rule matches now, and the first of them (nothing is saved)."""
    eng = engine()
    body = {"rules": read_json_file(rules), "sampleSize": sample}
    with intently_errors():
        data = segments_service.preview(
            eng, workspace_id(eng, workspace), validate(PreviewIn, body)
        )
    print_json(
        {"count": data["count"], "sample": msgspec.json.decode(msgspec.json.encode(data["sample"]))}
    )


@segments_app.command("refresh")
def refresh(
    segment: str | None = typer.Argument(None, help="One dynamic segment (id or name)."),
    workspace: str | None = Workspace,
) -> None:
    """Recompute dynamic segment membership now (one, or every live one)."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    sid = _segment_id(eng, ws, segment) if segment is not None else None
    with intently_errors():
        data = segments_service.refresh(eng, ws, sid)
    for s in data["segments"]:
        out_console.print(
            f"{s['segmentId']}: {s['entered']:,} entered, {s['exited']:,} exited "
            f"({s['seconds']:.2f} s)",
            highlight=False,
            markup=False,
        )


@events_app.command("list")
def list_events(
    type_: str | None = typer.Option(None, "--type", help="Comma list of event types."),
    since: str | None = typer.Option(None, "--since", help="ISO 8601 date or time."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    workspace: str | None = Workspace,
) -> None:
    """The newest change events (oldest first within the page), as JSON lines."""
    eng = engine()
    with intently_errors():
        rows = events_service.recent(
            eng, workspace_id(eng, workspace), types=type_, since=since, limit=limit
        )
    for row in rows:
        typer.echo(json.dumps(row))


@events_app.command("thresholds")
def thresholds(
    set_: list[str] = typer.Option(
        None, "--set", help=f"SCORE=VALUE, e.g. {ACCOUNT_SCORE}=60 (repeat; replaces all)."
    ),
    clear: bool = typer.Option(False, "--clear", help="Remove every threshold."),
    workspace: str | None = Workspace,
) -> None:
    """Show, set or clear the score thresholds whose crossing records an event."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    if set_ or clear:
        items = []
        for item in set_ or []:
            score, sep, value = item.partition("=")
            if not sep:
                fail(f"--set '{item}' must be SCORE=VALUE")
            try:
                items.append({"score": score.strip(), "value": float(value)})
            except ValueError:
                fail(f"--set '{item}': '{value}' is not a number")
        with intently_errors():
            checked = [
                t.model_dump() for t in validate(ThresholdsIn, {"thresholds": items}).thresholds
            ]
            print_json(events_service.put_thresholds(eng, ws, checked))
        return
    print_json(events_service.get_thresholds(eng, ws))
