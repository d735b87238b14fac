"""The predictive model: trained on the workspace's own deals, backtested on a later
hold-out, stored as a model version, activated (or refused), applied in scoring runs and
explained line by line."""

from __future__ import annotations

import time
from typing import Any

import pytest

from intently.kit.timefmt import US_PER_DAY
from intently.scoring import training
from intently.scoring.whatif import backtest
from tests.support.api import Workspace
from tests.support.predict import build_world


@pytest.fixture(scope="module")
def world(client: Any, engine: Any) -> tuple[Workspace, dict[str, Any]]:
    from tests.support.api import new_workspace

    ws = new_workspace(client, engine, "predict")
    facts = build_world(ws.api, engine, ws.id, accounts=2500)
    return ws, facts


def test_the_trained_model_beats_the_default_on_a_world_with_other_drivers(
    world: tuple[Workspace, dict[str, Any]], engine: Any
) -> None:
    ws, facts = world
    t0 = time.perf_counter()
    t = training.train(engine, ws.id, horizon_days=90, progress=print)
    import json
    print(facts, time.perf_counter() - t0, json.dumps(t, indent=1)[:6000])
