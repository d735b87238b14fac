"""Bombora Company Surge: the file importer (CLI and library) and the report API puller.

Results are checked through the HTTP API (runs, rejects, an account's signals) and, for
the daily rollup, the `signal_daily` table. The puller runs against a fake Bombora on
127.0.0.1 (tests/support/fake_bombora.py) with an injected clock and sleep.
"""

from __future__ import annotations

import base64
import csv
import gzip
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from intently.ingest import bombora
from intently.ingest.connections import get_connection, set_connection
from intently.ingest.files import FileFormatError
from intently.kit.db import read_tx
from intently.kit.errors import BadRequest
from intently.kit.timefmt import US_PER_DAY
from intently.settings import Settings
from intently.signals.store import RunReport
from tests.support.api import Api, Workspace
from tests.support.cli import intently
from tests.support.data import push_account, signals_of
from tests.support.fake_bombora import FakeBombora, Fault, SurgeRow
from tests.support.outbound import LOCAL, Rebinding, guarded
from tests.support.vendor_files import BOMBORA_HEADER as HEADER
from tests.support.vendor_files import bombora_row as row

MONDAY = date(2026, 11, 23)
MONDAY_US = (MONDAY - date(1970, 1, 1)).days * US_PER_DAY
KEY = "test-credentials-key"
USER, PASSWORD = "partner-user-8fd1", "pw-Zq7-very-secret"


def write(
    path: Path,
    rows: list[dict[str, str]],
    header: list[str] | None = None,
    *,
    gz: bool = False,
    bom: bool = False,
    rename: dict[str, str] | None = None,
) -> Path:
    """A CSV of `rows` (dicts by canonical header) under `header`, renamed by `rename`."""
    cols = header or HEADER
    names = [(rename or {}).get(c, c) for c in cols]
    opener: Any = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for r in rows:
            w.writerow([r.get(c, "") for c in cols])
    return path


SURGE = [
    row("acme.com", "Cloud Computing", 72),
    row("https://www.Globex.com/about", "CRM", 88.5),
    row("initech.io", "Payroll", 41),  # below the default threshold
    row("acme.com", "CRM", 60),  # exactly the threshold: surging
]


def get_run(api: Api, run_id: str) -> dict[str, Any]:
    r = api.get(f"/ingest/runs/{run_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def last_run(api: Api) -> dict[str, Any]:
    r = api.get("/ingest/runs", params={"source": "bombora", "limit": 1})
    assert r.status_code == 200, r.text
    [run] = r.json()["data"]["data"]
    return dict(run)


def rejects(api: Api, **params: str) -> list[dict[str, Any]]:
    r = api.get("/ingest/rejects", params={"source": "bombora", "limit": 100, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def bombora_signals(api: Api, domain: str) -> list[dict[str, Any]]:
    return signals_of(api, push_account(api, domain), "bombora")


def by_topic(api: Api, domain: str) -> dict[str, dict[str, Any]]:
    return {s["topic"]: s for s in bombora_signals(api, domain)}


def stored(engine: Any, ws: int) -> list[tuple[Any, ...]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, topic, occurred_at, day, value, natural_key FROM signals "
                "WHERE workspace_id = :ws AND source = 'bombora' ORDER BY natural_key"
            ),
            {"ws": ws},
        ).all()
    return [tuple(r) for r in rows]


def rollup(engine: Any, ws: int) -> dict[tuple[str, str, int], tuple[int, float]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, topic, day, count, value_sum FROM signal_daily "
                "WHERE workspace_id = :ws AND source = 'bombora' AND type = 'surge'"
            ),
            {"ws": ws},
        ).all()
    return {(r[0], r[1], int(r[2])): (int(r[3]), float(r[4])) for r in rows}


def counts(report: RunReport) -> dict[str, Any]:
    d = report.as_dict()
    return {k: d[k] for k in ("status", "read", "accepted", "updated", "duplicate", "rejected",
                              "skipped")}  # fmt: skip


# ---- the command line -----------------------------------------------------------------


def test_cli_imports_a_file_and_the_api_shows_the_run_and_the_signals(
    tmp_path: Path, database_url: str, workspace: Workspace, engine: Any
) -> None:
    path = write(tmp_path / "surge.csv", SURGE)
    # Any day of the week is that week: a Wednesday becomes its Monday.
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
            "--week", "2026-11-25")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "accepted" in r.stdout and "below_threshold" in r.stdout

    run = get_run(workspace.api, last_run(workspace.api)["runId"])
    assert run["status"] == "done" and run["kind"] == "file"
    assert run["label"] == "surge.csv (week 2026-11-23)"
    assert (run["read"], run["accepted"], run["duplicate"], run["rejected"], run["skipped"]) == (
        4, 3, 0, 0, 1,
    )  # fmt: skip
    assert run["skippedByReason"] == {"below_threshold": 1}

    # Accounts created after their signals see them.
    acme = by_topic(workspace.api, "acme.com")
    assert set(acme) == {"Cloud Computing", "CRM"}
    cloud = acme["Cloud Computing"]
    assert cloud["type"] == "surge" and cloud["value"] == 72
    assert cloud["occurredAt"] == "2026-11-23T00:00:00.000Z"
    assert (cloud["provider"], cloud["matchMethod"], cloud["confidence"]) == (
        "bombora", "domain", 1.0,
    )  # fmt: skip
    [globex] = bombora_signals(workspace.api, "globex.com")
    assert (globex["topic"], globex["value"]) == ("CRM", 88.5)
    assert bombora_signals(workspace.api, "initech.io") == []
    assert {s[5] for s in stored(engine, workspace.id)} == {
        "acme.com|cloud computing|2026-11-23", "acme.com|crm|2026-11-23",
        "globex.com|crm|2026-11-23",
    }  # fmt: skip


