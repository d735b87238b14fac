"""Commands that bring signals in: file imports, vendor pulls, connections, rejects, settings."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import typer

from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    fail,
    file_progress,
    intently_errors,
    out_console,
    print_json,
    print_report,
    read_json_file,
    workspace_id,
)
from intently.cli.website import website_app
from intently.ingest.connections import describe, set_connection
from intently.ingest.files import FileLimits
from intently.kit.csvout import CsvWriter
from intently.kit.timefmt import format_ms
from intently.kit.validation import validate
from intently.settings import get_settings
from intently.signals.schemas import CustomSourceIn
from intently.signals.service import (
    get_source_settings,
    list_sources,
    public_reject,
    put_source_settings,
    register_source,
)
from intently.signals.store import iter_rejects


def _vendor(provider: str) -> Any:
    """The vendor's importer and puller module, loaded when a command uses it: the three
    of them would add about 0.4 s to the start of every `intently` command."""
    from intently.ingest import bombora, g2, linkedin

    return {"bombora": bombora, "g2": g2, "linkedin": linkedin}[provider]


import_app = typer.Typer(help="Import a vendor file (CSV, or .csv.gz).", no_args_is_help=True)
pull_app = typer.Typer(help="Pull from a vendor API now (the worker also does it on schedule).",
                       no_args_is_help=True)  # fmt: skip
connections_app = typer.Typer(help="Vendor API connections (credentials are sealed).",
                              no_args_is_help=True)  # fmt: skip
rejects_app = typer.Typer(help="Rows and events that could not be used.", no_args_is_help=True)
sources_app = typer.Typer(help="Signal sources and their settings.", no_args_is_help=True)
linkedin_app = typer.Typer(help="LinkedIn organization mapping.", no_args_is_help=True)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)
FileArg = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The file.")


def _run_import(module: Any, label: str, path: Path, workspace: str | None, **options: Any) -> None:
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors(), file_progress(f"{label} {path.name}") as progress:
        limits = FileLimits.of(get_settings())
        report = module.import_file(eng, ws, path, on_progress=progress, limits=limits, **options)
    print_report(report)
    if report.status != "done":
        raise typer.Exit(1)


@import_app.command("bombora")
def import_bombora(
    file: Path = FileArg,
    workspace: str | None = Workspace,
    week: str | None = typer.Option(
        None,
        help="The week the file is for (YYYY-MM-DD): needed only when the file has no Week or "
        "Date Stamp column, and used for its rows whose cell is empty.",
    ),
) -> None:
    """Import a Bombora Company Surge file; natural key (domain, topic, week)."""
    week_date = None
    if week is not None:
        try:
            week_date = date.fromisoformat(week)
        except ValueError:
            fail(f"--week '{week}' is not a date (YYYY-MM-DD)")
    _run_import(_vendor("bombora"), "bombora", file, workspace, week=week_date)


@import_app.command("g2")
def import_g2(file: Path = FileArg, workspace: str | None = Workspace) -> None:
    """Import a G2 Buyer Intent export; tags map to signal types by the workspace's tag map."""
    _run_import(_vendor("g2"), "g2", file, workspace)


@import_app.command("linkedin")
def import_linkedin(file: Path = FileArg, workspace: str | None = Workspace) -> None:
    """Import a LinkedIn company engagement export; unmapped organizations become rejects."""
    _run_import(_vendor("linkedin"), "linkedin", file, workspace)


def _pull(provider: str, workspace: str | None) -> None:
    module = _vendor(provider)
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        report = module.pull(eng, ws, settings=get_settings())
    print_report(report)
    if report.status != "done":
        raise typer.Exit(1)


@pull_app.command("bombora")
def pull_bombora(workspace: str | None = Workspace) -> None:
    """Pull the Company Surge report from Bombora's API (60 requests a minute at most)."""
    _pull("bombora", workspace)


@pull_app.command("g2")
def pull_g2(workspace: str | None = Workspace) -> None:
    """Pull G2's buyer-intent event stream from where the last pull stopped."""
    _pull("g2", workspace)


@pull_app.command("linkedin")
def pull_linkedin(workspace: str | None = Workspace) -> None:
    """Pull LinkedIn ad analytics by company (daily), re-reading the trailing window."""
    _pull("linkedin", workspace)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name.strip():
            fail(f"{option} '{v}' is not NAME=VALUE")
        out[name.strip()] = value
    return out


