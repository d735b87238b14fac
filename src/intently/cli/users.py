"""`intently users ...`: dashboard users (the first admin is made here)."""

from __future__ import annotations

import sys

import typer

from intently.auth.users import create_user
from intently.cli.common import engine, fail, out_console
from intently.kit.errors import IntentlyError

users_app = typer.Typer(help="Dashboard users: email, password and role.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    workspace: str = typer.Option(
        ..., "--workspace", "-w", help="Workspace; created when missing."
    ),
    email: str = typer.Option(..., help="The user's email (their sign-in name)."),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role (else member)."),
    generate: bool = typer.Option(
        False, "--generate-password", help="Generate the password instead of asking for one."
    ),
) -> None:
    """Create a dashboard user, or reset an existing user's password and role.

    Asks for the password on a terminal (empty: generate one); elsewhere, or with
    --generate-password, generates it. A generated password is printed once.
    """
    password: str | None = None
    if not generate and sys.stdin.isatty():
        password = (
            typer.prompt(
                "Password (empty to generate one)",
                default="",
                hide_input=True,
                confirmation_prompt=True,
                show_default=False,
            )
            or None
        )
    try:
        user = create_user(
            engine(), workspace, email, password=password, role="admin" if admin else "member"
        )
    except IntentlyError as exc:
        fail(exc.custom_message)
    out_console.print(
        f"{user.role} {user.email} can sign in to workspace '{workspace.strip()}'.",
        markup=False,
        highlight=False,
    )
    if user.generated:
        out_console.print("Generated password (shown once):", highlight=False)
        sys.stdout.write(user.password + "\n")