def test_cli_imports_a_gzipped_file(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = write(tmp_path / "surge.csv.gz", SURGE, gz=True)
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
            "--week", "2026-11-23")  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = last_run(workspace.api)
    assert (run["read"], run["accepted"], run["skipped"]) == (4, 3, 1)
    assert {s["topic"] for s in bombora_signals(workspace.api, "acme.com")} == {
        "Cloud Computing",
        "CRM",
    }


def test_cli_fails_fast_on_a_file_that_is_not_company_surge(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("Email,First Name,Domain\nann@acme.com,Ann,acme.com\n")
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
            "--week", "2026-11-23")  # fmt: skip
    assert r.returncode == 2, r.stdout
    message = " ".join(r.stderr.split())
    assert "contacts.csv is not a Bombora Company Surge file" in message
    assert "missing column(s) Topic, Composite Score" in message
    assert "expected Domain, Topic, Composite Score" in message
    assert "found Email, First Name, Domain" in message
    assert workspace.api.get("/ingest/runs").json()["data"]["data"] == []


def test_cli_without_a_week_says_to_pass_one(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = write(tmp_path / "surge.csv", SURGE)
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name)
    assert r.returncode == 2
    message = " ".join(r.stderr.split())
    assert "surge.csv has no Week or Date Stamp column: pass --week YYYY-MM-DD" in message
    assert workspace.api.get("/ingest/runs").json()["data"]["data"] == []


def test_cli_takes_each_rows_week_from_its_date_stamp_without_week(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    # Company Surge files as Bombora delivers them stamp every row with its date.
    rows = [
        row("acme.com", "CRM", 75, **{"Date Stamp": "2026-11-25"}),  # a Wednesday
        row("acme.com", "Cloud Computing", 80, **{"Date Stamp": "11/23/2026 12:00:00 AM"}),
        row("acme.com", "AI", 90, **{"Date Stamp": "2026-11-30"}),  # the next week
        row("globex.com", "CRM", 70, **{"Date Stamp": "soon"}),
    ]
    path = write(tmp_path / "surge.csv", rows, [*HEADER, "Date Stamp"])
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name)
    assert r.returncode == 0, r.stderr
    run = last_run(workspace.api)
    assert (run["label"], run["accepted"], run["rejected"]) == ("surge.csv", 3, 1)
    assert {
        s["topic"]: s["occurredAt"][:10] for s in bombora_signals(workspace.api, "acme.com")
    } == {"CRM": "2026-11-23", "Cloud Computing": "2026-11-23", "AI": "2026-11-30"}
    [bad] = rejects(workspace.api, runId=run["runId"])
    assert (bad["line"], bad["reason"], bad["detail"]) == (
        5, "invalid_date", "Date Stamp 'soon' is not a date (YYYY-MM-DD)",
    )  # fmt: skip


# ---- the file importer ----------------------------------------------------------------


