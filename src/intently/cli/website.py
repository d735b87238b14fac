"""`intently website ...`: the tracking snippet, the write key, and a workspace's IP ranges."""

from __future__ import annotations

import typer

website_app = typer.Typer(
    help="The website snippet, write key and IP ranges.", no_args_is_help=True
)
