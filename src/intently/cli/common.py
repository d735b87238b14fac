"""What every CLI command shares: the engine, the workspace option, errors, progress, reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import Engine

from intently.auth.tables import workspaces
from intently.kit.db import make_engine, read_tx
from intently.kit.errors import IntentlyError, ValidationFailed
from intently.kit.migrate import migrate
from intently.settings import get_settings

err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

WORKSPACE_HELP = "Workspace name (may be left out when there is exactly one)."


def engine() -> Engine:
    url = get_settings().database_url
    migrate(url)
    return make_engine(url)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error (shown as written: values like "[/x]" are not rich markup) and exit."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def read_json_file(path: Path) -> Any:
    """A JSON file's document, or a one-line error naming the file and the problem."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        fail(f"{path} is not JSON: {exc}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def workspace_id(eng: Engine, name: str | None) -> int:
    """The named workspace, or the only one; fails with a message saying what to pass."""
    with read_tx(eng) as conn:
        if name is not None:
            row = conn.execute(
                select(workspaces.c.id).where(workspaces.c.name == name.strip())
            ).first()
            if row is None:
                fail(f"workspace '{name}' not found")
            return int(row[0])
        rows = conn.execute(select(workspaces.c.id, workspaces.c.name).limit(2)).all()
    if len(rows) == 1:
        return int(rows[0][0])
    if not rows:
        fail("there is no workspace yet: create one with `intently keys generate`")
    fail("there are several workspaces: pass --workspace NAME")


def workspace_names(eng: Engine, limit: int = 20) -> list[str]:
    """The first `limit` workspace names, in name order (for messages that list them)."""
    with read_tx(eng) as conn:
        rows = conn.execute(select(workspaces.c.name).order_by(workspaces.c.name).limit(limit))
        return [str(r[0]) for r in rows]


@contextmanager
def intently_errors() -> Iterator[None]:
    """IntentlyError (bad file, bad setting, unknown id) as a one-line error and exit 2."""
    try:
        yield
    except ValidationFailed as exc:
        problems = [
            f"{e['path']}: {text}" for e in exc.errors for text in e["constraints"].values()
        ]
        fail("; ".join(problems) or exc.custom_message)
    except IntentlyError as exc:
        fail(exc.custom_message)


@contextmanager
def file_progress(label: str) -> Iterator[Callable[[Any, int, int], None]]:
    """A rich progress bar over a file's bytes; yields the on_progress(report, done, total)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    task = progress.add_task(label, total=None, counts="")

    def update(report: Any, done: int, total: int) -> None:
        progress.update(
            task,
            completed=done,
            total=total,
            counts=f"{report.read:,} read, {report.accepted:,} new, "
            f"{report.duplicate:,} dup, {report.rejected:,} rejected",
        )

    with progress:
        yield update


def print_report(report: Any) -> None:
    """An import or pull report: one line per count, reasons indented."""
    d = report.as_dict()
    table = Table(title=f"{d['source']}: {d['label']} ({d['status']})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for name in ("read", "accepted", "updated", "duplicate", "rejected", "skipped"):
        table.add_row(name, f"{d[name]:,}")
        by = d.get(f"{name}ByReason") or {}
        for reason, n in by.items():
            table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("run id", d["runId"])
    out_console.print(table)
    if d.get("error"):
        err_console.print(f"[red]failed:[/red] {d['error']}", highlight=False)
