"""A full run in parts (account shards): the same scores, stages, segment members and events
as one run, whatever order the parts finish in; a part whose worker died is redone from
its last committed batch; a part out of attempts fails its run; an abandoned run gives
way to the next."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from intently import pipeline
from intently.kit.db import read_tx, write_tx
from intently.kit.timefmt import now_us
from intently.scoring import repository as repo
from intently.scoring import service, shards
from intently.scoring.tables import scoring_parts
from tests.support.api import Workspace
from tests.support.scoring import MODEL, push_accounts, row, signals
from tests.support.segments import create, events, member_ids

DOMAINS = [f"part{i}.com" for i in range(7)]
SCORES = (
    "rtp_account_score", "rtp_website_intent_score", "rtp_bombora_intent_score",
    "rtp_g2_intent_score", "rtp_advertising_activity_score", "rtp_journey_stage",
)  # fmt: skip
WARM = {"field": "rtp_account_score", "op": "gte", "value": 10}
Parts = list[tuple[int, str, int]]


def prepare(ws: Workspace, engine: Any) -> tuple[dict[str, str], str]:
    """Seven accounts with varied signals, a model, a threshold and a score segment;
    returns ({rtp_aid: domain}, segment id)."""
    service.put_model(engine, ws.id, MODEL)
    r = ws.api.put(
        "/score-thresholds", json={"thresholds": [{"score": "rtp_account_score", "value": 10}]}
    )
    assert r.status_code == 200, r.text
    sid = str(create(ws.api, "Warm", WARM)["segmentId"])
    ids = push_accounts(ws.api, *DOMAINS)
    for i, d in enumerate(DOMAINS):
        if i % 3 == 0:
            signals(engine, ws.id, d, "g2", "pricing", *range(i // 3 + 1))
        if i % 3 == 1:
            signals(engine, ws.id, d, "website", "page_view", *range(i))
        if i % 2 == 0:
            signals(engine, ws.id, d, "bombora", "surge", 0, value=10.0 * i)
    return dict(zip(ids, DOMAINS, strict=True)), sid


def snapshot(ws: Workspace, engine: Any, names: dict[str, str], sid: str) -> dict[str, Any]:
    """What the run left, by domain: scores and stage, segment members, events."""
    by_domain = {names[a]: tuple(row(engine, ws.id, a)[c] for c in SCORES) for a in names}
    kinds = "score.threshold_crossed,stage.changed,segment.entered,segment.exited"
    return {
        "accounts": by_domain,
        "members": sorted(names[a] for a in member_ids(ws.api, sid)),
        "events": Counter((e["type"], names[e["rtp_aid"]]) for e in events(ws.api, type=kinds)),
    }


@pytest.fixture
def reference(
    make_workspace: Callable[[], Workspace], engine: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The snapshot and run record of one unsharded full run over the same data."""
    ws = make_workspace()
    names, sid = prepare(ws, engine)
    summary = pipeline.run_scoring(engine, ws.id)
    snap = snapshot(ws, engine, names, sid)
    assert snap["members"] and snap["events"]  # the data makes every kind of record
    assert {s[5] for s in snap["accounts"].values()} != {None}
    return snap, summary.as_dict()


def plan_parts(engine: Any, ws: int, size: int) -> tuple[dict[str, Any], Parts]:
    queued: Parts = []
    [started] = pipeline.run_claimed(
        engine,
        "full",
        workspaces=[ws],
        shard_size=size,
        enqueue_part=lambda w, r, p: queued.append((w, r, p)),
    )
    return started, queued


def parts_of(engine: Any, ws: int, run_id: str) -> dict[int, dict[str, Any]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            scoring_parts.select().where(
                scoring_parts.c.workspace_id == ws, scoring_parts.c.run_id == run_id
            )
        ).mappings()
        return {int(r["part"]): dict(r) for r in rows}


def the_run(engine: Any, ws: int, run_id: str) -> dict[str, Any]:
    [run] = [r for r in service.list_runs(engine, ws) if r["runId"] == run_id]
    return run


def test_shard_bounds_cut_by_keyset(workspace: Workspace, engine: Any) -> None:
    ids = sorted(push_accounts(workspace.api, *DOMAINS[:5]))
    with read_tx(engine) as conn:
        assert repo.shard_bounds(conn, workspace.id, 2) == [ids[1], ids[3]]
        assert repo.shard_bounds(conn, workspace.id, 4) == [ids[3]]
        assert repo.shard_bounds(conn, workspace.id, 5) == []  # fits in one: not sharded
        assert repo.shard_bounds(conn, workspace.id, 1) == ids[:4]


