"""`intently ip ...`: a workspace's own IP ranges, and what an address resolves to."""

from __future__ import annotations

from pathlib import Path

import typer

from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    fail,
    file_progress,
    intently_errors,
    out_console,
    print_report,
    workspace_id,
)
from intently.ingest.files import FileLimits
from intently.ingest.resolvers import (
    IpResolver,
    Match,
    count_ranges,
    database_paths,
    delete_ranges,
    upload_ranges,
)
from intently.settings import get_settings

ip_app = typer.Typer(
    help="IP ranges a workspace uploads (network,domain[,company]) and IP lookups.",
    no_args_is_help=True,
)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)


@ip_app.command("upload")
def upload(
    file: Path = typer.Argument(..., help="CSV: network,domain[,company]; header optional."),
    workspace: str | None = Workspace,
    replace: bool = typer.Option(
        False, "--replace", help="Remove the ranges not in the file (all or nothing)."
    ),
) -> None:
    """Upload IP ranges: CIDRs, single addresses or start-end ranges, IPv4 and IPv6."""
    if not file.is_file():
        fail(f"{file}: no such file")
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors(), file_progress(f"ip ranges {file.name}") as progress:
        limits = FileLimits.of(get_settings())
        report = upload_ranges(eng, ws, file, replace=replace, on_progress=progress, limits=limits)
    print_report(report)
    out_console.print(
        f"the workspace has {count_ranges(eng, ws):,} ranges", highlight=False, soft_wrap=True
    )
    if report.status != "done":
        raise typer.Exit(1)


@ip_app.command("lookup")
def lookup(
    ip: str = typer.Argument(..., help="An IPv4 or IPv6 address."),
    workspace: str | None = Workspace,
) -> None:
    """What a visit from IP resolves to: the workspace's ranges, then the IP databases."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        resolver = IpResolver(eng, database_paths(get_settings().ip_databases))
    try:
        found = resolver.explain(ws, ip.strip())
    finally:
        resolver.close()
    if isinstance(found, Match):
        company = f" ({found.company})" if found.company else ""
        out_console.print(
            f"{ip} -> {found.domain}{company}: method {found.method}, provider "
            f"{found.provider}, confidence {found.confidence:.2f}",
            highlight=False,
            soft_wrap=True,
        )
        return
    if found.reason == "invalid":
        fail(f"'{ip}' is not an IPv4 or IPv6 address")
    out_console.print(
        f"{ip}: no match ({found.reason}: {found.detail})", highlight=False, soft_wrap=True
    )
    if found.reason == "error":
        raise typer.Exit(1)  # a database could not read its record: not a plain "no match"


@ip_app.command("clear")
def clear(workspace: str | None = Workspace) -> None:
    """Remove every IP range of the workspace."""
    eng = engine()
    removed = delete_ranges(eng, workspace_id(eng, workspace))
    out_console.print(f"{removed:,} ranges removed", highlight=False, soft_wrap=True)
