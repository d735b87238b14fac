"""`intently demo`: the synthetic world as stored, scored and staged, and the command."""

from __future__ import annotations

import re
import shlex
import statistics
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from intently.accounts.tables import accounts
from intently.activities.tables import activities, contacts
from intently.auth.tables import workspaces
from intently.auth.users import list_users, verify_login
from intently.cli.main import app
from intently.deals.tables import deal_accounts, deals
from intently.demo import world as w
from intently.demo.service import DemoSummary, build_demo
from intently.ingest.tables import web_events
from intently.kit.db import read_tx
from intently.kit.errors import Conflict
from intently.kit.timefmt import now_us
from intently.segments import service as segments_service
from intently.settings import get_settings
from intently.signals.tables import ingest_runs, signals
from intently.stages.tables import journey_days
from tests.support.api import Workspace

US_PER_DAY = 86_400_000_000
ADMIN = "admin@demo.example.com"


def fresh_name() -> str:
    return f"demo-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def built(engine: Any) -> DemoSummary:
    """One 400-account demo, read (never changed) by the tests below."""
    return build_demo(engine, fresh_name(), 400, seed=7)


def count(engine: Any, table: Any, ws: int, *where: Any) -> int:
    with read_tx(engine) as conn:
        n = conn.execute(
            select(func.count()).select_from(table).where(table.c.workspace_id == ws, *where)
        ).scalar()
    return int(n or 0)


# ---- what is stored ---------------------------------------------------------------------------


def test_counts_are_those_of_a_plausible_crm(engine: Any, built: DemoSummary) -> None:
    ws = built.workspace_id
    assert count(engine, accounts, ws) == 400
    n_deals = count(engine, deals, ws)
    assert n_deals == built.deals
    assert 20 <= n_deals <= 160  # a pipeline, not every account
    assert count(engine, deal_accounts, ws) == n_deals
    assert built.activities == count(engine, activities, ws) >= n_deals
    assert 0 < count(engine, contacts, ws) == built.contacts
    with read_tx(engine) as conn:
        stage_labels = set(
            conn.execute(select(deals.c.stage_label).where(deals.c.workspace_id == ws)).scalars()
        )
        by_source = dict(
            conn.execute(
                select(signals.c.source, func.count())
                .where(signals.c.workspace_id == ws)
                .group_by(signals.c.source)
            ).all()
        )
        runs = conn.execute(
            select(ingest_runs.c.source, ingest_runs.c.status, ingest_runs.c.rejected)
            .where(ingest_runs.c.workspace_id == ws)
        ).all()  # fmt: skip
    assert {w.WON, w.LOST} <= stage_labels and len(stage_labels & set(w.DEAL_STAGES_OPEN)) >= 3
    assert by_source == built.signals
    assert set(by_source) == {"website", "bombora", "g2", "linkedin"}
    # Visits dominate; G2 research is rare; every source has a real volume.
    assert by_source["website"] > by_source["bombora"] > by_source["g2"] >= 20
    assert by_source["linkedin"] >= 100
    # Every import ran to the end and refused nothing the demo wrote.
    assert {r[0] for r in runs} >= {"website", "bombora", "g2", "linkedin"}
    assert all(r[1] == "done" and r[2] == 0 for r in runs), runs


def test_signals_are_stored_as_their_importers_store_them(engine: Any, built: DemoSummary) -> None:
    ws = built.workspace_id
    with read_tx(engine) as conn:
        kinds = set(
            conn.execute(
                select(signals.c.source, signals.c.type, signals.c.match_method, signals.c.provider)
                .where(signals.c.workspace_id == ws)
                .distinct()
            ).all()
        )
        pricing = conn.execute(
            select(func.count())
            .select_from(signals)
            .where(
                signals.c.workspace_id == ws,
                signals.c.type == "high_value_page_view",
                signals.c.topic == "pricing",
            )
        ).scalar()
        pages = conn.execute(
            select(web_events.c.path, web_events.c.title, web_events.c.domain)
            .where(web_events.c.workspace_id == ws, web_events.c.type == "page")
            .limit(50)
        ).all()
    # Website: page views resolved by the workspace's IP ranges; forms by the identify email.
    assert ("website", "page_view", "ip", "ranges") in kinds
    assert ("website", "high_value_page_view", "ip", "ranges") in kinds
    assert pricing and pricing > 0
    assert any(k[:2] == ("website", "form_submit") for k in kinds)
    assert ("bombora", "surge", "domain", "bombora") in kinds
    assert any(k[0] == "g2" and k[1] == "pricing" for k in kinds)
    assert ("linkedin", "ad_impression", "linkedin_url", "linkedin") in kinds
    # The collector kept each visit's page, so a timeline can show what was read.
    assert pages and all(p[0].startswith("/") and p[1] and p[2] for p in pages)