def test_every_rejection_reason_is_kept_with_line_column_and_value(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    header = [*HEADER, "Week"]
    rows = [
        row("acme.com", "CRM", 75, Week="2026-11-23"),  # line 2: fine
        row("", "CRM", 75, Week="2026-11-23"),  # 3
        row("not a domain", "CRM", 75, Week="2026-11-23"),  # 4
        row("10.0.0.1", "CRM", 75, Week="2026-11-23"),  # 5
        row("acme.com", "  ", 75, Week="2026-11-23"),  # 6
        row("acme.com", "CRM", "high", Week="2026-11-23"),  # 7
        row("acme.com", "CRM", 101, Week="2026-11-23"),  # 8
        row("acme.com", "CRM", -1, Week="2026-11-23"),  # 9
        row("acme.com", "CRM", "", Week="2026-11-23"),  # 10
        row("acme.com", "CRM", "nan", Week="2026-11-23"),  # 11
        row("acme.com", "CRM", 75, Week="last week"),  # 12
        row("acme.com", "CRM", 75, Week=""),  # 13: no week and no --week
        row("globex.com", "CRM", 75, Week="2026-11-24"),  # 14: fine
    ]
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", rows, header))
    assert counts(report) == {"status": "done", "read": 13, "accepted": 2, "updated": 0,
                              "duplicate": 0, "rejected": 11, "skipped": 0}  # fmt: skip
    assert report.rejected_by_reason == {
        "missing_domain": 1, "invalid_domain": 2, "missing_topic": 1, "invalid_score": 5,
        "invalid_date": 2,
    }  # fmt: skip

    got = {r["line"]: r for r in rejects(workspace.api, runId=report.run_id)}
    assert {n: (r["reason"], r["detail"]) for n, r in got.items()} == {
        3: ("missing_domain", "Domain is empty"),
        4: ("invalid_domain", "Domain 'not a domain' is not a domain name"),
        5: ("invalid_domain", "Domain '10.0.0.1' is not a domain name"),
        6: ("missing_topic", "Topic is empty"),
        7: ("invalid_score", "Composite Score 'high' is not a number from 0 to 100"),
        8: ("invalid_score", "Composite Score '101' is not a number from 0 to 100"),
        9: ("invalid_score", "Composite Score '-1' is not a number from 0 to 100"),
        10: ("invalid_score", "Composite Score '' is not a number from 0 to 100"),
        11: ("invalid_score", "Composite Score 'nan' is not a number from 0 to 100"),
        12: ("invalid_date", "Week 'last week' is not a date (YYYY-MM-DD)"),
        13: ("invalid_date", "Week is empty (pass --week YYYY-MM-DD for rows without one)"),
    }
    assert got[4]["record"] == dict(zip(header, [*row("not a domain", "CRM", 75).values(),
                                                 "2026-11-23"], strict=True))  # fmt: skip
    assert all(r["source"] == "bombora" and r["status"] == "open" for r in got.values())
    assert [s[0] for s in stored(engine, workspace.id)] == ["acme.com", "globex.com"]


def test_rows_below_the_threshold_or_off_topic_are_skipped_by_the_workspace_settings(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    r = workspace.api.put(
        "/sources/bombora/settings", json={"surgeThreshold": 70, "topics": ["cloud computing"]}
    )
    assert r.status_code == 200, r.text
    rows = [
        row("acme.com", "Cloud Computing", 70),  # followed (any case), at the threshold
        row("acme.com", "CLOUD COMPUTING ", 69),  # followed, below
        row("globex.com", "CRM", 95),  # not followed
        row("initech.io", "Cloud computing", 99),
    ]
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", rows),
                                 week=MONDAY)  # fmt: skip
    assert counts(report) == {"status": "done", "read": 4, "accepted": 2, "updated": 0,
                              "duplicate": 0, "rejected": 0, "skipped": 2}  # fmt: skip
    run = get_run(workspace.api, report.run_id)
    assert run["skippedByReason"] == {"below_threshold": 1, "topic_not_followed": 1}
    assert [(s["topic"], s["value"]) for s in bombora_signals(workspace.api, "acme.com")] == [
        ("Cloud Computing", 70)
    ]
    assert bombora_signals(workspace.api, "globex.com") == []
    assert [s["topic"] for s in bombora_signals(workspace.api, "initech.io")] == ["Cloud computing"]


def test_reimporting_the_same_file_changes_nothing(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    path = write(tmp_path / "f.csv", SURGE)
    first = bombora.import_file(engine, workspace.id, path, week=MONDAY)
    before, before_rollup = stored(engine, workspace.id), rollup(engine, workspace.id)
    again = bombora.import_file(engine, workspace.id, path, week=date(2026, 11, 29))  # Sunday
    assert (first.accepted, first.duplicate) == (3, 0)
    assert counts(again) == {"status": "done", "read": 4, "accepted": 0, "updated": 0,
                             "duplicate": 3, "rejected": 0, "skipped": 1}  # fmt: skip
    assert get_run(workspace.api, again.run_id)["duplicate"] == 3
    assert stored(engine, workspace.id) == before
    assert rollup(engine, workspace.id) == before_rollup


def test_a_rescored_week_updates_its_signal_and_the_rollup_follows(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    day = MONDAY_US // US_PER_DAY
    bombora.import_file(engine, workspace.id, write(tmp_path / "a.csv", SURGE), week=MONDAY)
    assert rollup(engine, workspace.id)[("acme.com", "Cloud Computing", day)] == (1, 72.0)
    rescored = [row("acme.com", "Cloud Computing", 91), row("globex.com", "CRM", 88.5)]
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "b.csv", rescored),
                                 week=MONDAY)  # fmt: skip
    assert (report.updated, report.duplicate, report.accepted) == (1, 1, 0)
    assert by_topic(workspace.api, "acme.com")["Cloud Computing"]["value"] == 91
    assert rollup(engine, workspace.id) == {
        ("acme.com", "Cloud Computing", day): (1, 91.0),
        ("acme.com", "CRM", day): (1, 60.0),
        ("globex.com", "CRM", day): (1, 88.5),
    }


def test_late_data_counts_on_its_own_week(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    bombora.import_file(engine, workspace.id, write(tmp_path / "now.csv", SURGE[:1]), week=MONDAY)
    old = bombora.import_file(engine, workspace.id, write(tmp_path / "old.csv", SURGE[:1]),
                              week=date(2025, 1, 8))  # fmt: skip
    assert old.accepted == 1  # another week: another signal, not an update
    jan6 = (date(2025, 1, 6) - date(1970, 1, 1)).days
    assert rollup(engine, workspace.id) == {
        ("acme.com", "Cloud Computing", MONDAY_US // US_PER_DAY): (1, 72.0),
        ("acme.com", "Cloud Computing", jan6): (1, 72.0),
    }
    assert [s["occurredAt"] for s in bombora_signals(workspace.api, "acme.com")] == [
        "2026-11-23T00:00:00.000Z", "2025-01-06T00:00:00.000Z",
    ]  # fmt: skip


def test_an_account_created_after_its_signals_lists_them(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", SURGE), week=MONDAY)
    assert [s["topic"] for s in bombora_signals(workspace.api, "www.globex.com")] == ["CRM"]


def test_an_import_into_one_workspace_never_shows_in_another(
    tmp_path: Path, engine: Any, workspace: Workspace, other: Workspace
) -> None:
    rows = [*SURGE, row("", "CRM", 70)]
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", rows),
                                 week=MONDAY)  # fmt: skip
    assert report.accepted == 3 and report.rejected == 1
    assert bombora_signals(other.api, "acme.com") == []
    assert rejects(other.api) == []
    assert other.api.get("/ingest/runs").json()["data"]["data"] == []
    assert other.api.get(f"/ingest/runs/{report.run_id}").status_code == 404
    assert stored(engine, other.id) == [] and rollup(engine, other.id) == {}
    # The same file in the other workspace is new there, not a duplicate.
    theirs = bombora.import_file(engine, other.id, write(tmp_path / "f.csv", rows), week=MONDAY)
    assert (theirs.accepted, theirs.duplicate) == (3, 0)


@pytest.mark.parametrize(
    "rename",
    [
        {"Domain": "  DOMAIN ", "Topic": "topic", "Composite Score": "COMPOSITE_SCORE"},
        {"Domain": "domain", "Topic": "Topic Name", "Composite Score": "compositescore"},
        {"Domain": "Domain", "Topic": "TOPIC", "Composite Score": "Score"},
        {"Domain": "company-domain", "Topic": " Topic ", "Composite Score": "composite-score"},
    ],
)
def test_header_names_match_whatever_their_case_and_spacing(
    tmp_path: Path, engine: Any, workspace: Workspace, rename: dict[str, str]
) -> None:
    # Another column order, and extra columns, change nothing either.
    header = ["Bucket Code", "Composite Score", "Unrelated", "Topic", "Domain"]
    path = write(tmp_path / "f.csv", SURGE, header, rename=rename)
    report = bombora.import_file(engine, workspace.id, path, week=MONDAY)
    assert counts(report) == {"status": "done", "read": 4, "accepted": 3, "updated": 0,
                              "duplicate": 0, "rejected": 0, "skipped": 1}  # fmt: skip
    assert by_topic(workspace.api, "acme.com")["Cloud Computing"]["value"] == 72


def test_a_file_with_a_bom_imports(tmp_path: Path, engine: Any, workspace: Workspace) -> None:
    path = write(tmp_path / "f.csv", SURGE, bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfCompany Name,")
    report = bombora.import_file(engine, workspace.id, path, week=MONDAY)
    assert (report.read, report.accepted, report.rejected) == (4, 3, 0)
    gz = bombora.import_file(
        engine, workspace.id, write(tmp_path / "f.csv.gz", SURGE, gz=True, bom=True), week=MONDAY
    )
    assert gz.duplicate == 3


def test_a_file_without_a_week_fails_before_reading_rows(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    with pytest.raises(FileFormatError, match=r"pass --week YYYY-MM-DD .* or add a Week column"):
        bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", SURGE))
    assert workspace.api.get("/ingest/runs").json()["data"]["data"] == []


@pytest.mark.parametrize("column", ["Week", "Week Start", "week_of", "DATE"])
def test_the_week_column_takes_any_day_and_date_format_of_the_week(
    tmp_path: Path, engine: Any, workspace: Workspace, column: str
) -> None:
    cells = ["2026-11-23", "2026-11-29", "2026-11-25T13:00:00Z", "11/24/2026", "2026-W48", ""]
    rows = [row("acme.com", "CRM", 75, W=c) for c in cells]
    path = write(tmp_path / "f.csv", rows, [*HEADER, "W"], rename={"W": column})
    # The --week argument fills only the rows whose week cell is empty.
    report = bombora.import_file(engine, workspace.id, path, week=date(2026, 11, 27))
    assert (report.accepted, report.duplicate, report.rejected) == (1, 5, 0)
    [(_domain, _topic, occurred, _day, _value, key)] = stored(engine, workspace.id)
    assert (occurred, key) == (MONDAY_US, "acme.com|crm|2026-11-23")


def test_a_full_domain_cache_is_emptied_not_trusted(
    tmp_path: Path, engine: Any, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bombora, "DOMAIN_CACHE", 2)
    rows = [row(d, t, 80) for d in ("a.com", "b.com", "bad domain", "c.com", "a.com", "")
            for t in ("CRM", "AI")]  # fmt: skip
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", rows), week=MONDAY)
    assert (report.accepted, report.duplicate, report.rejected) == (6, 2, 4)
    assert report.rejected_by_reason == {"invalid_domain": 2, "missing_domain": 2}
    assert {s[0] for s in stored(engine, workspace.id)} == {"a.com", "b.com", "c.com"}


def test_progress_is_reported_with_bytes(tmp_path: Path, engine: Any, workspace: Workspace) -> None:
    rows = [row(f"c{i}.com", "CRM", 80) for i in range(25)]
    path = write(tmp_path / "f.csv", rows)
    seen: list[tuple[int, int, int]] = []
    bombora.import_file(
        engine, workspace.id, path, week=MONDAY, batch_size=10,
        on_progress=lambda r, done, total: seen.append((r.accepted, done, total)),
    )  # fmt: skip
    size = path.stat().st_size
    assert [a for a, _, _ in seen] == [10, 20, 25]
    assert all(t == size and 0 < d <= size for _, d, t in seen)


# ---- the puller -----------------------------------------------------------------------

TOPICS = {101: "Cloud Computing", 202: "CRM", 303: "Payroll"}
API_ROWS = [
    SurgeRow("acme.com", 101, 72),
    SurgeRow("www.globex.com", 202, 88),
    SurgeRow("acme.com", 202, 55),  # under Bombora's ScoreThreshold: never sent
    SurgeRow("initech.io", 303, 95),  # a topic the workspace does not follow
    SurgeRow("not a domain", 101, 70),
]
CREATE, RESULT, TOPIC_LIST = "/v4/Surge/Create", "/v2/Surge/TryGetResult", "/v2/cmp/GetMyTopics"


class FakeClock:
    """time.monotonic and time.sleep for a test: sleeping moves the clock, instantly."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, credentials_key=KEY, outbound_allow=LOCAL)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Any:
    server = FakeBombora(USER, PASSWORD, TOPICS, API_ROWS, ready_after=3, clock=clock)
    with server.running():
        yield server


def connect(
    engine: Any, ws: int, fake: FakeBombora, password: str = PASSWORD, **config: Any
) -> None:
    set_connection(
        engine, ws, "bombora", key=KEY,
        credentials={"username": USER, "password": password},
        config={"base_url": fake.url, "poll_seconds": 20, **config},
    )  # fmt: skip


def do_pull(engine: Any, ws: int, settings: Settings, clock: FakeClock, **kw: Any) -> RunReport:
    kw.setdefault("week", date(2026, 11, 26))
    return bombora.pull(
        engine, ws, settings=settings, sleep=clock.sleep, clock=clock, jitter=lambda: 0.5, **kw
    )


def follow(api: Api, *topics: str, threshold: int = 60) -> None:
    r = api.put("/sources/bombora/settings", json={"surgeThreshold": threshold,
                                                   "topics": list(topics)})  # fmt: skip
    assert r.status_code == 200, r.text


def connection(engine: Any, ws: int) -> dict[str, Any]:
    return get_connection(engine, ws, "bombora", key=KEY)


def test_pull_creates_the_report_polls_it_and_stores_its_rows(
    tmp_path: Path, engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora,
    clock: FakeClock,
) -> None:  # fmt: skip
    follow(workspace.api, "cloud computing", "CRM", threshold=65)
    connect(engine, workspace.id, fake)
    report = do_pull(engine, workspace.id, settings, clock)

    assert report.status == "done", report.error
    assert report.label == "report R0001 week 2026-11-23"
    assert (report.read, report.accepted, report.rejected) == (3, 2, 1)
    assert report.rejected_by_reason == {"invalid_domain": 1}
    [create] = fake.calls(CREATE)
    assert create.body == {"Topics": [101, 202], "ScoreThreshold": 65, "TopicThreshold": 1}
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert {s.authorization for s in fake.seen} == {expected}
    assert [s.query for s in fake.calls(RESULT)] == [{"id": "R0001"}] * 3
    assert clock.sleeps == [20, 20]  # polled every poll_seconds until ready

    run = get_run(workspace.api, report.run_id)
    assert (run["kind"], run["label"], run["status"]) == ("pull", report.label, "done")
    acme = by_topic(workspace.api, "acme.com")
    assert list(acme) == ["Cloud Computing"] and acme["Cloud Computing"]["value"] == 72
    assert acme["Cloud Computing"]["occurredAt"] == "2026-11-23T00:00:00.000Z"
    assert [s["topic"] for s in bombora_signals(workspace.api, "globex.com")] == ["CRM"]
    conn = connection(engine, workspace.id)
    assert conn["last_status"] == "done" and conn["last_error"] is None
    assert conn["state"] == {"week": "2026-11-23", "reportId": "R0001"}

    # The same week from a file: the same natural keys, so duplicates.
    path = write(tmp_path / "f.csv", [row("acme.com", "Cloud Computing", 72),
                                      row("globex.com", "CRM", 88)])  # fmt: skip
    again = bombora.import_file(engine, workspace.id, path, week=MONDAY)
    assert (again.duplicate, again.accepted, again.updated) == (2, 0, 0)


def test_pull_with_no_topics_set_asks_for_every_topic_of_the_account(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake)
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "done"
    assert fake.calls(CREATE)[0].body["Topics"] == [101, 202, 303]
    assert fake.calls(CREATE)[0].body["ScoreThreshold"] == 60
    assert report.accepted == 3


def test_pull_fails_clearly_on_a_topic_the_account_does_not_have(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    follow(workspace.api, "CRM", "Quantum Widgets")
    connect(engine, workspace.id, fake)
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "failed"
    assert "topics not in this Bombora account: Quantum Widgets" in (report.error or "")
    assert fake.calls(CREATE) == []


def test_pull_waits_for_retry_after_on_429(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake)
    fake.fail(CREATE, Fault("status", 429, {"Retry-After": "7"}, b'{"Message":"Too many"}'))
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "done", report.error
    assert len(fake.calls(CREATE)) == 2
    assert clock.sleeps[0] == 7  # the Retry-After, before the polls' own waits
    gap = fake.calls(CREATE)[1].at - fake.calls(CREATE)[0].at
    assert gap == 7


def test_pull_retries_5xx_drops_and_timeouts_with_backoff(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake)
    fake.ready_after = 1
    fake.fail(TOPIC_LIST, Fault("delay", delay=1.2))
    fake.fail(RESULT, Fault("status", 503), Fault("drop"), Fault("status", 502))
    with guarded(settings, 0.6) as client:
        report = do_pull(engine, workspace.id, settings, clock, client=client)
    assert report.status == "done", report.error
    assert report.accepted == 3
    # Equal jitter (half the delay plus up to half again; the test's jitter is 0.5):
    # 1 s, then 2 s, then 4 s before retries 1, 2, 3 of the same call.
    assert clock.sleeps == [0.75, 0.75, 1.5, 3.0]
    assert len(fake.calls(TOPIC_LIST)) == 2 and len(fake.calls(RESULT)) == 4


def test_pull_gives_up_after_bounded_tries_and_writes_nothing_then_resumes(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    connect(engine, workspace.id, fake)
    fake.ready_after = 1
    # The report is cut off halfway once, then the server keeps failing.
    fake.fail(RESULT, Fault("truncate"), *[Fault("status", 500)] * 10)
    with caplog.at_level(logging.INFO, logger="intently.ingest.bombora"):
        report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "failed"
    assert report.error == ("PullError: GET /v2/Surge/TryGetResult failed 5 times; last: HTTP 500")
    assert len(fake.calls(RESULT)) == 5
    assert len(clock.sleeps) == 4 and max(clock.sleeps) <= bombora.BACKOFF_CAP
    assert "retry 4 of 4" in caplog.text
    assert stored(engine, workspace.id) == [] and rollup(engine, workspace.id) == {}
    run = get_run(workspace.api, report.run_id)
    assert (run["status"], run["read"], run["accepted"]) == ("failed", 0, 0)
    assert run["error"] == report.error
    conn = connection(engine, workspace.id)
    assert conn["last_status"] == "failed"
    assert conn["last_error"] == "GET /v2/Surge/TryGetResult failed 5 times; last: HTTP 500"
    assert conn["state"]["pending"]["reportId"] == "R0001"

    # The next pull polls the same report instead of creating another.
    fake.faults.clear()
    again = do_pull(engine, workspace.id, settings, clock)
    assert again.status == "done" and again.accepted == 3
    assert len(fake.calls(CREATE)) == 1
    assert again.label == "report R0001 week 2026-11-23"
    assert connection(engine, workspace.id)["state"] == {"week": "2026-11-23", "reportId": "R0001"}


def test_a_pending_report_asked_with_other_settings_is_not_reused(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake)
    fake.fail(RESULT, *[Fault("status", 500)] * 5)
    assert do_pull(engine, workspace.id, settings, clock).status == "failed"
    follow(workspace.api, "CRM", threshold=80)
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "done" and report.label == "report R0002 week 2026-11-23"
    assert fake.calls(CREATE)[1].body == {
        "Topics": [202],
        "ScoreThreshold": 80,
        "TopicThreshold": 1,
    }
    assert report.accepted == 1


def test_pull_gives_up_when_the_report_never_gets_ready(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake, poll_seconds=60, max_wait_seconds=300)
    fake.ready_after = 1000
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "failed"
    assert "report R0001 was not ready after 5 min" in (report.error or "")
    assert len(fake.calls(RESULT)) == 6


def test_pull_never_sends_more_than_60_requests_a_minute(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake, poll_seconds=0)
    fake.ready_after = 150  # 152 requests in all, with nothing else in between
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "done", report.error
    times = [s.at for s in fake.seen]
    assert len(times) == 152
    # Any 61 consecutive requests span at least a minute: never 61 in 60 s.
    assert all(times[i + 60] - times[i] >= 60 for i in range(len(times) - 60))
    assert times[-1] - times[0] >= 120  # it did have to wait, twice


def test_pull_refuses_a_connection_without_a_password_or_with_a_bad_base_url(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    set_connection(engine, workspace.id, "bombora", key=KEY, credentials={"username": USER},
                   config={"base_url": fake.url})  # fmt: skip
    with pytest.raises(BadRequest, match="needs credentials username and password"):
        do_pull(engine, workspace.id, settings, clock)
    assert connection(engine, workspace.id)["last_status"] == "failed"
    connect(engine, workspace.id, fake, base_url="ftp://bombora.example")
    with pytest.raises(BadRequest, match=r"base_url 'ftp://bombora\.example' is not an http"):
        do_pull(engine, workspace.id, settings, clock)
    assert fake.seen == []
    assert workspace.api.get("/ingest/runs").json()["data"]["data"] == []


def test_pull_says_so_when_the_report_comes_back_as_json(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake)
    fake.fail(RESULT, Fault("status", 200, body=b'{"Success": true, "Data": []}'))
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "failed"
    assert "answered report R0001 with JSON, not the CSV report" in (report.error or "")
    assert len(fake.calls(RESULT)) == 1


def test_pull_with_wrong_credentials_fails_at_once(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock
) -> None:
    connect(engine, workspace.id, fake, password="wrong-password-123")
    report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "failed"
    assert "Bombora refused the credentials (HTTP 401 on GET /v2/cmp/GetMyTopics)" in (
        report.error or ""
    )
    assert len(fake.seen) == 1 and clock.sleeps == []
    assert "wrong-password-123" not in str(report.as_dict())


def test_credentials_never_appear_in_reports_logs_or_errors(
    engine: Any, workspace: Workspace, settings: Settings, fake: FakeBombora, clock: FakeClock,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # On Bombora's own host (here the fake), whose error bodies are shown, scrubbed.
    Rebinding("sentry.bombora.com", [["127.0.0.1"]]).install(monkeypatch)
    connect(
        engine, workspace.id, fake, base_url=fake.url.replace("127.0.0.1", "sentry.bombora.com")
    )
    follow(workspace.api, "CRM")
    fake.topics = {202: "CRM"}
    fake.echo_auth_on_400 = True  # a server that echoes the Authorization header back
    fake.fail(TOPIC_LIST, Fault("status", 503), Fault("drop"))
    fake.fail(CREATE, Fault("status", 429, {"Retry-After": "1"}))
    fake.rows = []
    fake.topics = {202: "CRM"}
    # The account lists topic 202 but Create refuses it: the 400 body carries the secrets.
    original_create = fake._create

    def refusing(h: Any, body: Any, auth: str) -> None:
        original_create(h, {"Topics": [999]}, auth)

    fake._create = refusing  # type: ignore[method-assign]
    with caplog.at_level(logging.DEBUG):
        report = do_pull(engine, workspace.id, settings, clock)
    assert report.status == "failed"
    assert "Bombora answered HTTP 400 to POST /v4/Surge/Create: " in (report.error or "")
    assert "***" in (report.error or "")  # the echoed credentials, masked
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    texts = [
        str(report.as_dict()),
        str(get_run(workspace.api, report.run_id)),
        str(connection(engine, workspace.id)["last_error"]),
        caplog.text,
    ]
    for t in texts:
        assert USER not in t and PASSWORD not in t and token not in t, t


def test_pull_from_the_command_line(
    tmp_path: Path, database_url: str, engine: Any, workspace: Workspace, fake: FakeBombora
) -> None:
    fake.ready_after = 2
    connect(engine, workspace.id, fake, poll_seconds=0.05)
    r = intently(database_url, "pull", "bombora", "--workspace", workspace.name,
            INTENTLY_CREDENTIALS_KEY=KEY, INTENTLY_OUTBOUND_ALLOW=LOCAL)  # fmt: skip
    assert r.returncode == 0, r.stderr
    week = bombora.monday_of(datetime.now(UTC).date()).isoformat()
    assert f"report R0001 week {week}" in " ".join(r.stdout.split())
    run = last_run(workspace.api)
    assert (run["kind"], run["status"], run["accepted"], run["rejected"]) == ("pull", "done", 3, 1)
    for out in (r.stdout, r.stderr):
        assert USER not in out and PASSWORD not in out

    # Wrong credentials: exit 1, the reason said, the password not.
    connect(engine, workspace.id, fake, password="nope-0x51")
    bad = intently(database_url, "pull", "bombora", "--workspace", workspace.name,
              INTENTLY_CREDENTIALS_KEY=KEY, INTENTLY_OUTBOUND_ALLOW=LOCAL)  # fmt: skip
    assert bad.returncode == 1
    assert "refused the credentials" in " ".join(bad.stderr.split())
    assert "nope-0x51" not in bad.stdout + bad.stderr


# ---- the company profile from Size, Industry and Domain Origin Country ------------------


def accounts_by_domain(api: Api, **params: str) -> dict[str, dict[str, Any]]:
    r = api.get("/accounts", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return {a["domain"]: a for a in r.json()["data"]["data"]}


def profile(item: dict[str, Any]) -> tuple[Any, ...]:
    return item["industry"], item["employeeCount"], item["country"]


def test_cli_import_fills_the_unset_profile_of_existing_accounts_only(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    api = workspace.api
    r = api.post(
        "/accounts",
        json={
            "accounts": [
                {"domain": "acme.com", "name": "Acme"},
                # Values from the CRM or the API: the file never overrides them.
                {"domain": "globex.com", "name": "Globex", "industry": "Banking", "country": "GB"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    since = api.get("/accounts").json()["data"]["syncTimestamp"]
    rows = [
        row("acme.com", "CRM", 70, Size="51-200 employees", Industry=" Computer Software "),
        row("acme.com", "Cloud", 75, Size="51-200 employees", Industry="Computer Software"),
        row("www.globex.com", "CRM", 80, Size="10,001+ employees", **{
            "Industry": "Finance", "Domain Origin Country": "Germany"}),
        row("initech.io", "CRM", 90, Size="1-10 employees"),  # no account: none is made
    ]  # fmt: skip
    path = write(tmp_path / "surge.csv", rows)
    done = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
                    "--week", "2026-11-23")  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = accounts_by_domain(api)
    assert set(found) == {"acme.com", "globex.com"}
    # A size band gives its lower bound: the company is at least that big.
    assert profile(found["acme.com"]) == ("Computer Software", 51, "US")
    assert profile(found["globex.com"]) == ("Banking", 10001, "GB")
    assert type(found["globex.com"]["employeeCount"]) is int
    # Both were changed, so a delta sync since before the import sees them.
    assert set(accounts_by_domain(api, lastSync=since)) == {"acme.com", "globex.com"}

    # The API still wins afterwards, and a second import changes nothing more.
    r = api.post("/accounts", json={"upsert": True, "accounts": [
        {"domain": "acme.com", "name": "Acme", "employeeCount": 120}]})  # fmt: skip
    assert r.status_code == 200, r.text
    since = api.get("/accounts").json()["data"]["syncTimestamp"]
    done = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
                    "--week", "2026-11-23")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert profile(accounts_by_domain(api)["acme.com"]) == ("Computer Software", 120, "US")
    assert accounts_by_domain(api, lastSync=since) == {}


def test_profile_cells_that_say_nothing_leave_the_profile_unset(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    api = workspace.api
    push_account(api, "acme.com")
    since = api.get("/accounts").json()["data"]["syncTimestamp"]
    rows = [row("acme.com", "CRM", 70, Size="Unknown", Industry="",
                **{"Domain Origin Country": "Atlantis"})]  # fmt: skip
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", rows), week=MONDAY)
    assert report.accepted == 1 and report.rejected == 0  # the signal is fine all the same
    assert profile(accounts_by_domain(api)["acme.com"]) == (None, None, None)
    assert accounts_by_domain(api, lastSync=since) == {}


def test_a_file_without_profile_columns_imports_as_before(
    tmp_path: Path, engine: Any, workspace: Workspace
) -> None:
    push_account(workspace.api, "acme.com")
    header = ["Domain", "Topic", "Composite Score"]
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", SURGE, header),
                                 week=MONDAY)  # fmt: skip
    assert report.accepted == 3
    assert profile(accounts_by_domain(workspace.api)["acme.com"]) == (None, None, None)


def test_profile_fill_crosses_batches(tmp_path: Path, engine: Any, workspace: Workspace) -> None:
    api = workspace.api
    domains = [f"d{i}.com" for i in range(7)]
    r = api.post("/accounts", json={"accounts": [{"domain": d, "name": d} for d in domains]})
    assert r.status_code == 200, r.text
    countries = ["DE", "FR", "United States", "IT", "ES", "NL", "PL"]
    rows = [
        row(d, "CRM", 70, Size=f"{i + 1}-{i + 9} employees", **{"Domain Origin Country": c})
        for i, (d, c) in enumerate(zip(domains, countries, strict=True))
    ]
    report = bombora.import_file(engine, workspace.id, write(tmp_path / "f.csv", rows),
                                 week=MONDAY, batch_size=3)  # fmt: skip
    assert report.accepted == 7
    found = accounts_by_domain(api)
    assert {d: found[d]["employeeCount"] for d in domains} == {
        d: i + 1 for i, d in enumerate(domains)
    }
    assert [found[d]["country"] for d in domains] == ["DE", "FR", "US", "IT", "ES", "NL", "PL"]


@pytest.mark.parametrize(
    "cell,low",
    [
        ("51-200 employees", 51),
        ("10,001+ employees", 10001),
        ("1 - 10", 1),
        ("Medium (200 - 499 Employees)", 200),
        ("XLarge (5,000 - 10,000 Employees)", 5000),
        ("1 to 9", 1),
        ("500", 500),
        ("0-1 employees", 0),
        ("Unknown", None),
        ("", None),
        ("500-200", None),
    ],
)
def test_size_band_lower_bound(cell: str, low: int | None) -> None:
    from intently.accounts.profile import size_lower_bound

    assert size_lower_bound(cell) == low
