"""`intently fit show|set|dry-run`: the ICP fit model."""

from __future__ import annotations

from pathlib import Path

import typer

from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    intently_errors,
    print_json,
    read_json_file,
    workspace_id,
)
from intently.fit.service import dry_run, get_model, put_model

fit_app = typer.Typer(
    help="The ICP fit model: rtp_fit_score and the fit x intent grade (versioned per workspace).",
    no_args_is_help=True,
)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)


@fit_app.command("show")
def show(workspace: str | None = Workspace) -> None:
    """Print the active fit model as JSON, with its version (0: the default)."""
    eng = engine()
    print_json(get_model(eng, workspace_id(eng, workspace)))


@fit_app.command("set")
def set_model(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The fit model as JSON."),
    workspace: str | None = Workspace,
) -> None:
    """Replace the fit model with the one in FILE (a new version, applied from the next
    scoring run); every problem named."""
    body = read_json_file(file)
    eng = engine()
    with intently_errors():
        data = put_model(eng, workspace_id(eng, workspace), body)
    print_json(data)


@fit_app.command("dry-run")
def dry_run_command(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help='The proposed fit model as JSON (as `fit set` takes it, or {"model": ...}).',
    ),
    workspace: str | None = Workspace,
) -> None:
    """What the fit model in FILE would change (fit scores, grade moves), nothing saved."""
    body = read_json_file(file)
    if not (isinstance(body, dict) and "model" in body):
        body = {"model": body}
    eng = engine()
    with intently_errors():
        report = dry_run(eng, workspace_id(eng, workspace), body)
    print_json(report)


def register(app: typer.Typer) -> None:
    """`intently fit ...`."""
    app.add_typer(fit_app, name="fit")
