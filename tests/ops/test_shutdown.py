"""Graceful shutdown of real processes: SIGTERM lets a request in flight finish, writes the
collector's buffer, and `intently worker` stops its jobs gracefully."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import Server, command_env, count, new_workspace


def _request_head(port: int, path: str, key: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Api-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_sigterm_finishes_a_request_in_flight(
    new_database: Callable[[], str], servers: Callable[..., Server]
) -> None:
    url = new_database()
    key, ws, _ = new_workspace(url)
    server = servers(url, INTENTLY_SHUTDOWN_GRACE_S="20")
    prefix = uuid.uuid4().hex[:8]
    body = json.dumps(
        {"accounts": [{"domain": f"{prefix}-{i}.example.com", "name": f"A{i}"} for i in range(50)]}
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(_request_head(server.port, "/api/v1/accounts", key, len(body)))
        sock.sendall(body[:100])
        time.sleep(0.5)  # the server has the headers and the first part: the request is open
        server.proc.send_signal(15)
        time.sleep(1.0)
        assert server.proc.poll() is None, "the server left before the request finished"
        sock.sendall(body[100:])
        status, answer = _read_response(sock)
    assert status == 200, answer[:500]
    assert server.proc.wait(timeout=20) == 0
    stored = count(
        url,
        "SELECT count(*) FROM accounts WHERE workspace_id = :ws AND domain LIKE :p",
        ws=ws,
        p=f"{prefix}-%",
    )
    assert stored == 50


def test_sigterm_flushes_the_collector_buffer(
    new_database: Callable[[], str], servers: Callable[..., Server]
) -> None:
    url = new_database()
    _, ws, write_key = new_workspace(url)
    # A minute between flushes: only the flush at shutdown can write these events.
    server = servers(url, INTENTLY_COLLECTOR_FLUSH_MS="60000")
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    events = [
        {
            "type": "page",
            "messageId": uuid.uuid4().hex,
            "anonymousId": f"anon-{i}",
            "context": {"ip": "198.51.100.7", "page": {"path": f"/p/{i}"}},
        }
        for i in range(40)
    ]
    r = httpx.post(
        f"{server.url}/v1/batch", json={"batch": events}, headers={"Authorization": auth}
    )
    assert r.status_code == 200, r.text
    assert count(url, "SELECT count(*) FROM web_events WHERE workspace_id = :ws", ws=ws) == 0
    assert server.terminate(timeout=30) == 0
    assert count(url, "SELECT count(*) FROM web_events WHERE workspace_id = :ws", ws=ws) == 40


def test_sigterm_stops_the_worker_gracefully(
    new_database: Callable[[], str], is_postgres: bool, tmp_path: Path
) -> None:
    if not is_postgres:
        pytest.skip("`intently worker` runs on PostgreSQL only (tests/ops/test_cli_guards.py)")
    url = new_database()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "intently", "worker", "--threads", "1"],
            env=command_env(url, INTENTLY_WEBHOOK_DISPATCH="false"),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while "consumer" not in log.read_text().lower() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(15)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    # huey's graceful stop waits for running jobs; its immediate stop does not say this.
    assert "Shutting down gracefully..." in messages, messages[-10:]
    assert all(line["level"] != "ERROR" for line in lines), lines
