"""G2 Buyer Intent: the tag map, the CSV export importer and the event stream puller.

Imports go through `import_file` (and once through `python -m intently import g2`), and
are checked through the API (runs, rejects, an account's signals) and the rollup. The
puller talks real HTTP to `fake_g2.FakeG2`, with sleeps injected and a fixed clock.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from intently.ingest import g2
from intently.ingest.connections import describe, get_connection, save_state, set_connection
from intently.ingest.files import FileFormatError
from intently.kit.db import read_tx
from intently.kit.errors import BadRequest, NotFound
from intently.kit.timefmt import parse_iso8601
from intently.settings import Settings
from intently.signals.schemas import DEFAULT_G2_TAG_MAP
from intently.signals.store import day_of
from tests.support.api import Api, Workspace
from tests.support.cli import intently
from tests.support.data import push_account, signals_of
from tests.support.fake_g2 import COMPANIES, Event, FakeG2, Script
from tests.support.outbound import LOCAL, Rebinding, guarded

HEADER = "Id,Time,Tag,Title,URL,Company Name,Company Domain"
KEY = "g2-test-credentials-key-" + "x" * 16
TOKEN = "g2tok-" + uuid.uuid4().hex  # distinctive, so a leak anywhere is found by search
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_file(tmp_path: Path, *lines: str, header: str = HEADER, name: str = "g2.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def rejects_of(api: Api, **params: str) -> list[dict[str, Any]]:
    r = api.get("/ingest/rejects", params={"source": "g2", "limit": 100, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def stored(engine: Any, ws: int) -> list[tuple[Any, ...]]:
    """(natural key, domain, type, topic, occurred_at) of the workspace's g2 signals."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT natural_key, domain, type, topic, occurred_at FROM signals "
                "WHERE workspace_id = :ws AND source = 'g2' ORDER BY occurred_at, natural_key"
            ),
            {"ws": ws},
        ).all()
    return [tuple(r) for r in rows]


def rollup(engine: Any, ws: int) -> dict[tuple[Any, ...], int]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, type, topic, day, count FROM signal_daily "
                "WHERE workspace_id = :ws AND source = 'g2' AND count <> 0"
            ),
            {"ws": ws},
        ).all()
    return {tuple(r[:4]): int(r[4]) for r in rows}


# ---- tag map and topics -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("products.pricing", "pricing"),
        ("comparisons.show", "comparison"),
        ("products.competitors", "alternatives"),
        ("categories.show", "category"),
        ("categories.learn", "category"),
        ("categories.anything_new", "category"),
        ("products.reviews", "profile"),
        ("products.features", "profile"),
        ("products.details", "profile"),
        ("products.discussions", "profile"),
        ("ad.category_competitor.product_left_sidebar", "sponsored"),
        ("reports.show", "other"),
        ("products.pricing.extra", "other"),
        ("categories", "other"),
        ("", "other"),
        ("  Products.PRICING ", "pricing"),
        ("CATEGORIES.Show", "category"),
    ],
)
def test_default_tag_map(tag: str, expected: str) -> None:
    assert g2.signal_type(tag, DEFAULT_G2_TAG_MAP) == expected


def test_the_first_matching_rule_wins() -> None:
    rules = [
        {"tag": "products.*", "type": "profile"},
        {"tag": "products.pricing", "type": "pricing"},
    ]
    assert g2.signal_type("products.pricing", rules) == "profile"
    assert g2.signal_type("products.pricing", rules[1:]) == "pricing"
    assert g2.signal_type("Comparisons.Show", [{"tag": "COMPARISONS.*", "type": "comparison"}]) == (
        "comparison"
    )
    assert g2.signal_type("products.pricing", []) == "other"


@pytest.mark.parametrize(
    ("url", "title", "topic"),
    [
        ("https://www.g2.com/products/hubspot-crm/reviews", "", "hubspot-crm"),
        ("https://www.g2.com/products/Acme-CRM/pricing?x=1", "t", "acme-crm"),
        ("https://www.g2.com/products/acme/competitors/alternatives", "", "acme"),
        ("https://www.g2.com/categories/crm", "CRM Software", "crm"),
        ("https://www.g2.com/categories/crm/learn", "", "crm"),
        ("https://www.g2.com/compare/hubspot-crm-vs-salesforce", "", "hubspot-crm vs salesforce"),
        ("https://www.g2.com/compare/a-vs-b-vs-c", "", "a vs b vs c"),
        ("/de/products/acme/reviews", "", "acme"),
        ("https://www.g2.com/reports/crm-grid", "CRM Grid Report | G2", "CRM Grid Report"),
        ("", "  Acme   Pricing - G2 ", "Acme Pricing"),
        ("https://www.g2.com/products", "Products", "Products"),
        ("", "", ""),
    ],
)
def test_topic_is_the_product_or_category(url: str, title: str, topic: str) -> None:
    assert g2.topic_of(url, title) == topic


