"""The signal store's core: natural-key idempotency and the daily rollup kept in step.

These go through `signals.store.store` and `ingest_run` directly (every source ends
there) and compare the rollup with an aggregate recomputed from the signals table.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text

from intently.kit.db import read_tx, write_tx
from intently.kit.timefmt import US_PER_DAY
from intently.signals.store import SignalIn, content_key, day_of, ingest_run, store
from tests.support.api import Workspace

DAY = US_PER_DAY


def sig(key: str, *, domain: str = "acme.com", type_: str = "surge", day: int = 100,
        value: float = 70.0, topic: str = "crm", source: str = "bombora") -> SignalIn:  # fmt: skip
    return SignalIn(
        domain=domain,
        source=source,
        type=type_,
        occurred_at=day * DAY + 3_600_000_000,
        natural_key=key,
        value=value,
        topic=topic,
        provider="test",
    )


def put(engine: Any, ws: int, items: list[SignalIn]) -> list[str]:
    with write_tx(engine) as conn:
        return store(conn, ws, items)


def rollup(engine: Any, ws: int) -> dict[tuple[Any, ...], tuple[int, float]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, source, type, topic, day, count, value_sum FROM signal_daily "
                "WHERE workspace_id = :ws"
            ),
            {"ws": ws},
        ).all()
    return {tuple(r[:5]): (int(r[5]), round(float(r[6]), 6)) for r in rows}


def recomputed(engine: Any, ws: int) -> dict[tuple[Any, ...], tuple[int, float]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, source, type, topic, day, count(*), sum(value) FROM signals "
                "WHERE workspace_id = :ws GROUP BY domain, source, type, topic, day"
            ),
            {"ws": ws},
        ).all()
    return {tuple(r[:5]): (int(r[5]), round(float(r[6]), 6)) for r in rows}


def test_new_keys_are_created_and_repeats_are_duplicates(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    assert put(engine, ws, [sig("a"), sig("b", topic="erp")]) == ["created", "created"]
    assert put(engine, ws, [sig("a"), sig("b", topic="erp")]) == ["duplicate", "duplicate"]
    assert rollup(engine, ws) == {
        ("acme.com", "bombora", "surge", "crm", 100): (1, 70.0),
        ("acme.com", "bombora", "surge", "erp", 100): (1, 70.0),
    }


def test_a_key_repeated_in_one_batch_counts_once(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    out = put(engine, ws, [sig("a"), sig("a"), sig("a", value=90.0)])
    assert out == ["created", "duplicate", "updated"]
    assert rollup(engine, ws) == {("acme.com", "bombora", "surge", "crm", 100): (1, 90.0)}


def test_a_revised_signal_moves_the_rollup(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    put(engine, ws, [sig("a", value=70.0), sig("b", value=10.0)])
    # Same key: new value, then another day and type.
    assert put(engine, ws, [sig("a", value=75.0)]) == ["updated"]
    assert rollup(engine, ws)[("acme.com", "bombora", "surge", "crm", 100)] == (2, 85.0)
    assert put(engine, ws, [sig("a", day=101, type_="other", value=5.0)]) == ["updated"]
    assert rollup(engine, ws) == {
        ("acme.com", "bombora", "surge", "crm", 100): (1, 10.0),
        ("acme.com", "bombora", "other", "crm", 101): (1, 5.0),
    }


def test_the_same_key_in_two_sources_is_two_signals(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    out = put(engine, ws, [sig("k"), sig("k", source="g2", type_="pricing")])
    assert out == ["created", "created"]


def test_rollup_equals_the_signals_after_random_writes(engine: Any, workspace: Workspace) -> None:
    rng = random.Random(7)
    ws = workspace.id
    for _ in range(12):
        batch = [
            sig(
                f"k{rng.randrange(60)}",
                domain=rng.choice(["a.com", "b.com", "c.io"]),
                type_=rng.choice(["surge", "other"]),
                day=100 + rng.randrange(5),
                value=float(rng.randrange(1, 100)),
                topic=rng.choice(["", "crm"]),
            )
            for _ in range(rng.randrange(1, 40))
        ]
        put(engine, ws, batch)
        assert rollup(engine, ws) == recomputed(engine, ws)


def test_late_data_counts_on_the_day_it_happened(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    put(engine, ws, [sig("old", day=3)])
    assert ("acme.com", "bombora", "surge", "crm", 3) in rollup(engine, ws)


def test_workspaces_do_not_share_keys_or_rollups(
    engine: Any, workspace: Workspace, other: Workspace
) -> None:
    assert put(engine, workspace.id, [sig("a")]) == ["created"]
    assert put(engine, other.id, [sig("a")]) == ["created"]
    assert rollup(engine, workspace.id) == rollup(engine, other.id)


def test_day_of_is_utc_days() -> None:
    assert day_of(0) == 0
    assert day_of(DAY - 1) == 0
    assert day_of(DAY) == 1


def test_content_key_is_stable_and_sensitive() -> None:
    assert content_key("a.com", "x", 1) == content_key("a.com", "x", 1)
    assert content_key("a.com", "x", 1) != content_key("a.com", "x", 2)
    assert content_key("a", "bc") != content_key("ab", "c")


def test_ingest_run_accounts_for_every_row(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    with ingest_run(engine, ws, "bombora", "file", "week.csv", batch_size=2) as run:
        for i in range(5):
            run.read()
            run.add(sig(f"r{i}"))
        run.read(3)
        run.add(sig("r0"))
        run.reject("invalid_domain", "Domain 'x' is not a domain name", {"Domain": "x"}, line=9)
        run.skip("below_threshold")
    r = run.report
    assert (r.status, r.read, r.accepted, r.duplicate, r.rejected, r.skipped) == (
        "done", 8, 5, 1, 1, 1,
    )  # fmt: skip
    assert dict(r.rejected_by_reason) == {"invalid_domain": 1}
    with read_tx(engine) as conn:
        row = conn.execute(
            text("SELECT status, read, accepted, duplicate, rejected, skipped, finished_at "
                 "FROM ingest_runs WHERE workspace_id = :ws AND id = :id"),
            {"ws": ws, "id": run.run_id},
        ).one()  # fmt: skip
    assert tuple(row[:6]) == ("done", 8, 5, 1, 1, 1) and row[6] is not None


def test_a_failing_run_keeps_whole_batches_and_says_why(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    with (
        pytest.raises(RuntimeError),
        ingest_run(engine, ws, "g2", "file", "x.csv", batch_size=2) as run,
    ):
        for i in range(3):
            run.read()
            run.add(sig(f"f{i}", source="g2", type_="pricing"))
        raise RuntimeError("disk on fire")
    assert run.report.status == "failed"
    assert run.report.error == "RuntimeError: disk on fire"
    # The first full batch was written; the unflushed third signal was not.
    with read_tx(engine) as conn:
        n = conn.execute(
            text("SELECT count(*) FROM signals WHERE workspace_id = :ws AND source = 'g2'"),
            {"ws": ws},
        ).scalar()
    assert n == 2
