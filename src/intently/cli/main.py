"""`intently`: serve, migrate, keys. Scripts rely on these names and outputs; keep them stable."""

from __future__ import annotations

import sys

import typer
from sqlalchemy.engine import Engine

from intently.auth import repository as auth_repo
from intently.auth.service import generate_key, set_api_access, set_rate_limit
from intently.cli import demo, fit, ingest, ops, scoring, segments, sync, users, webhooks
from intently.cli.common import workspace_names
from intently.cli.ip import ip_app
from intently.kit.db import make_engine, read_tx
from intently.kit.errors import IntentlyError
from intently.kit.migrate import migrate as run_migrations
from intently.settings import get_settings

app = typer.Typer(
    help="Intently: self-hostable account-based marketing with a Recotap-compatible API.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="API keys: one active key per user.", no_args_is_help=True)
workspaces_app = typer.Typer(help="Workspaces and their settings.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(workspaces_app, name="workspaces")
ingest.register(app)
scoring.register(app)
fit.register(app)
app.add_typer(ip_app, name="ip")
webhooks.register(app)
segments.register(app)
users.register(app)
demo.register(app)
sync.register(app)
ops.register(app)


def _engine() -> Engine:
    return make_engine(get_settings().database_url)


def workspace_id_by_name(eng: Engine, name: str) -> int | None:
    with read_tx(eng) as conn:
        return auth_repo.workspace_id_by_name(conn, name)


@app.command()
def migrate() -> None:
    """Bring the database (INTENTLY_DATABASE_URL) to the newest schema."""
    run_migrations(get_settings().database_url)
    typer.echo("database is up to date")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Server processes."),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Run the job worker (scheduled pulls) in this process."
    ),
) -> None:
    """Migrate the database, then serve the API, docs and health check (and run the worker).

    SIGTERM stops taking connections, finishes the requests in flight (up to
    INTENTLY_SHUTDOWN_GRACE_S), writes the collector's buffer and the running jobs, then exits.
    """
    # Loaded by the commands that serve only: the server (uvicorn, the dispatcher) would
    # add about a second to every other command's start.
    from intently import serving

    serving.serve(host=host, port=port, workers=workers, worker=worker)


@app.command("worker")
def worker_command(
    threads: int = typer.Option(2, min=1, help="Jobs run at once."),
) -> None:
    """Run the job worker alone (PostgreSQL only); any number may run.

    SIGTERM lets the running jobs finish (up to INTENTLY_SHUTDOWN_GRACE_S); Ctrl-C stops now.
    """
    from intently import serving  # see serve()

    serving.run_worker(threads)


@keys_app.command("generate")
def keys_generate(
    workspace: str = typer.Option(
        ..., help="Workspace name; created when it is the first, else with --create-workspace."
    ),
    email: str = typer.Option(..., help="User email; created when missing."),
    create_workspace: bool = typer.Option(
        False, "--create-workspace", help="Create the workspace when it does not exist."
    ),
) -> None:
    """Generate a user's API key (revoking the old one). The key is the last line printed."""
    run_migrations(get_settings().database_url)
    eng = _engine()
    name = workspace.strip()
    existing = workspace_names(eng)
    # A key for a misspelt or guessed name would make a second, empty workspace whose
    # pushes never show in the one the dashboard shows (the demo's, say): only the very
    # first workspace is made unasked.
    if existing and name and not create_workspace and workspace_id_by_name(eng, name) is None:
        shown = ", ".join(f"'{n}'" for n in existing)
        more = " (and more)" if len(existing) == 20 else ""
        typer.echo(
            f"error: workspace '{name}' does not exist; the workspaces are {shown}{more}. "
            "Pass --create-workspace to make a new, empty one (its data is separate).",
            err=True,
        )
        raise typer.Exit(2)
    try:
        key = generate_key(eng, workspace, email)
    except IntentlyError as exc:
        typer.echo(f"error: {exc.custom_message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"API key for {email.strip().lower()} in workspace '{workspace.strip()}'.", err=True)
    typer.echo("It is shown once; any earlier key of this user no longer works.", err=True)
    sys.stdout.write(key + "\n")


@workspaces_app.command("api-access")
def workspaces_api_access(
    workspace: str = typer.Option(..., help="Workspace name."),
    enabled: bool = typer.Option(..., "--on/--off", help="Switch External API access."),
) -> None:
    """Switch a workspace's External API access on or off."""
    try:
        set_api_access(_engine(), workspace, enabled)
    except IntentlyError as exc:
        typer.echo(f"error: {exc.custom_message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"API access for '{workspace}' is {'on' if enabled else 'off'}")


@workspaces_app.command("rate-limit")
def workspaces_rate_limit(
    workspace: str = typer.Option(..., help="Workspace name."),
    per_minute: int | None = typer.Option(
        None, min=0, help="Requests a minute per API key (0: no limit)."
    ),
    burst: int | None = typer.Option(None, min=1, help="Requests at once (default: per minute)."),
    default: bool = typer.Option(False, "--default", help="Back to the operator's default."),
) -> None:
    """Set a workspace's own API rate limit per key, or put it back to the default."""
    if default == (per_minute is not None):
        typer.echo("error: give either --per-minute (and --burst) or --default", err=True)
        raise typer.Exit(2)
    try:
        set_rate_limit(_engine(), workspace, per_minute, burst)
    except IntentlyError as exc:
        typer.echo(f"error: {exc.custom_message}", err=True)
        raise typer.Exit(2) from None
    if per_minute is None:
        typer.echo(f"'{workspace}' uses the default API rate limit")
    elif per_minute == 0:
        typer.echo(f"'{workspace}' has no API rate limit")
    else:
        typer.echo(
            f"'{workspace}': {per_minute} requests a minute per API key, "
            f"bursts of {burst or per_minute}"
        )


def main() -> None:
    app()
