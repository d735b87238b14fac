"""On SQLite, `intently serve` refuses what would make a second writing process: more than
one server process, a separate worker, a second `serve` on the same file. Each refusal
exits 2 and says why and what to do. These run on a SQLite file whatever the test database."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from intently.kit.migrate import migrate
from tests.ops.conftest import Server, intently_cmd


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'guard.sqlite3'}"
    migrate(url)
    return url


def assert_refused(r: subprocess.CompletedProcess[str], *words: str) -> None:
    code, err = r.returncode, r.stderr
    assert code == 2, (code, err)
    assert "SQLite allows one writing process" in err, err
    assert "INTENTLY_DATABASE_URL" in err and "PostgreSQL" in err, err
    for word in words:
        assert word in err, err


def test_serve_refuses_several_workers_on_sqlite(sqlite_url: str) -> None:
    r = intently_cmd(sqlite_url, "serve", "--workers", "2", "--port", "1")
    assert_refused(r, "--workers 2", "Drop --workers")


def test_serve_refuses_no_worker_on_sqlite(sqlite_url: str) -> None:
    r = intently_cmd(sqlite_url, "serve", "--no-worker", "--port", "1")
    assert_refused(r, "--no-worker", "Drop --no-worker")


def test_worker_refuses_sqlite(sqlite_url: str) -> None:
    r = intently_cmd(sqlite_url, "worker")
    assert_refused(r, "`intently worker`", "already runs the jobs")


def test_second_serve_on_the_same_file_is_refused(
    sqlite_url: str, servers: Callable[..., Server], tmp_path: Path
) -> None:
    first = servers(sqlite_url)
    r = intently_cmd(sqlite_url, "serve", "--port", "1")
    assert_refused(r, "another `intently serve`", "guard.sqlite3.lock")
    # Another file is another database: no refusal there (it starts and answers).
    other = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    second = servers(other)
    assert first.proc.poll() is None and second.proc.poll() is None
    # The lock goes with the process: once the first has stopped, a new serve starts.
    assert first.terminate() == 0
    third = servers(sqlite_url)
    assert third.terminate() == 0


def test_restore_is_refused_while_a_server_runs(
    sqlite_url: str, servers: Callable[..., Server], tmp_path: Path
) -> None:
    backup = tmp_path / "b.sqlite3"
    r = intently_cmd(sqlite_url, "backup", str(backup))
    assert r.returncode == 0, r.stderr
    server = servers(sqlite_url)
    r = intently_cmd(sqlite_url, "restore", str(backup))
    assert r.returncode == 2, r.stderr
    assert "a server is running on" in r.stderr and "stop it before restoring" in r.stderr
    assert server.proc.poll() is None
