"""The command-line contract scripts rely on: names, --help, and the key as the last line."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.support.cli import intently

NEW = "--create-workspace"


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return intently(database_url, *args, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["migrate"],
        ["keys"],
        ["keys", "generate"],
        ["workspaces"],
        ["workspaces", "api-access"],
    ],
)
def test_every_command_has_help(database_url: str, args: list[str]) -> None:
    r = run(database_url, *args, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


def test_migrate_is_idempotent(database_url: str) -> None:
    for _ in range(2):
        r = run(database_url, "migrate")
        assert r.returncode == 0, r.stderr
        assert "up to date" in r.stdout


def test_keys_generate_prints_the_key_last_and_revokes_the_old_one(
    database_url: str, client: TestClient
) -> None:
    ws = f"cli-{uuid.uuid4().hex[:8]}"
    first = run(
        database_url,
        "keys",
        "generate",
        "--workspace",
        ws,
        "--email",
        "Ops@Acme.com",
        "--create-workspace",
    )
    assert first.returncode == 0, first.stderr
    key1 = first.stdout.splitlines()[-1]
    assert first.stdout.endswith(key1 + "\n") and key1.startswith("itly_")
    assert client.get("/api/v1/accounts", headers={"X-Api-Key": key1}).status_code == 200

    second = run(database_url, "keys", "generate", "--workspace", ws, "--email", "ops@acme.com")
    key2 = second.stdout.splitlines()[-1]
    assert key2 != key1
    old = client.get("/api/v1/accounts", headers={"X-Api-Key": key1})
    assert old.status_code == 401 and old.json()["customMessage"] == "Invalid API key"
    assert client.get("/api/v1/accounts", headers={"X-Api-Key": key2}).status_code == 200


def test_keys_generate_refuses_a_workspace_that_does_not_exist(
    database_url: str, client: TestClient
) -> None:
    # A guessed name would make a second, empty workspace that the dashboard never shows.
    ws = f"cli-{uuid.uuid4().hex[:8]}"
    first = run(database_url, "keys", "generate", "--workspace", ws, "--email", "a@b.co", NEW)
    assert first.returncode == 0, first.stderr
    missing = f"{ws}-typo"
    r = run(database_url, "keys", "generate", "--workspace", missing, "--email", "a@b.co")
    assert r.returncode == 2 and r.stdout == ""
    assert f"workspace '{missing}' does not exist" in r.stderr
    assert "--create-workspace" in r.stderr and "the workspaces are" in r.stderr
    assert run(database_url, "rejects", "list", "--workspace", missing).returncode == 2

    made = run(database_url, "keys", "generate", "--workspace", missing, "--email", "a@b.co", NEW)
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert client.get("/api/v1/accounts", headers={"X-Api-Key": key}).status_code == 200


def test_api_access_switch(database_url: str, client: TestClient) -> None:
    ws = f"cli-{uuid.uuid4().hex[:8]}"
    key = run(database_url, "keys", "generate", "--workspace", ws, "--email", "a@b.co", NEW).stdout
    key = key.splitlines()[-1]
    assert run(database_url, "workspaces", "api-access", "--workspace", ws, "--off").returncode == 0
    r = client.get("/api/v1/accounts", headers={"X-Api-Key": key})
    assert r.status_code == 401
    assert r.json()["customMessage"] == "API access is not enabled for this workspace"
    assert run(database_url, "workspaces", "api-access", "--workspace", ws, "--on").returncode == 0
    assert client.get("/api/v1/accounts", headers={"X-Api-Key": key}).status_code == 200


def test_bad_input_names_the_value(database_url: str) -> None:
    r = run(database_url, "keys", "generate", "--workspace", "x", "--email", "not-an-email", NEW)
    assert r.returncode == 2
    assert "not-an-email" in r.stderr
    r = run(database_url, "workspaces", "api-access", "--workspace", "no-such-ws", "--on")
    assert r.returncode == 2 and "no-such-ws" in r.stderr
