"""`intently demo`: a demo workspace with a synthetic world, scored, then served."""

from __future__ import annotations

import shlex
import threading
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from intently.auth.users import create_user, list_users
from intently.cli.common import (
    engine,
    err_console,
    fail,
    intently_errors,
    out_console,
    workspace_id,
)
from intently.demo.world import DEFAULT_SEED
from intently.scoring.whatif import backfill_history

if TYPE_CHECKING:
    from intently.demo.service import DemoSummary

ADMIN_EMAIL = "admin@demo.example.com"


HISTORY_DAYS = 91
HISTORY_EVERY = 7


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    workspace: str = typer.Option("Demo", "--workspace", "-w", help="The demo workspace's name."),
    accounts: int = typer.Option(5000, min=1, max=200_000, help="Accounts in the synthetic world."),
    seed: int = typer.Option(DEFAULT_SEED, help="Random seed: the same seed, the same world."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the dashboard after."),
    reset: bool = typer.Option(
        False, "--reset", help="Delete the demo workspace's data and build it again."
    ),
) -> None:
    """Build a demo workspace (accounts, 90 days of intent, deals), score it and serve it.

    An existing demo workspace is left as it is (--reset rebuilds it); its admin gets a
    new password every time. A workspace with data that is not a demo is refused.
    """
    # Loaded when the command runs: the demo world and the server would add about a
    # second to the start of every other command.
    from intently import serving
    from intently.demo.service import workspace_has_data

    name = workspace.strip()
    if not name:
        fail("--workspace should not be empty")
    eng = engine()
    built: int | None = None
    with intently_errors():
        if workspace_has_data(eng, name) and not reset:
            emails = {u.email for u in list_users(eng, workspace_id(eng, name))}
            if ADMIN_EMAIL not in emails:
                fail(
                    f"workspace '{name}' holds data and is not a demo workspace; "
                    "choose another --workspace (or --reset to delete its data)"
                )
            err_console.print(
                f"Workspace '{name}' already holds the demo; left as it is (--reset rebuilds it).",
                highlight=False,
                markup=False,
            )
        else:
            summary = _build(eng, name, accounts, seed, reset)
            _print_summary(summary)
            built = summary.workspace_id
        user = create_user(eng, name, ADMIN_EMAIL, password=None, role="admin")
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    out_console.print(f"Dashboard: http://{shown}:{port}/app/", markup=False, highlight=False)
    out_console.print(f"Email:     {user.email}", markup=False, highlight=False)
    out_console.print(f"Password:  {user.password}", markup=False, highlight=False)
    err_console.print(
        "(shown once; the admin gets a new password each time `intently demo` runs)",
        markup=False,
        highlight=False,
    )
    # The demo's own workspace: a key made for another name would push into a second,
    # empty workspace that this dashboard never shows.
    keys = shlex.join(
        ["intently", "keys", "generate", "--workspace", name, "--email", "you@example.com"]
    )
    out_console.print(f"API key:   {keys}", markup=False, highlight=False)
    if built is not None:
        _history(eng, built, background=serve)
    if serve:
        serving.serve(host=host, port=port, workers=1, worker=True)


def _history(eng: Engine, ws: int, *, background: bool) -> None:
    """Score history for the world's 90 days (weekly points), so account charts have a
    past. Serving, it fills in behind the server (the pages work meanwhile); else now."""

    def fill() -> None:
        backfill_history(eng, ws, days=HISTORY_DAYS, every=HISTORY_EVERY)

    if background:
        err_console.print(
            f"Score history for the last {HISTORY_DAYS} days fills in behind the server "
            "(about half a minute).",
            markup=False,
            highlight=False,
        )
        threading.Thread(target=fill, name="demo-history", daemon=True).start()
        return
    with err_console.status("Filling in score history"):
        fill()


def _build(eng: Engine, name: str, accounts: int, seed: int, reset: bool) -> DemoSummary:
    """The build, under one progress bar for all its steps."""
    from intently.demo.service import build_demo  # see demo()

    progress = Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    task = progress.add_task("Building the demo", total=1000)

    def update(what: str, fraction: float) -> None:
        progress.update(task, description=what, completed=int(fraction * 1000))

    with progress:
        return build_demo(eng, name, accounts, seed, update, reset=reset)


def _print_summary(s: DemoSummary) -> None:
    table = Table(
        title=f"Demo workspace '{s.workspace_name}' ({s.seconds:.1f} s)", show_header=False
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("accounts", f"{s.accounts:,}")
    table.add_row("deals", f"{s.deals:,}")
    table.add_row("sales activities", f"{s.activities:,}")
    table.add_row("contacts", f"{s.contacts:,}")
    table.add_row("website events", f"{s.web_events:,}")
    for source, n in s.signals.items():
        table.add_row(f"{source} signals", f"{n:,}")
    table.add_row("segments", f"{s.segments:,}")
    order = ("Customer", "Opportunity", "Decision", "Consideration", "Engaged", "Aware", "Unaware")
    for stage in sorted(s.stages, key=lambda x: order.index(x) if x in order else len(order)):
        table.add_row(f"  {stage}", f"{s.stages[stage]:,}")
    err_console.print(table)
