"""`intently scoring show|set` and `intently score` as a user runs them (a subprocess)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.api import Workspace
from tests.support.cli import intently
from tests.support.scoring import MODEL, push_accounts, row, signals


def test_show_and_set(database_url: str, workspace: Workspace, tmp_path: Path) -> None:
    done = intently(database_url, "scoring", "show", "--workspace", workspace.name)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["version"] == 0 and shown["isDefault"] is True
    assert shown["model"]["sources"]["g2"]["types"]["pricing"]["increment"] == 30

    good = tmp_path / "model.json"
    good.write_text(json.dumps(MODEL))
    done = intently(database_url, "scoring", "set", str(good), "--workspace", workspace.name)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    done = intently(database_url, "scoring", "show", "-w", workspace.name)
    assert json.loads(done.stdout)["model"]["sources"]["g2"]["weight"] == 3


def test_set_names_every_problem(database_url: str, workspace: Workspace, tmp_path: Path) -> None:
    bad = json.loads(json.dumps(MODEL))
    bad["sources"]["website"]["types"]["page_view"]["increment"] = -1
    bad["sources"]["g2"]["types"]["pricing"]["decay"] = {"kind": "step", "days": 0}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    done = intently(database_url, "scoring", "set", str(path), "-w", workspace.name)
    assert done.returncode == 2
    err = done.stderr
    assert "sources.website.types.page_view.increment: increment must not be less than 0" in err
    assert "sources.g2.types.pricing.decay.days: days must not be less than 1" in err
    assert "sources.g2.types.pricing.decay.percent: percent should not be empty" in err
    path.write_text("{not json")
    done = intently(database_url, "scoring", "set", str(path), "-w", workspace.name)
    assert done.returncode == 2 and "is not JSON" in done.stderr
    shown = intently(database_url, "scoring", "show", "-w", workspace.name)
    assert json.loads(shown.stdout)["version"] == 0


def test_score_prints_a_summary(engine: Any, database_url: str, workspace: Workspace) -> None:
    a, _ = push_accounts(workspace.api, "cli-a.com", "cli-b.com")
    signals(engine, workspace.id, "cli-a.com", "website", "form_submit", 0)
    done = intently(database_url, "score", "--workspace", workspace.name, "--full")
    assert done.returncode == 0, done.stderr
    m = re.search(r"full run \w+: 2 accounts scored, 2 changed, [\d.]+ s", done.stdout)
    assert m, done.stdout
    assert row(engine, workspace.id, a)["rtp_website_intent_score"] == 25.0
    done = intently(database_url, "score", "--workspace", workspace.name)
    assert done.returncode == 0, done.stderr
    assert "incremental run" in done.stdout and "0 changed" in done.stdout
    done = intently(database_url, "score", "--workspace", "no-such-workspace")
    assert done.returncode == 2 and "workspace 'no-such-workspace' not found" in done.stderr