def test_parts_out_of_order_score_like_one_run(
    workspace: Workspace, engine: Any, reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    ref, ref_run = reference
    names, sid = prepare(workspace, engine)
    started, queued = plan_parts(engine, workspace.id, 2)
    assert started["status"] == "running" and started["parts"] == 4
    run_id = started["runId"]
    assert queued == [(workspace.id, run_id, p) for p in (1, 2, 3, 4)]
    assert the_run(engine, workspace.id, run_id)["status"] == "running"

    results = [pipeline.run_part(engine, *queued[i], batch_size=1) for i in (2, 0, 3)]
    assert [r["status"] for r in results] == ["done"] * 3
    assert the_run(engine, workspace.id, run_id)["status"] == "running"  # a part is left
    assert pipeline.run_part(engine, workspace.id, run_id, 0)["skipped"]  # not finishable yet
    last = pipeline.run_part(engine, *queued[1], batch_size=1)
    assert last["partsLeft"] == 0 and last["finish"]["status"] == "done"

    assert snapshot(workspace, engine, names, sid) == ref
    run = the_run(engine, workspace.id, run_id)
    assert run["status"] == "done" and run["kind"] == "full"
    assert (run["scored"], run["changed"]) == (7, ref_run["changed"])
    assert last["finish"]["segmentMoves"] == ref_run["segmentMoves"]
    assert {
        p: r["status"] for p, r in parts_of(engine, workspace.id, run_id).items()
    } == dict.fromkeys(range(5), "done")
    # its watermark counts: the next incremental run starts from it and finds nothing new
    inc = pipeline.run_scoring(engine, workspace.id, full=False)
    assert (inc.kind, inc.changed) == ("incremental", 0)
    # the run released the workspace for its interval; a stray part task does nothing
    assert pipeline.run_claimed(engine, "full", workspaces=[workspace.id]) == []
    assert pipeline.run_part(engine, *queued[0])["skipped"]


def test_a_workspace_that_fits_in_one_part_runs_at_once(workspace: Workspace, engine: Any) -> None:
    push_accounts(workspace.api, *DOMAINS[:3])
    r, queued = plan_parts(engine, workspace.id, 3)
    assert queued == [] and r["kind"] == "full" and r["scored"] == 3
    with write_tx(engine) as conn:
        repo.release(conn, workspace.id, "full", 0)
    [bad] = pipeline.run_claimed(
        engine, "full", workspaces=[workspace.id], shard_size=0, enqueue_part=print
    )
    assert bad["error"] == "ValueError: shard_size must be at least 1, not 0"


def test_workers_racing_for_parts_take_each_once(
    workspace: Workspace, engine: Any, reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    ref, _ = reference
    names, sid = prepare(workspace, engine)
    started, queued = plan_parts(engine, workspace.id, 2)
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(3)

    def worker(order: Parts) -> None:
        barrier.wait()
        for item in order:
            results.append(pipeline.run_part(engine, *item, batch_size=1))

    threads = [
        threading.Thread(target=worker, args=(o,))
        for o in (queued, queued[::-1], queued[1:] + queued[:1])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = [r for r in results if r.get("status") == "done"]
    assert sorted(r["part"] for r in done) == [1, 2, 3, 4]
    assert [r["finish"]["status"] for r in done if "finish" in r] == ["done"]
    assert all(p["attempt"] == 1 for p in parts_of(engine, workspace.id, started["runId"]).values())
    assert snapshot(workspace, engine, names, sid) == ref
    assert the_run(engine, workspace.id, started["runId"])["status"] == "done"


def test_a_dead_workers_part_is_redone_and_a_stale_worker_is_fenced(
    workspace: Workspace, engine: Any, reference: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    ref, _ = reference
    names, sid = prepare(workspace, engine)
    started, queued = plan_parts(engine, workspace.id, 3)
    run_id, ws = started["runId"], workspace.id
    with write_tx(engine) as conn:  # a worker takes part 2, holds it a moment, and dies
        taken = repo.claim_part(conn, ws, run_id, 2, now_us(), 1000, shards.MAX_ATTEMPTS)
    assert taken is not None and taken["attempt"] == 1
    left = [pipeline.run_part(engine, *item)["partsLeft"] for item in (queued[0], queued[2])]
    assert left == [2, 1]
    assert the_run(engine, ws, run_id)["status"] == "running"
    time.sleep(0.01)
    sent: Parts = []
    resumed = pipeline.resume_parts(engine, lambda *a: sent.append(a), workspaces=[ws])
    assert sent == [(ws, run_id, 2)] and resumed[0]["attempt"] == 1
    # just sent: not sent again while it waits in the queue
    assert pipeline.resume_parts(engine, lambda *a: sent.append(a), workspaces=[ws]) == []
    redo = pipeline.run_part(engine, *sent[0])
    assert redo["attempt"] == 2 and redo["finish"]["status"] == "done"
    # the dead attempt, had it lived, can no longer record a batch
    with write_tx(engine) as conn:
        assert not repo.checkpoint_part(
            conn, ws, run_id, 2, 1, done_upto="f" * 24, scored=1, changed=0, moves=0,
            held_until=now_us(),
        )  # fmt: skip
    assert snapshot(workspace, engine, names, sid) == ref
    assert the_run(engine, ws, run_id)["scored"] == 7


KILL = textwrap.dedent(
    """
    import os, signal, sys
    from intently import pipeline
    from intently.kit.db import make_engine
    from intently.scoring import service

    real = service._write_batch

    def then_die(*args, **kwargs):
        out = real(*args, **kwargs)  # the batch and its checkpoint are committed
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    service._write_batch = then_die
    url, ws, run_id, hold = sys.argv[1:]
    pipeline.run_part(make_engine(url), int(ws), run_id, 1, batch_size=1, hold_us=int(hold))
    """
)


def test_kill_9_mid_part_resumes_from_the_last_batch(
    workspace: Workspace,
    engine: Any,
    database_url: str,
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ref, ref_run = reference
    names, sid = prepare(workspace, engine)
    started, queued = plan_parts(engine, workspace.id, 3)
    run_id, ws = started["runId"], workspace.id
    hold = 3_000_000
    done = subprocess.run(
        [sys.executable, "-c", KILL, database_url, str(ws), run_id, str(hold)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    part = parts_of(engine, ws, run_id)[1]
    assert (part["status"], part["attempt"], part["scored"]) == ("running", 1, 1)
    first = sorted(names)[0]
    assert part["done_upto"] == first
    assert pipeline.resume_parts(engine, lambda *a: None, workspaces=[ws]) == []  # still held
    time.sleep(max(0.0, (part["held_until"] - now_us()) / 1e6) + 0.01)
    sent: Parts = []
    pipeline.resume_parts(engine, lambda *a: sent.append(a), workspaces=[ws])
    assert sent == [(ws, run_id, 1)]
    redo = pipeline.run_part(engine, *sent[0], batch_size=1)
    assert redo["attempt"] == 2
    part = parts_of(engine, ws, run_id)[1]
    assert (part["status"], part["scored"]) == ("done", 3)  # 1 before the kill, 2 after
    for item in queued[1:]:
        pipeline.run_part(engine, *item)
    run = the_run(engine, ws, run_id)
    assert (run["status"], run["scored"], run["changed"]) == ("done", 7, ref_run["changed"])
    assert snapshot(workspace, engine, names, sid) == ref


def test_a_part_out_of_attempts_fails_its_run(
    workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    push_accounts(workspace.api, *DOMAINS[:4])
    started, queued = plan_parts(engine, workspace.id, 2)
    run_id, ws = started["runId"], workspace.id
    monkeypatch.setattr(shards, "RETRY_AFTER_US", 0)
    real = service._score_accounts

    def broken(*args: Any, **kwargs: Any) -> None:
        if kwargs["upto"] is None:  # the last part
            raise RuntimeError("disk full")
        real(*args, **kwargs)

    monkeypatch.setattr(service, "_score_accounts", broken)
    assert pipeline.run_part(engine, *queued[0])["status"] == "done"
    for attempt in range(1, shards.MAX_ATTEMPTS + 1):
        r = pipeline.run_part(engine, *queued[1])
        assert (r["attempt"], r["error"]) == (attempt, "RuntimeError: disk full")
    assert pipeline.run_part(engine, *queued[1])["skipped"]
    run = the_run(engine, ws, run_id)
    assert run["status"] == "failed" and run["error"] == "part 2: RuntimeError: disk full"
    assert run["scored"] == 2  # what the first part did
    parts = parts_of(engine, ws, run_id)
    assert (parts[2]["status"], parts[0]["status"]) == ("failed", "cancelled")
    # the workspace is free again after the run's interval, as after any run
    with read_tx(engine) as conn:
        held = (
            conn.execute(
                repo.scoring_claims.select().where(
                    repo.scoring_claims.c.workspace_id == ws, repo.scoring_claims.c.kind == "full"
                )
            )
            .mappings()
            .one()
        )
    assert held["held_until"] == held["last_started_at"] + shards.MIN_INTERVAL_US["full"]


def test_a_part_whose_worker_died_too_often_fails_its_run(
    workspace: Workspace, engine: Any
) -> None:
    push_accounts(workspace.api, *DOMAINS[:4])
    started, _ = plan_parts(engine, workspace.id, 2)
    run_id, ws = started["runId"], workspace.id
    for _ in range(shards.MAX_ATTEMPTS):
        with write_tx(engine) as conn:
            assert repo.claim_part(conn, ws, run_id, 1, now_us(), 1, shards.MAX_ATTEMPTS)
        time.sleep(0.002)
    out = pipeline.resume_parts(engine, lambda *a: None, workspaces=[ws])
    assert {"workspace": ws, "runId": run_id, "part": 1, "failed": True} in out
    run = the_run(engine, ws, run_id)
    assert run["status"] == "failed" and "part 1 was taken 3 times" in run["error"]


def test_an_abandoned_run_gives_way_to_the_next(workspace: Workspace, engine: Any) -> None:
    push_accounts(workspace.api, *DOMAINS[:4])
    old, old_parts = plan_parts(engine, workspace.id, 2)
    pipeline.run_part(engine, *old_parts[0])
    with write_tx(engine) as conn:  # nobody moved it for the claim's whole hold
        repo.release(conn, workspace.id, "full", 0)
    new, new_parts = plan_parts(engine, workspace.id, 2)
    assert new["runId"] != old["runId"]
    gone = the_run(engine, workspace.id, old["runId"])
    assert gone["status"] == "failed" and gone["error"] == f"superseded by run {new['runId']}"
    assert gone["scored"] == 2
    assert pipeline.run_part(engine, *old_parts[1])["skipped"]
    for item in new_parts:
        pipeline.run_part(engine, *item)
    assert the_run(engine, workspace.id, new["runId"])["status"] == "done"
    # only the newest run's parts are kept
    with read_tx(engine) as conn:
        runs = {
            r[0]
            for r in conn.execute(
                scoring_parts.select()
                .with_only_columns(scoring_parts.c.run_id)
                .where(scoring_parts.c.workspace_id == workspace.id)
            )
        }
    assert runs == {new["runId"]}


def test_the_worker_tasks_fan_out_and_finish_a_sharded_run(
    workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intently import worker

    monkeypatch.setattr(worker, "engine", lambda: engine)
    monkeypatch.setattr(worker, "SHARD_SIZE", 2)
    monkeypatch.setattr(worker.huey, "immediate", True)  # each task runs as it is queued
    push_accounts(workspace.api, *DOMAINS[:5])
    worker.score_workspace(workspace.id, "full")
    [run] = service.list_runs(engine, workspace.id)
    assert (run["status"], run["scored"]) == ("done", 5)
    assert sorted(parts_of(engine, workspace.id, run["runId"])) == [0, 1, 2, 3]
    assert worker.huey.storage.result_store_size() == 0  # nothing kept that nobody reads
    worker.score_workspace(workspace.id, "incremental")
    assert [r["kind"] for r in service.list_runs(engine, workspace.id)] == ["incremental", "full"]


def test_a_claimed_run_renews_its_claim_as_batches_commit(
    workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live run keeps its claim (so the hold can be short and a dead worker's run is
    taken over soon): the claim is extended while batches commit."""
    prepare(workspace, engine)
    renewals: list[int] = []
    real_extend = repo.extend_claim

    def extend(conn: Any, ws: int, kind: str, until: int) -> None:
        renewals.append(until)
        real_extend(conn, ws, kind, until)

    monkeypatch.setattr(repo, "extend_claim", extend)
    monkeypatch.setitem(shards.CLAIM_HOLD_US, "full", 4)  # renew after every batch
    real_run = service.run_scoring
    monkeypatch.setattr(
        service, "run_scoring", lambda *a, **kw: real_run(*a, **{**kw, "batch_size": 2})
    )
    out = pipeline.run_claimed(engine, "full", workspaces=[workspace.id])
    assert out and "error" not in out[0], out
    assert len(renewals) >= 3  # 7 accounts in batches of 2
    assert renewals == sorted(renewals)


def test_small_write_transactions_score_like_one_batch(
    workspace: Workspace,
    engine: Any,
    reference: tuple[dict[str, Any], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a batch is written in short transactions (so API writes do not queue
    long behind a run); the result is the same as one transaction per batch."""
    ref, ref_run = reference
    names, sid = prepare(workspace, engine)
    monkeypatch.setattr(service, "PG_WRITE_CHUNK", 2)
    summary = pipeline.run_scoring(engine, workspace.id).as_dict()
    assert snapshot(workspace, engine, names, sid) == ref
    assert (summary["scored"], summary["changed"]) == (ref_run["scored"], ref_run["changed"])
    assert summary["segmentMoves"] == ref_run["segmentMoves"]


def test_a_batch_is_cut_into_runs_of_ids_with_their_rows() -> None:
    ids = ["a", "b", "c", "d", "e"]
    rows = [("a", "g2", 1.0), ("c", "g2", 2.0), ("c", "website", 3.0), ("e", "g2", 4.0)]
    assert list(service._chunks(ids, rows, 10)) == [(ids, rows)]
    assert list(service._chunks(ids, rows, 2)) == [
        (["a", "b"], [("a", "g2", 1.0)]),
        (["c", "d"], [("c", "g2", 2.0), ("c", "website", 3.0)]),
        (["e"], [("e", "g2", 4.0)]),
    ]
