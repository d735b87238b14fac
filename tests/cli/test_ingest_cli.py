"""The ingest commands shared by every source: rejects, sources and their settings,
connections (credentials sealed, never shown), and the --workspace rule."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from intently.kit.db import read_tx
from intently.signals.store import ingest_run
from tests.support.api import Workspace
from tests.support.cli import intently

SECRET = "sealed-test-secret-7f3a"


def run(database_url: str, *args: str, key: str | None = "cli-credentials-key") -> Any:
    return intently(database_url, *args, INTENTLY_CREDENTIALS_KEY=key)


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["import"],
        ["import", "bombora"],
        ["import", "g2"],
        ["import", "linkedin"],
        ["pull"],
        ["connections", "set"],
        ["rejects", "list"],
        ["rejects", "export"],
        ["sources", "set"],
        ["linkedin", "map"],
    ],
)
def test_ingest_commands_have_help(database_url: str, args: list[str]) -> None:
    r = run(database_url, *args, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


def rejects(engine: Any, ws: int, n: int) -> str:
    with ingest_run(engine, ws, "g2", "file", "events.csv") as r:
        for i in range(n):
            r.read()
            r.reject("invalid_date", f"Time 'soon{i}' is not a date", {"Time": f"soon{i}"},
                     line=i + 2)  # fmt: skip
    return r.run_id


def test_rejects_list_and_export(
    database_url: str, engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    run_id = rejects(engine, workspace.id, 3)
    r = run(database_url, "rejects", "list", "--workspace", workspace.name, "--limit", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and "line 2: invalid_date: Time 'soon0' is not a date" in lines[0]

    out = tmp_path / "rejects.csv"
    r = run(database_url, "rejects", "export", str(out), "--workspace", workspace.name,
            "--run", run_id)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["line"] for row in rows] == ["2", "3", "4"]
    assert json.loads(rows[0]["record"]) == {"Time": "soon0"}
    assert {row["source"] for row in rows} == {"g2"} and rows[0]["runId"] == run_id


def test_sources_settings_round_trip(
    database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"surgeThreshold": 75, "topics": ["CRM"]}))
    r = run(database_url, "sources", "set", "bombora", str(f), "--workspace", workspace.name)
    assert r.returncode == 0, r.stderr
    r = run(database_url, "sources", "show", "bombora", "--workspace", workspace.name)
    assert json.loads(r.stdout) == {"surgeThreshold": 75, "topics": ["CRM"]}
    assert workspace.api.get("/sources/bombora/settings").json()["data"]["surgeThreshold"] == 75


def test_bad_settings_file_names_the_problem(
    database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"surgeThreshold": 175}))
    r = run(database_url, "sources", "set", "bombora", str(f), "--workspace", workspace.name)
    assert r.returncode == 2
    assert "surgeThreshold: surgeThreshold must not be greater than 100" in r.stderr
    f.write_text("{not json")
    r = run(database_url, "sources", "set", "bombora", str(f), "--workspace", workspace.name)
    assert r.returncode == 2 and "is not JSON" in r.stderr


def test_register_a_custom_source(database_url: str, workspace: Workspace) -> None:
    r = run(database_url, "sources", "register", "webinars", "--workspace", workspace.name)
    assert r.returncode == 0 and "registered" in r.stdout
    r = run(database_url, "sources", "list", "--workspace", workspace.name)
    assert "webinars (custom)" in r.stdout


def test_connections_keep_credentials_sealed(
    database_url: str, engine: Any, workspace: Workspace
) -> None:
    r = run(database_url, "connections", "set", "g2", "--workspace", workspace.name,
            "-c", f"token={SECRET}", "--config", "base_url=http://127.0.0.1:9")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    r = run(database_url, "connections", "list", "--workspace", workspace.name)
    assert r.returncode == 0 and "g2: enabled" in r.stdout and "127.0.0.1:9" in r.stdout
    assert SECRET not in r.stdout + r.stderr
    with read_tx(engine) as conn:
        stored = conn.execute(
            text("SELECT sealed_credentials FROM connections WHERE workspace_id = :ws"),
            {"ws": workspace.id},
        ).scalar_one()
    assert SECRET not in stored
    # Another key cannot open them, and says what to do.
    from intently.ingest.connections import get_connection
    from intently.kit.errors import BadRequest

    with pytest.raises(BadRequest, match="cannot be decrypted"):
        get_connection(engine, workspace.id, "g2", key="another key")
    assert get_connection(engine, workspace.id, "g2", key="cli-credentials-key")["credentials"] == {
        "token": SECRET
    }


def test_connections_need_the_credentials_key(database_url: str, workspace: Workspace) -> None:
    r = run(database_url, "connections", "set", "g2", "--workspace", workspace.name,
            "-c", "token=x", key=None)  # fmt: skip
    assert r.returncode == 2
    assert "INTENTLY_CREDENTIALS_KEY is not set" in r.stderr


def test_unknown_provider_and_bad_pairs(database_url: str, workspace: Workspace) -> None:
    r = run(database_url, "connections", "set", "hubspot", "--workspace", workspace.name,
            "-c", "token=x")  # fmt: skip
    assert r.returncode == 2 and "provider 'hubspot' is not one of" in r.stderr
    r = run(database_url, "connections", "set", "g2", "--workspace", workspace.name, "-c", "x")
    assert r.returncode == 2 and "--credential 'x' is not NAME=VALUE" in r.stderr


def test_the_workspace_must_be_named_when_there_are_several(
    database_url: str, workspace: Workspace, other: Workspace
) -> None:
    r = run(database_url, "rejects", "list")
    assert r.returncode == 2 and "pass --workspace NAME" in r.stderr
    r = run(database_url, "rejects", "list", "--workspace", "no-such-workspace")
    assert r.returncode == 2 and "workspace 'no-such-workspace' not found" in r.stderr


def test_the_only_workspace_needs_no_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/one.sqlite3"
    assert run(url, "keys", "generate", "--workspace", "solo", "--email", "a@b.co").returncode == 0
    r = run(url, "rejects", "list")
    assert r.returncode == 0 and "no rejects" in r.stdout
