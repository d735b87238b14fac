"""A scoring process killed (SIGKILL) inside a batch's write transaction: every account is
fully old or fully new, and the next run completes the work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

from intently import pipeline
from intently.scoring import service
from tests.support.api import Workspace
from tests.support.scoring import MODEL, push_accounts, row, signals

# Scores in batches of two; the stage step of the second batch kills the process while
# that batch's transaction is open (its updates are written but not committed).
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from intently.kit.db import make_engine
    from intently.pipeline import run_scoring

    calls = []

    def stage(conn, ws, ids, new):
        calls.append(ids)
        if len(calls) == 2:
            conn.exec_driver_sql("UPDATE accounts SET rtp_account_score = 99 WHERE workspace_id = "
                                 + str(ws))
            os.kill(os.getpid(), signal.SIGKILL)
        return {i: "Scored" for i in ids}

    run_scoring(make_engine(sys.argv[1]), int(sys.argv[2]), stage_step=stage, batch_size=2)
    """
)


def test_sigkill_mid_batch(engine: Any, database_url: str, workspace: Workspace) -> None:
    ws = workspace.id
    service.put_model(engine, ws, MODEL)
    domains = [f"kill{i}.com" for i in range(5)]
    ids = sorted(push_accounts(workspace.api, *domains))
    for d in domains:
        signals(engine, ws, d, "g2", "pricing", 0)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, database_url, str(ws)], capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr
    new = (15.0, 0.0, 0.0, 20.0, 0.0, "Scored")
    old = (0.0, 0.0, 0.0, 0.0, 0.0, None)

    def state(aid: str) -> tuple[Any, ...]:
        r = row(engine, ws, aid)
        return (
            r["rtp_account_score"], r["rtp_website_intent_score"], r["rtp_bombora_intent_score"],
            r["rtp_g2_intent_score"], r["rtp_advertising_activity_score"], r["rtp_journey_stage"],
        )  # fmt: skip

    # the first batch committed; the second (and its stray write) rolled back; the third
    # never ran
    assert [state(i) for i in ids] == [new, new, old, old, old]
    [run] = service.list_runs(engine, ws)
    assert run["status"] == "running" and run["finishedAt"] is None  # never finished

    def stage(conn: Any, w: int, batch: list[str], scores: Any) -> dict[str, str | None]:
        return dict.fromkeys(batch, "Scored")

    s = pipeline.run_scoring(engine, ws, full=False, stage_step=stage)
    assert s.kind == "full"  # no finished run to start from: everything
    assert (s.scored, s.changed) == (5, 3)
    assert [state(i) for i in ids] == [new] * 5