@connections_app.command("set")
def connections_set(
    provider: str = typer.Argument(..., help="bombora, g2 or linkedin."),
    workspace: str | None = Workspace,
    credential: list[str] = typer.Option(
        [], "--credential", "-c", help="NAME=VALUE, sealed (token, username, password, ...)."
    ),
    config: list[str] = typer.Option(
        [], "--config", help="NAME=VALUE, not secret (base_url, account, ...)."
    ),
    enabled: bool | None = typer.Option(None, "--enable/--disable", help="Scheduled pulls."),
) -> None:
    """Create or change a vendor connection. Credentials are never printed back."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        set_connection(
            eng,
            ws,
            provider,
            key=get_settings().credentials_key,
            credentials=_pairs(credential, "--credential") or None,
            config=_pairs(config, "--config") or None,
            enabled=enabled,
        )
    out_console.print(f"connection '{provider}' saved")


@connections_app.command("list")
def connections_list(workspace: str | None = Workspace) -> None:
    """Connections with their config and last pull (never their credentials)."""
    eng = engine()
    for c in describe(eng, workspace_id(eng, workspace)):
        last = format_ms(c["last_run_at"]) if c["last_run_at"] else "never"
        out_console.print(
            f"{c['provider']}: {'enabled' if c['enabled'] else 'disabled'}, last pull {last} "
            f"({c['last_status'] or '-'}{': ' + c['last_error'] if c['last_error'] else ''}), "
            f"config {json.dumps(c['config'])}",
            highlight=False,
        )


_REJECT_COLUMNS = ("rejectId", "runId", "source", "line", "reason", "detail", "ref", "status",
                   "createdAt", "record")  # fmt: skip


@rejects_app.command("list")
def rejects_list(
    workspace: str | None = Workspace,
    source: str | None = typer.Option(None, help="Only this source."),
    reason: str | None = typer.Option(None, help="Only this reason."),
    run: str | None = typer.Option(None, help="Only this run id."),
    status: str = typer.Option("open", help="open, reapplied or all."),
    limit: int = typer.Option(50, min=1, help="At most this many."),
) -> None:
    """Rejects, oldest first (in the order they were read)."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    shown = 0
    for row in iter_rejects(
        eng, ws, source=source, reason=reason, run_id=run,
        status=None if status == "all" else status,
    ):  # fmt: skip
        r = public_reject(row)
        where = f"line {r['line']}" if r["line"] is not None else "event"
        out_console.print(
            f"{r['rejectId']} {r['source']} {where}: {r['reason']}: {r['detail']}",
            highlight=False,
        )
        shown += 1
        if shown >= limit:
            break
    if shown == 0:
        out_console.print("no rejects")


@rejects_app.command("export")
def rejects_export(
    out: Path = typer.Argument(..., help="CSV file to write ('-' for standard output)."),
    workspace: str | None = Workspace,
    source: str | None = typer.Option(None, help="Only this source."),
    reason: str | None = typer.Option(None, help="Only this reason."),
    run: str | None = typer.Option(None, help="Only this run id."),
    status: str = typer.Option("open", help="open, reapplied or all."),
) -> None:
    """Every matching reject as CSV (the original record as a JSON column)."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    fh = sys.stdout if str(out) == "-" else open(out, "w", newline="", encoding="utf-8")  # noqa: SIM115
    n = 0
    try:
        # Written as given: a reject is read for exactly what arrived.
        writer = CsvWriter(fh, defuse=False)
        writer.writerow(_REJECT_COLUMNS)
        for row in iter_rejects(
            eng, ws, source=source, reason=reason, run_id=run,
            status=None if status == "all" else status,
        ):  # fmt: skip
            r = public_reject(row)
            r["record"] = json.dumps(r["record"], ensure_ascii=False)
            writer.writerow(["" if r[c] is None else r[c] for c in _REJECT_COLUMNS])
            n += 1
    finally:
        if fh is not sys.stdout:
            fh.close()
    if fh is not sys.stdout:
        out_console.print(f"{n:,} rejects written to {out}")


@sources_app.command("list")
def sources_list(workspace: str | None = Workspace) -> None:
    """Built-in and custom sources."""
    eng = engine()
    for s in list_sources(eng, workspace_id(eng, workspace)):
        kind = "built-in" if s["builtin"] else "custom"
        types = ", ".join(s["types"]) if s["types"] else "any type"
        out_console.print(f"{s['name']} ({kind}): {types}", highlight=False)


@sources_app.command("register")
def sources_register(name: str, workspace: str | None = Workspace) -> None:
    """Register a custom source for POST /api/v1/signals."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        _, created = register_source(eng, ws, validate(CustomSourceIn, {"name": name}).name)
    out_console.print(f"source '{name}' {'registered' if created else 'was already registered'}")


@sources_app.command("show")
def sources_show(source: str, workspace: str | None = Workspace) -> None:
    """A built-in source's settings as JSON."""
    eng = engine()
    with intently_errors():
        data = get_source_settings(eng, workspace_id(eng, workspace), source)
    print_json(data)


@sources_app.command("set")
def sources_set(
    source: str,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON with the settings."),
    workspace: str | None = Workspace,
) -> None:
    """Change a source's settings from a JSON file (keys not in it keep their value)."""
    body = read_json_file(file)
    if not isinstance(body, dict):
        fail(f"{file} must hold a JSON object")
    eng = engine()
    with intently_errors():
        data = put_source_settings(eng, workspace_id(eng, workspace), source, body)
    print_json(data)


@linkedin_app.command("map")
def linkedin_map(
    org: str = typer.Argument(..., help="Organization URN (urn:li:organization:123) or id."),
    domain: str = typer.Argument(..., help="The company's domain."),
    workspace: str | None = Workspace,
    reapply: bool = typer.Option(True, help="Re-apply the organization's open rejects."),
) -> None:
    """Map a LinkedIn organization to a domain, then re-apply its rejected rows."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        urn = _vendor("linkedin").map_org(eng, ws, org, domain)
        out_console.print(f"{urn} -> {domain}")
        if reapply:
            print_report(_vendor("linkedin").reapply(eng, ws))


@linkedin_app.command("reapply")
def linkedin_reapply(workspace: str | None = Workspace) -> None:
    """Re-apply every open LinkedIn reject whose organization is now mapped."""
    eng = engine()
    with intently_errors():
        print_report(_vendor("linkedin").reapply(eng, workspace_id(eng, workspace)))


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.add_typer(pull_app, name="pull")
    app.add_typer(connections_app, name="connections")
    app.add_typer(rejects_app, name="rejects")
    app.add_typer(sources_app, name="sources")
    app.add_typer(linkedin_app, name="linkedin")
    app.add_typer(website_app, name="website")
