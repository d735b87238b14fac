"""kit/db.time_limit: a statement running past the deadline is stopped (SQLite's progress
handler, PostgreSQL's statement_timeout) with the caller's message, and the connection
is left as it was for its next user."""

from __future__ import annotations

import time
from typing import Any

import pytest

from intently.kit.db import read_tx, time_limit
from intently.kit.errors import UnprocessableEntity


def endless(engine: Any) -> str:
    """A statement that runs for far longer than any test waits."""
    if engine.dialect.name == "postgresql":
        return "SELECT pg_sleep(30)"
    return (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM n WHERE i < 0"
    )


def test_a_statement_past_the_deadline_is_stopped_with_the_message(engine: Any) -> None:
    started = time.monotonic()
    with (
        pytest.raises(UnprocessableEntity) as info,
        read_tx(engine) as conn,
        time_limit(conn, 0.2, "too slow; narrow it"),
    ):
        conn.exec_driver_sql(endless(engine))
    assert info.value.custom_message == "too slow; narrow it"
    assert info.value.status == 422
    assert time.monotonic() - started < 10


def test_statements_within_the_limit_run_and_the_connection_is_left_unlimited(
    engine: Any,
) -> None:
    counting = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
        "SELECT count(*) FROM n"
    )
    with engine.connect() as conn:
        with conn.begin():
            before = conn.exec_driver_sql("SELECT 1").scalar()
            if engine.dialect.name == "postgresql":
                before = conn.exec_driver_sql("SHOW statement_timeout").scalar()
        with conn.begin(), time_limit(conn, 0.05, "too slow"):
            assert conn.exec_driver_sql("SELECT 2").scalar() == 2
        time.sleep(0.1)  # the deadline has passed: nothing of it may stop the next user
        with conn.begin():
            assert conn.exec_driver_sql(counting).scalar() == 300000
            if engine.dialect.name == "postgresql":
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == before
