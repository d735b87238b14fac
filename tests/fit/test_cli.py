"""`intently fit show|set|dry-run` as a user runs them (a subprocess)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.support.api import Workspace
from tests.support.cli import intently
from tests.support.fit import MODEL, fit_row, set_profile
from tests.support.scoring import push_accounts


def test_show_set_and_dry_run(
    engine: Any, database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    done = intently(database_url, "fit", "show", "--workspace", workspace.name)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["version"] == 0 and shown["isDefault"] is True
    assert shown["model"]["bands"]["fit"][0] == {"grade": "A", "min": 75}

    (aid,) = push_accounts(workspace.api, "cli-fit.com")
    set_profile(engine, workspace.id, aid, employee_count=800)
    proposal = tmp_path / "fit.json"
    proposal.write_text(json.dumps(MODEL))
    done = intently(database_url, "fit", "dry-run", str(proposal), "-w", workspace.name)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # the default gives 800 employees 35 (C4); the proposal 40 (B), its intent bands 3
    assert report["gradeMoves"] == [{"from": "C4", "to": "B3", "accounts": 1}]
    assert fit_row(engine, workspace.id, aid)["rtp_fit_score"] == 0  # as created: unwritten

    done = intently(database_url, "fit", "set", str(proposal), "--workspace", workspace.name)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    shown = json.loads(intently(database_url, "fit", "show", "-w", workspace.name).stdout)
    assert shown["version"] == 1 and shown["model"] == MODEL


def test_set_names_every_problem(database_url: str, workspace: Workspace, tmp_path: Path) -> None:
    bad = copy.deepcopy(MODEL)
    bad["criteria"][0]["rule"] = {"field": "rtp_g2_intent_score", "op": "gte", "value": 10}
    bad["bands"]["intent"][-1]["min"] = 5
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    done = intently(database_url, "fit", "set", str(path), "-w", workspace.name)
    assert done.returncode == 2
    assert "criteria.0.rule.field: criteria.0.rule.field reads the field rtp_g2_intent_score" in (
        done.stderr
    )
    assert "bands.intent.2.min: the last band's min must be 0" in done.stderr
    done = intently(database_url, "fit", "dry-run", str(path), "-w", workspace.name)
    assert done.returncode == 2 and "rtp_g2_intent_score" in done.stderr
    shown = intently(database_url, "fit", "show", "-w", workspace.name)
    assert json.loads(shown.stdout)["version"] == 0