def test_every_account_is_scored_and_staged(engine: Any, built: DemoSummary) -> None:
    ws = built.workspace_id
    assert count(engine, accounts, ws, accounts.c.score_model_version.is_(None)) == 0
    assert count(engine, accounts, ws, accounts.c.rtp_journey_stage.is_(None)) == 0
    assert count(engine, accounts, ws, accounts.c.rtp_account_score > 0) >= 200
    today = now_us() // US_PER_DAY
    assert count(engine, journey_days, ws, journey_days.c.day == today) == 400
    assert sum(built.stages.values()) == 400
    # The CRM puts some on the journey's end, intent spreads the rest across it.
    for stage in ("Customer", "Opportunity", "Decision", "Consideration", "Engaged", "Aware"):
        assert built.stages.get(stage, 0) > 0, built.stages


def test_segments_follow_the_scored_workspace(engine: Any, built: DemoSummary) -> None:
    ws = built.workspace_id
    found = {s["name"]: s for s in segments_service.all_segments(engine, ws)}
    assert len(found) == built.segments == 5
    assert found["Tier 1 target list"]["type"] == "static"
    assert found["Tier 1 target list"]["memberCount"] == 400 // 33
    # Open deals make the Opportunity stage and the open-opportunity segment alike.
    assert found["Open opportunities"]["memberCount"] == built.stages["Opportunity"]
    hot = found["Hot accounts (score 50+)"]["memberCount"]
    assert hot == count(engine, accounts, ws, accounts.c.rtp_account_score >= 50)