# ---- the CSV export ---------------------------------------------------------------------------


def printed_counts(stdout: str) -> dict[str, str]:
    """The report table's rows: name -> value (counts and the run id)."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if len(cells) == 2:
            out[cells[0]] = cells[1]
    return out


def test_cli_import_happy_path(tmp_path: Path, database_url: str, workspace: Workspace) -> None:
    path = csv_file(
        tmp_path,
        "ev-1,2026-04-20T10:15:00Z,products.pricing,Acme Pricing | G2,"
        "https://www.g2.com/products/acme-crm/pricing,Globex,globex.com",
        "ev-2,2026-04-21T09:00:00Z,comparisons.show,,"
        "https://www.g2.com/compare/acme-crm-vs-zenith,Globex,https://www.Globex.com/",
        ",2026-04-22,categories.show,CRM Software,https://www.g2.com/categories/crm,Globex,"
        "globex.com",
        "ev-4,2026-04-22T11:00:00+02:00,products.reviews,,"
        "https://www.g2.com/products/acme-crm/reviews,Initech,initech.io",
    )
    r = intently(database_url, "import", "g2", str(path), "--workspace", workspace.name)
    assert r.returncode == 0, r.stderr
    counts = printed_counts(r.stdout)
    assert (counts["read"], counts["accepted"], counts["duplicate"], counts["rejected"]) == (
        "4", "4", "0", "0",
    )  # fmt: skip
    run = workspace.api.get(f"/ingest/runs/{counts['run id']}")
    assert run.status_code == 200, run.text
    data = run.json()["data"]
    assert data["source"] == "g2" and data["kind"] == "file" and data["label"] == "g2.csv"
    assert (data["status"], data["read"], data["accepted"], data["rejected"]) == ("done", 4, 4, 0)
    assert rejects_of(workspace.api) == []

    got = signals_of(workspace.api, push_account(workspace.api, "globex.com"), "g2")
    assert [(s["type"], s["topic"], s["occurredAt"]) for s in got] == [
        ("category", "crm", "2026-04-22T00:00:00.000Z"),
        ("comparison", "acme-crm vs zenith", "2026-04-21T09:00:00.000Z"),
        ("pricing", "acme-crm", "2026-04-20T10:15:00.000Z"),
    ]
    assert {(s["source"], s["value"], s["provider"], s["matchMethod"], s["confidence"])
            for s in got} == {("g2", 1.0, "g2", "domain", 1.0)}  # fmt: skip
    [initech] = signals_of(workspace.api, push_account(workspace.api, "initech.io"), "g2")
    assert (initech["type"], initech["occurredAt"]) == ("profile", "2026-04-22T09:00:00.000Z")


def test_every_rejection_reason_with_its_line(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    path = csv_file(
        tmp_path,
        "a1,2026-04-20T10:00:00Z,products.pricing,,,Acme,acme.com",  # line 2: fine
        "a2,2026-04-20T10:00:00Z,products.pricing,,,Nameless Corp,",  # 3
        "a3,2026-04-20T10:00:00Z,products.pricing,,,Bad Co,not a domain",  # 4
        "a4,2026-04-20T10:00:00Z,,,,Acme,acme.com",  # 5
        "",  # 6: blank, skipped
        "a5,yesterday,products.pricing,,,Acme,acme.com",  # 7
        "a6,,products.pricing,,,Acme,acme.com",  # 8
        "a7,2026-04-20T10:00:00Z",  # 9: a short row
    )
    report = g2.import_file(engine, workspace.id, path)
    assert (report.status, report.read, report.accepted, report.rejected) == ("done", 7, 1, 6)
    assert dict(report.rejected_by_reason) == {
        "missing_domain": 2, "invalid_domain": 1, "missing_tag": 1, "invalid_date": 2,
    }  # fmt: skip
    got = {r["line"]: r for r in rejects_of(workspace.api, runId=report.run_id)}
    assert {line: r["reason"] for line, r in got.items()} == {
        3: "missing_domain", 4: "invalid_domain", 5: "missing_tag", 7: "invalid_date",
        8: "invalid_date", 9: "missing_domain",
    }  # fmt: skip
    assert got[3]["detail"] == "Company Domain is empty for company 'Nameless Corp'"
    assert got[4]["detail"] == "Company Domain 'not a domain' is not a domain"
    assert got[5]["detail"] == "Tag is empty"
    assert got[7]["detail"] == "Time 'yesterday' is not an ISO 8601 date or date-time"
    assert got[8]["detail"] == "Time is empty"
    assert got[9]["detail"] == "Company Domain is empty for an unnamed company"
    assert got[3]["record"] == {
        "Id": "a2", "Time": "2026-04-20T10:00:00Z", "Tag": "products.pricing", "Title": "",
        "URL": "", "Company Name": "Nameless Corp", "Company Domain": "",
    }  # fmt: skip
    assert got[9]["record"]["Company Name"] == ""
    assert {r["source"] for r in got.values()} == {"g2"}
    assert len(stored(engine, workspace.id)) == 1


def test_a_file_that_is_not_a_g2_export_fails_fast(
    tmp_path: Path, engine: Any, database_url: str, workspace: Workspace
) -> None:
    path = csv_file(
        tmp_path,
        "Acme,acme.com,51-200,Software,Tech,CRM,71,A",
        header="Company Name,Domain,Size,Industry,Category,Topic,Composite Score,Bucket Code",
        name="surge.csv",
    )
    with pytest.raises(FileFormatError) as err:
        g2.import_file(engine, workspace.id, path)
    message = err.value.custom_message
    assert message == (
        "surge.csv is not a G2 Buyer Intent export: missing column(s) Time, Tag; "
        "expected Time, Tag, Company Name, Company Domain; found Company Name, Domain, Size, "
        "Industry, Category, Topic, Composite Score, Bucket Code"
    )
    r = intently(database_url, "import", "g2", str(path), "--workspace", workspace.name)
    assert r.returncode == 2
    assert "missing column(s) Time, Tag" in " ".join(r.stderr.split())
    runs = workspace.api.get("/ingest/runs", params={"source": "g2"}).json()["data"]["data"]
    assert runs == []


def test_column_aliases_and_time_spellings(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    path = csv_file(
        tmp_path,
        "x1,2026-04-01,products.pricing,Acme,HTTPS://WWW.ACME.COM/about,",
        "x2,2026-04-01T10:00:00+02:00,products.pricing,Acme,acme.com,",
        "x3,2026-04-01T10:00:00,products.pricing,Acme,acme.com,",
        "x4,2026-04-01 11:30:00 UTC,Categories.Show,Acme,acme.com,https://www.g2.com/categories/crm",
        header="Event Id, timestamp ,ACTIVITY,Organization,Website,Page URL",
    )
    report = g2.import_file(engine, workspace.id, path)
    assert (report.accepted, report.rejected) == (4, 0)
    got = sorted(
        (s["occurredAt"], s["type"], s["topic"])
        for s in signals_of(workspace.api, push_account(workspace.api, "acme.com"), "g2")
    )
    assert got == [
        ("2026-04-01T00:00:00.000Z", "pricing", None),
        ("2026-04-01T08:00:00.000Z", "pricing", None),
        ("2026-04-01T10:00:00.000Z", "pricing", None),
        ("2026-04-01T11:30:00.000Z", "category", "crm"),
    ]
    assert [k for k, *_ in stored(engine, workspace.id)] == ["id:x1", "id:x2", "id:x3", "id:x4"]


def test_reimport_changes_nothing(tmp_path: Path, engine: Any, workspace: Workspace) -> None:
    lines = [
        "e1,2026-04-20T10:00:00Z,products.pricing,,https://www.g2.com/products/a/pricing,A,a.com",
        ",2026-04-20T10:00:00Z,products.reviews,,https://www.g2.com/products/a/reviews,A,a.com",
        ",2026-04-21T10:00:00Z,products.reviews,,https://www.g2.com/products/a/reviews,A,a.com",
        ",2026-04-21,categories.show,,,B,b.io",
        "e5,2026-04-21,,,,B,b.io",
    ]
    path = csv_file(tmp_path, *lines)
    first = g2.import_file(engine, workspace.id, path)
    assert (first.accepted, first.duplicate, first.rejected) == (4, 0, 1)
    signals, daily = stored(engine, workspace.id), rollup(engine, workspace.id)

    again = g2.import_file(engine, workspace.id, path)
    assert (again.read, again.accepted, again.updated, again.duplicate) == (5, 0, 0, 4)
    # The same rows gzipped, and spelled differently (time offset, domain as a URL, tag case).
    gz = tmp_path / "g2.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert g2.import_file(engine, workspace.id, gz).duplicate == 4
    respelled = csv_file(
        tmp_path,
        ",2026-04-20T12:00:00+02:00,Products.Reviews,,https://www.g2.com/products/a/reviews,A,"
        "https://www.a.com/",
        name="respelled.csv",
    )
    assert g2.import_file(engine, workspace.id, respelled).duplicate == 1
    assert stored(engine, workspace.id) == signals
    assert rollup(engine, workspace.id) == daily


def test_an_edited_tag_map_changes_the_types(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    path = csv_file(
        tmp_path,
        "t1,2026-04-20T10:00:00Z,products.pricing,,,A,a.com",
        "t2,2026-04-20T11:00:00Z,reports.show,,,A,a.com",
        "t3,2026-04-20T12:00:00Z,comparisons.show,,,A,a.com",
    )
    g2.import_file(engine, workspace.id, path)
    aid = push_account(workspace.api, "a.com")
    assert sorted(s["type"] for s in signals_of(workspace.api, aid, "g2")) == [
        "comparison", "other", "pricing",
    ]  # fmt: skip
    tag_map = [{"tag": "reports.*", "type": "category"}, {"tag": "products.*", "type": "profile"}]
    r = workspace.api.put("/sources/g2/settings", json={"tagMap": tag_map})
    assert r.status_code == 200, r.text
    # Same events, new types: the stored signals are revised, not copied.
    report = g2.import_file(engine, workspace.id, path)
    assert (report.accepted, report.updated, report.duplicate) == (0, 3, 0)
    assert sorted(s["type"] for s in signals_of(workspace.api, aid, "g2")) == [
        "category", "other", "profile",
    ]  # fmt: skip
    assert sum(rollup(engine, workspace.id).values()) == 3


def test_late_data_counts_on_the_day_it_happened(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    path = csv_file(
        tmp_path,
        f"old,{iso(old)},products.pricing,,https://www.g2.com/products/z/pricing,Z,z.io",
        f"new,{iso(datetime.now(UTC))},products.pricing,,https://www.g2.com/products/z/pricing,Z,"
        "z.io",
    )
    g2.import_file(engine, workspace.id, path)
    old_day = day_of(parse_iso8601(iso(old)))
    today = day_of(parse_iso8601(iso(datetime.now(UTC))))
    days = rollup(engine, workspace.id)
    assert days[("z.io", "pricing", "z", old_day)] == 1
    assert sum(n for (_, _, _, day), n in days.items() if day == today) == 1
    assert sum(days.values()) == 2


def test_an_account_created_after_its_signals_gets_them(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    path = csv_file(
        tmp_path,
        "l1,2026-04-20T10:00:00Z,products.pricing,,,Later,later.dev",
        "l2,2026-04-21T10:00:00Z,categories.show,,,Later,later.dev",
    )
    assert g2.import_file(engine, workspace.id, path).accepted == 2
    aid = push_account(workspace.api, "https://www.later.dev")
    assert [s["type"] for s in signals_of(workspace.api, aid, "g2")] == ["category", "pricing"]


def test_imports_stay_in_their_workspace(
    tmp_path: Path, engine: Any, workspace: Workspace, other: Workspace
) -> None:
    path = csv_file(
        tmp_path,
        "p1,2026-04-20T10:00:00Z,products.pricing,,,Private,private.io",
        "p2,2026-04-20T10:00:00Z,products.pricing,,,Nameless,",
    )
    report = g2.import_file(engine, workspace.id, path)
    assert len(rejects_of(workspace.api)) == 1
    assert rejects_of(other.api) == []
    assert other.api.get(f"/ingest/runs/{report.run_id}").status_code == 404
    assert other.api.get("/ingest/runs", params={"source": "g2"}).json()["data"]["data"] == []
    assert signals_of(other.api, push_account(other.api, "private.io"), "g2") == []
    assert stored(engine, other.id) == []
    # The same file in the other workspace is new there, not a duplicate of the first.
    assert g2.import_file(engine, other.id, path).accepted == 1


def test_progress_is_reported_in_bytes(tmp_path: Path, engine: Any, workspace: Workspace) -> None:
    path = csv_file(tmp_path, "g1,2026-04-20T10:00:00Z,products.pricing,,,A,a.com")
    seen: list[tuple[int, int, int]] = []
    g2.import_file(
        engine, workspace.id, path, on_progress=lambda r, done, total: seen.append(
            (r.read, done, total))
    )  # fmt: skip
    assert seen and seen[-1] == (1, path.stat().st_size, path.stat().st_size)


# ---- the event stream puller ------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeG2]:
    server = FakeG2(TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, credentials_key=KEY, outbound_allow=LOCAL)


def connect(engine: Any, ws: int, base_url: str, token: str = TOKEN, **config: Any) -> None:
    set_connection(
        engine, ws, "g2", key=KEY, credentials={"token": token},
        config={"base_url": base_url, **config},
    )  # fmt: skip


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def at(hours_before_now: float) -> str:
    return iso(NOW - timedelta(hours=hours_before_now))


def state(engine: Any, ws: int) -> dict[str, Any]:
    return get_connection(engine, ws, "g2", key=KEY)


def test_pull_walks_every_page_following_links_next(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(*[Event(f"e{i:02d}", at(20 - i * 0.25), "products.pricing", "c1",
                     url="https://www.g2.com/products/acme/pricing", embed="included")
               for i in range(60)])  # fmt: skip
    connect(engine, workspace.id, fake.url, initial_days=1)
    sleeps = Sleeps()
    report = g2.pull(engine, workspace.id, settings=settings, sleep=sleeps, now=NOW)
    assert (report.status, report.read, report.accepted, report.rejected) == ("done", 60, 60, 0)
    assert report.label == f"events {at(24)} to {iso(NOW)}"
    reqs = fake.event_requests()
    assert [r.query.get("page[number]") for r in reqs] == [None, "2", "3"]
    assert {(r.query["filter[start_time]"], r.query["filter[end_time]"], r.query["page[size]"])
            for r in reqs} == {(at(24), iso(NOW), "25")}  # fmt: skip
    assert fake.company_requests() == []  # every company came in `included`
    assert sleeps == []
    rows = stored(engine, workspace.id)
    assert len(rows) == 60 and {r[1:4] for r in rows} == {("acme.com", "pricing", "acme")}
    conn = state(engine, workspace.id)
    assert conn["state"] == {"last_end": iso(NOW)}
    assert (conn["last_status"], conn["last_error"]) == ("done", None)
    run = workspace.api.get(f"/ingest/runs/{report.run_id}").json()["data"]
    assert (run["kind"], run["status"], run["accepted"], run["label"]) == (
        "pull", "done", 60, report.label,
    )  # fmt: skip


def test_companies_come_from_included_or_their_related_link(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.company("c2", "Beta", "https://www.Beta.io/")
    fake.company("c3", "No Domain Inc", None)
    fake.company("c5", "Broken", "n/a")
    fake.add(
        Event("i1", at(5), "products.pricing", "c1", embed="included",
              url="https://www.g2.com/products/acme/pricing"),
        Event("r1", at(4), "comparisons.show", "c2",
              url="https://www.g2.com/compare/acme-vs-beta"),
        Event("r2", at(3.5), "categories.show", "c2", url="https://www.g2.com/categories/crm"),
        Event("r3", at(3), "products.reviews", "c2", title="Beta Reviews | G2"),
        Event("x1", at(2.5), "products.pricing", "c3"),
        Event("x2", at(2.4), "products.pricing", "c4"),  # G2 answers 404 for c4
        Event("x3", at(2.3), "products.pricing", None, embed="none"),
        Event("x4", at(2.2), "products.pricing", "c5"),
        Event("x5", at(2.1), "", "c1", embed="included"),
        Event("x6", "last tuesday", "products.pricing", "c1", embed="included"),
    )  # fmt: skip
    connect(engine, workspace.id, fake.url, initial_days=1)
    report = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert (report.status, report.read, report.accepted, report.rejected) == ("done", 10, 4, 6)
    assert dict(report.rejected_by_reason) == {
        "missing_domain": 3, "invalid_domain": 1, "missing_tag": 1, "invalid_date": 1,
    }  # fmt: skip
    # Each related company is fetched once per pull, however many events point at it.
    assert sorted(r.path for r in fake.company_requests()) == [
        COMPANIES + "c2", COMPANIES + "c3", COMPANIES + "c4", COMPANIES + "c5",
    ]  # fmt: skip
    got = sorted((k, d, t, topic) for k, d, t, topic, _ in stored(engine, workspace.id))
    assert got == [
        ("id:i1", "acme.com", "pricing", "acme"),
        ("id:r1", "beta.io", "comparison", "acme vs beta"),
        ("id:r2", "beta.io", "category", "crm"),
        ("id:r3", "beta.io", "profile", "Beta Reviews"),
    ]
    rejects = {r["ref"]: r for r in rejects_of(workspace.api, runId=report.run_id)}
    assert {ref: r["reason"] for ref, r in rejects.items()} == {
        "x1": "missing_domain", "x2": "missing_domain", "x3": "missing_domain",
        "x4": "invalid_domain", "x5": "missing_tag", "x6": "invalid_date",
    }  # fmt: skip
    assert rejects["x1"]["detail"] == "the company's domain is empty for company 'No Domain Inc'"
    assert (
        rejects["x2"]["detail"]
        == rejects["x3"]["detail"]
        == ("G2 gave no company for the event (no included resource or related link)")
    )
    assert rejects["x4"]["detail"] == "the company's domain 'n/a' is not a domain"
    assert rejects["x6"]["detail"] == (
        "attributes.time 'last tuesday' is not an ISO 8601 date or date-time"
    )
    assert rejects["x1"]["line"] is None
    event = rejects["x3"]["record"]["event"]
    assert (event["id"], event["attributes"]["tag"]) == ("x3", "products.pricing")
    assert rejects["x1"]["record"]["company"]["name"] == "No Domain Inc"


def test_the_auth_header_and_time_filters_sent(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    connect(engine, workspace.id, fake.url)  # first pull: the last 30 days, a day at a time
    report = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert report.status == "done"
    reqs = fake.event_requests()
    assert len(reqs) == 30
    for r in reqs:
        assert r.headers["Authorization"] == f"Token token={TOKEN}"
        assert r.headers["Accept"] == "application/vnd.api+json"
        assert r.headers["Content-Type"] == "application/vnd.api+json"
        assert r.query["page[size]"] == "25"
    windows = [(r.query["filter[start_time]"], r.query["filter[end_time]"]) for r in reqs]
    assert windows[0][0] == iso(NOW - timedelta(days=30)) and windows[-1][1] == iso(NOW)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert state(engine, workspace.id)["state"] == {"last_end": iso(NOW)}


def test_a_second_pull_resumes_where_the_first_ended(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(
        Event("e1", at(2), "products.pricing", "c1"),
        Event("e2", iso(NOW), "products.pricing", "c1"),  # on the boundary: read twice
    )
    connect(engine, workspace.id, fake.url, initial_days=1)
    first = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert (first.accepted, first.duplicate) == (2, 0)
    fake.add(Event("e3", iso(NOW + timedelta(minutes=30)), "categories.show", "c1"))
    fake.requests.clear()
    later = NOW + timedelta(hours=1)
    second = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=later)
    assert (second.status, second.read, second.accepted, second.duplicate) == ("done", 2, 1, 1)
    [req] = fake.event_requests()
    assert (req.query["filter[start_time]"], req.query["filter[end_time]"]) == (
        iso(NOW), iso(later),
    )  # fmt: skip
    keys = [k for k, *_ in stored(engine, workspace.id)]
    assert keys == ["id:e1", "id:e2", "id:e3"]
    assert state(engine, workspace.id)["state"] == {"last_end": iso(later)}
    assert sum(rollup(engine, workspace.id).values()) == 3


def test_429_waits_as_long_as_retry_after_says(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(Event("e1", at(2), "products.pricing", "c1"))
    fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=429,
                       headers={"Retry-After": "7"}))  # fmt: skip
    fake.script(Script(path=COMPANIES, status=429, headers={"Retry-After": "3"}))
    connect(engine, workspace.id, fake.url, initial_days=1)
    sleeps = Sleeps()
    report = g2.pull(engine, workspace.id, settings=settings, sleep=sleeps, now=NOW)
    assert (report.status, report.accepted) == ("done", 1)
    assert sleeps == [7.0, 3.0]
    assert len(fake.event_requests()) == 2 and len(fake.company_requests()) == 2


def test_5xx_is_retried_with_growing_jittered_waits(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(Event("e1", at(2), "products.pricing", "c1"))
    fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=503, times=3))
    connect(engine, workspace.id, fake.url, initial_days=1, backoff_base="2")
    sleeps = Sleeps()
    report = g2.pull(engine, workspace.id, settings=settings, sleep=sleeps, now=NOW)
    assert (report.status, report.accepted) == ("done", 1)
    assert len(sleeps) == 3
    for wait, ceiling in zip(sleeps, (2, 4, 8), strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_a_timeout_is_retried(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(Event("e1", at(2), "products.pricing", "c1"))
    fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=200, delay=0.6))
    connect(engine, workspace.id, fake.url, initial_days=1)
    sleeps = Sleeps()
    with guarded(settings, 0.2) as client:
        report = g2.pull(
            engine, workspace.id, settings=settings, client=client, sleep=sleeps, now=NOW
        )
    assert (report.status, report.accepted, len(sleeps)) == ("done", 1, 1)


def test_a_persistent_failure_keeps_earlier_pages_and_the_resume_point(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(*[Event(f"e{i:02d}", at(5 - i * 0.1), "products.pricing", "c1", embed="included")
               for i in range(30)])  # fmt: skip
    connect(engine, workspace.id, fake.url, max_tries="3")
    save_state(engine, workspace.id, "g2", state={"last_end": at(6)}, status="done")
    fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=500, times=None, page=2))
    sleeps = Sleeps()
    report = g2.pull(engine, workspace.id, settings=settings, sleep=sleeps, now=NOW)
    assert report.status == "failed"
    assert report.error == (
        "G2 kept failing at /api/v1/ahoy/remote-event-streams: 3 tries, last HTTP 500"
    )
    assert (report.read, report.accepted) == (25, 25)  # page 1 is kept
    assert len(sleeps) == 2 and len(fake.event_requests()) == 4
    assert len(stored(engine, workspace.id)) == 25
    conn = state(engine, workspace.id)
    assert conn["state"] == {"last_end": at(6)}
    assert (conn["last_status"], conn["last_error"]) == ("failed", report.error)
    run = workspace.api.get(f"/ingest/runs/{report.run_id}").json()["data"]
    assert (run["status"], run["error"], run["accepted"]) == ("failed", report.error, 25)

    # G2 recovers: the next pull re-reads the window (duplicates, not gaps) and moves on.
    fake.scripts.clear()
    again = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert (again.status, again.accepted, again.duplicate) == ("done", 5, 25)
    assert state(engine, workspace.id)["state"] == {"last_end": iso(NOW)}
    assert len(stored(engine, workspace.id)) == 30


def test_a_failure_in_a_later_window_keeps_the_windows_before_it(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(*[Event(f"d{d}", at(24 * d + 1), "products.pricing", "c1") for d in range(3)])
    connect(engine, workspace.id, fake.url, initial_days=3, max_tries=2)
    fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=502, times=None,
                       start=at(24)))  # fmt: skip
    report = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert (report.status, report.accepted) == ("failed", 2)  # the first two days
    assert state(engine, workspace.id)["state"] == {"last_end": at(24)}
    fake.scripts.clear()
    fake.requests.clear()
    again = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert (again.status, again.accepted, again.duplicate) == ("done", 1, 0)
    assert [r.query["filter[start_time]"] for r in fake.event_requests()] == [at(24)]
    assert state(engine, workspace.id)["state"] == {"last_end": iso(NOW)}


def test_links_are_followed_only_on_g2s_own_host() -> None:
    with httpx.Client() as client:
        api = g2.G2Api(client, g2.PullConfig(base_url="https://data.g2.com"), TOKEN, Sleeps())
        assert api._url("/api/v1/ahoy/companies/1") == "https://data.g2.com/api/v1/ahoy/companies/1"
        assert api._url("https://DATA.g2.com/x?page%5Bnumber%5D=2") == (
            "https://DATA.g2.com/x?page%5Bnumber%5D=2"
        )
        for elsewhere in ("https://evil.example/api", "http://data.g2.com/api", "//evil.example/"):
            with pytest.raises(g2.G2Error, match="another host"):
                api._url(elsewhere)


def test_an_unreachable_g2_fails_after_bounded_tries(
    engine: Any, workspace: Workspace, settings: Settings
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    connect(engine, workspace.id, f"http://127.0.0.1:{port}", initial_days=1, max_tries=2)
    sleeps = Sleeps()
    report = g2.pull(engine, workspace.id, settings=settings, sleep=sleeps, now=NOW)
    assert report.status == "failed" and len(sleeps) == 1
    assert report.error is not None and "2 tries, last ConnectError" in report.error
    assert state(engine, workspace.id)["state"] == {}


def test_a_refused_token_fails_at_once(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    connect(engine, workspace.id, fake.url, token="not-the-token", initial_days=1)
    sleeps = Sleeps()
    report = g2.pull(engine, workspace.id, settings=settings, sleep=sleeps, now=NOW)
    assert report.status == "failed" and sleeps == [] and len(fake.requests) == 1
    assert report.error is not None and report.error.startswith("G2 refused the token (HTTP 401)")
    assert "not-the-token" not in report.error


def test_the_token_never_shows(
    engine: Any, database_url: str, workspace: Workspace, fake: FakeG2, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fake.company("c1", "Acme", "acme.com")
    fake.add(Event("e1", at(2), "products.pricing", "c1"), Event("e2", at(1), "x.y", None))
    connect(engine, workspace.id, fake.url, initial_days=1)
    assert g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW).rejected == 1
    # On G2's own host (here the fake), whose error sentences are shown, scrubbed.
    Rebinding("data.g2.com", [["127.0.0.1"]]).install(monkeypatch)
    connect(engine, workspace.id, fake.url.replace("127.0.0.1", "data.g2.com"), initial_days=1)
    # A server that echoes the request's Authorization header in its error body.
    echo = {"errors": [{"detail": f"bad request: Token token={TOKEN}"}]}
    fake.script(Script(path="/api/v1/ahoy/remote-event-streams", status=400, body=echo))
    report = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(),
                     now=NOW + timedelta(hours=1))  # fmt: skip
    assert report.status == "failed" and report.error is not None
    assert "HTTP 400" in report.error and "[token]" in report.error
    shown = [
        json.dumps(report.as_dict()),
        workspace.api.get("/ingest/runs", params={"source": "g2"}).text,
        workspace.api.get("/ingest/rejects", params={"source": "g2"}).text,
        json.dumps(describe(engine, workspace.id), default=str),
    ]
    env = dict(os.environ, INTENTLY_DATABASE_URL=database_url, INTENTLY_CREDENTIALS_KEY=KEY)
    listing = subprocess.run(
        [sys.executable, "-m", "intently", "connections", "list", "--workspace", workspace.name],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert "g2: enabled" in listing.stdout and "failed" in listing.stdout
    shown += [listing.stdout, listing.stderr]
    for text_ in shown:
        assert TOKEN not in text_


def test_a_pull_needs_a_token(engine: Any, workspace: Workspace, settings: Settings) -> None:
    set_connection(engine, workspace.id, "g2", key=KEY, credentials={"user": "x"})
    with pytest.raises(BadRequest, match="no token"):
        g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)


def test_bad_connection_config_is_named(
    engine: Any, workspace: Workspace, fake: FakeG2, settings: Settings
) -> None:
    connect(engine, workspace.id, fake.url, max_tries="lots")
    with pytest.raises(BadRequest, match="max_tries='lots' is not a number"):
        g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert fake.requests == []


def test_pulls_stay_in_their_workspace(
    engine: Any, workspace: Workspace, other: Workspace, fake: FakeG2, settings: Settings
) -> None:
    fake.company("c1", "Acme", "acme.com")
    fake.add(Event("e1", at(2), "products.pricing", "c1"), Event("e2", at(1), "x.y", None))
    connect(engine, workspace.id, fake.url, initial_days=1)
    with pytest.raises(NotFound, match="No 'g2' connection"):
        g2.pull(engine, other.id, settings=settings, sleep=Sleeps(), now=NOW)
    report = g2.pull(engine, workspace.id, settings=settings, sleep=Sleeps(), now=NOW)
    assert (report.accepted, report.rejected) == (1, 1)
    assert stored(engine, other.id) == []
    assert rejects_of(other.api) == []
    assert other.api.get("/ingest/runs", params={"source": "g2"}).json()["data"]["data"] == []
    assert signals_of(other.api, push_account(other.api, "acme.com"), "g2") == []
    assert describe(engine, other.id) == []
