"""`intently website ...`: the tracking snippet, the write key, and dropping old raw IPs.

(A workspace's IP ranges are uploaded with `intently ip upload`.)
"""

from __future__ import annotations

import sys

import typer

from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    err_console,
    out_console,
    workspace_id,
)
from intently.ingest.writekeys import KEY_CACHE_SECONDS, get_write_key, rotate_write_key
from intently.ingest.writekeys import snippet as make_snippet

website_app = typer.Typer(
    help="The website snippet, write key and raw IP retention.", no_args_is_help=True
)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)


@website_app.command("write-key")
def write_key(
    workspace: str | None = Workspace,
    rotate: bool = typer.Option(
        False, "--rotate", help="Revoke the current key and make a new one."
    ),
) -> None:
    """Print the workspace's public write key (made on first use). The key is the last line."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    if rotate:
        key = rotate_write_key(eng, ws)
        err_console.print(
            f"New write key; the old one stops working within {KEY_CACHE_SECONDS:.0f} seconds. "
            "Update the snippet on your site.",
            highlight=False,
        )
    else:
        key = get_write_key(eng, ws)
    sys.stdout.write(key + "\n")


@website_app.command("snippet")
def snippet(
    workspace: str | None = Workspace,
    url: str = typer.Option(
        "http://localhost:8000", "--url", help="Where visitors' browsers reach this server."
    ),
) -> None:
    """Print the <script> tag to paste into every page of the website."""
    eng = engine()
    sys.stdout.write(make_snippet(url, get_write_key(eng, workspace_id(eng, workspace))) + "\n")


@website_app.command("purge-ips")
def purge_ips(
    workspace: str | None = Workspace,
    all_workspaces: bool = typer.Option(False, "--all", help="Every workspace."),
) -> None:
    """Drop raw IP addresses older than the workspace's ipRetentionDays (the server does it
    every few minutes too)."""
    # The collector (and its buffer) is loaded by this command only, off everyone's start-up.
    from intently.ingest.collector import purge_ips

    eng = engine()
    ws = None if all_workspaces else workspace_id(eng, workspace)
    n = purge_ips(eng, ws)
    out_console.print(f"{n:,} IP addresses dropped")