def intent_before_deals(
    engine: Any, ws: int, now: int | None = None
) -> tuple[list[int], list[float]]:
    """From the stored signals: per account whose first deal was opened 30 or more days
    into the window, its signals in the 30 days before the deal; and for each, the mean
    over accounts without any deal of their signals in those same 30 days."""
    today = (now_us() if now is None else now) // US_PER_DAY
    first_day = today - w.WINDOW_DAYS + 1
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(signals.c.domain, signals.c.day, func.count())
            .where(signals.c.workspace_id == ws)
            .group_by(signals.c.domain, signals.c.day)
        ).all()
        opened = conn.execute(
            select(deal_accounts.c.domain, func.min(deals.c.start_date))
            .join(
                deals,
                (deals.c.workspace_id == deal_accounts.c.workspace_id)
                & (deals.c.id == deal_accounts.c.deal_id),
            )
            .where(deal_accounts.c.workspace_id == ws)
            .group_by(deal_accounts.c.domain)
        ).all()
        domains = list(
            conn.execute(select(accounts.c.domain).where(accounts.c.workspace_id == ws)).scalars()
        )
    daily: dict[str, dict[int, int]] = {}
    for domain, day, n in rows:
        daily.setdefault(domain, {})[int(day)] = int(n)
    with_deal = {d: int(start) // US_PER_DAY for d, start in opened}
    without = [d for d in domains if d not in with_deal]
    assert len(without) > len(with_deal) > 0

    def window(domain: str, end: int) -> int:
        days = daily.get(domain, {})
        return sum(days.get(day, 0) for day in range(end - 30, end))

    deal_counts: list[int] = []
    baselines: list[float] = []
    for domain, day in with_deal.items():
        if day < first_day + 30:
            continue  # too early (or an old customer's): no 30 days of signals before it
        deal_counts.append(window(domain, day))
        baselines.append(statistics.fmean(window(d, day) for d in without))
    return deal_counts, baselines


def test_accounts_that_opened_deals_showed_more_intent_before(
    engine: Any, built: DemoSummary
) -> None:
    deal_counts, baselines = intent_before_deals(engine, built.workspace_id)
    assert len(deal_counts) >= 8
    # Several times the activity of the accounts that opened no deal, over the same days
    # (measured over seeds and days: 3.4x to 7x)...
    assert statistics.fmean(deal_counts) > 2.5 * statistics.fmean(baselines)
    # ... and not from a few loud accounts: the typical deal account had twice the
    # baseline, and most of them did (some deals are inbound, with no intent before).
    assert statistics.median(deal_counts) > 2 * statistics.fmean(baselines)
    above = sum(1 for n, base in zip(deal_counts, baselines, strict=True) if n > 2 * base)
    assert above > 0.5 * len(deal_counts)


# ---- the generator ----------------------------------------------------------------------------


def test_the_same_seed_makes_the_same_world() -> None:
    now = 1_790_000_000 * 1_000_000
    a, b = w.generate(60, 3, now), w.generate(60, 3, now)
    assert [c.domain for c in a.companies] == [c.domain for c in b.companies]
    assert a.page_views == b.page_views and a.deals == b.deals and a.g2 == b.g2
    other = w.generate(60, 4, now)
    assert [c.domain for c in other.companies] != [c.domain for c in a.companies]
    assert len({c.domain for c in a.companies}) == 60
    assert all(v.at <= now for v in a.page_views)
    assert all(now - d.created < 600 * US_PER_DAY for d in a.deals)
    with pytest.raises(ValueError, match="accounts should be at least 1; got 0"):
        w.generate(0)


# ---- rebuilding -------------------------------------------------------------------------------


def test_an_existing_demo_is_refused_unless_reset(engine: Any) -> None:
    name = fresh_name()
    first = build_demo(engine, name, 40, seed=11)
    with pytest.raises(Conflict, match=f"Workspace '{name}' already holds accounts"):
        build_demo(engine, name, 40, seed=11)
    again = build_demo(engine, name, 25, seed=12, reset=True)
    ws = again.workspace_id
    assert ws == first.workspace_id
    # Nothing of the first world is left: counts are the second world's alone.
    assert count(engine, accounts, ws) == 25
    assert count(engine, deals, ws) == again.deals
    assert count(engine, signals, ws) == sum(again.signals.values())
    assert count(engine, web_events, ws) == again.web_events


# ---- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[CliRunner]:
    """A CliRunner whose commands use the test database (settings are cached: cleared)."""
    monkeypatch.setenv("INTENTLY_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "160")
    get_settings.cache_clear()
    yield CliRunner()
    monkeypatch.undo()
    get_settings.cache_clear()


def password_of(output: str) -> str:
    found = re.search(r"^Password:\s+(\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def signs_in(engine: Any, password: str, workspace: str) -> bool:
    return any(m.workspace_name == workspace for m in verify_login(engine, ADMIN, password))


def test_demo_command_builds_prints_the_login_and_it_signs_in(engine: Any, cli: CliRunner) -> None:
    name = fresh_name()
    args = ["demo", "--no-serve", "--accounts", "200", "--workspace", name]
    done = cli.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "Dashboard: http://127.0.0.1:8000/app/" in done.stdout
    assert f"Email:     {ADMIN}" in done.stdout
    first = password_of(done.stdout)
    assert signs_in(engine, first, name)
    assert "accounts" in done.output and "200" in done.output  # the summary

    # The key command it prints is for the demo workspace: no second, empty one is made.
    command = next(line for line in done.stdout.splitlines() if line.startswith("API key:"))
    args_shown = shlex.split(command.removeprefix("API key:"))
    assert args_shown[:3] == ["intently", "keys", "generate"]
    email_at = args_shown.index("--email") + 1
    args_shown[email_at] = "newcomer@demo.example.com"
    keyed = cli.invoke(app, args_shown[1:])
    assert keyed.exit_code == 0, keyed.output
    key = keyed.stdout.strip().splitlines()[-1]
    with read_tx(engine) as conn:
        ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.name == name)).scalar()
    assert {u.email for u in list_users(engine, ws_id)} >= {"newcomer@demo.example.com"}
    assert key.startswith("itly_")

    # Again: the demo is left as it is, and the admin gets a new password.
    done = cli.invoke(app, [*args, "--port", "8123"])
    assert done.exit_code == 0, done.output
    assert "already holds the demo; left as it is" in done.output
    assert "Dashboard: http://127.0.0.1:8123/app/" in done.stdout
    second = password_of(done.stdout)
    assert second != first
    assert signs_in(engine, second, name) and not signs_in(engine, first, name)

    # --reset rebuilds it, here smaller.
    done = cli.invoke(
        app, ["demo", "--no-serve", "--accounts", "30", "--workspace", name, "--reset"]
    )
    assert done.exit_code == 0, done.output
    assert signs_in(engine, password_of(done.stdout), name)
    ws_id = next(m.workspace_id for m in verify_login(engine, ADMIN, password_of(done.stdout)))
    assert count(engine, accounts, ws_id) == 30


def test_demo_command_refuses_a_workspace_that_is_not_a_demo(
    engine: Any, cli: CliRunner, workspace: Workspace
) -> None:
    pushed = workspace.api.post(
        "/accounts", json={"accounts": [{"domain": "real-customer.com", "name": "Real"}]}
    )
    assert pushed.status_code in (200, 201, 207), pushed.text
    done = cli.invoke(app, ["demo", "--no-serve", "--workspace", workspace.name])
    assert done.exit_code == 2
    assert f"workspace '{workspace.name}' holds data and is not a demo workspace" in done.output
    assert count(engine, accounts, workspace.id) == 1
    assert ADMIN not in {u.email for u in list_users(engine, workspace.id)}
