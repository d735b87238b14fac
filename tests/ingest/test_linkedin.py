"""LinkedIn ads: the company engagement export, organization mapping, re-applying rejects,
and the ad analytics puller against a fake LinkedIn API over real HTTP (spec/signals.md)."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from intently.ingest import linkedin
from intently.ingest.connections import describe, get_connection, set_connection
from intently.ingest.files import FileFormatError
from intently.kit.db import read_tx
from intently.kit.errors import BadRequest
from intently.settings import Settings
from tests.support.api import Api, Workspace
from tests.support.cli import intently
from tests.support.data import create_account, signals_of
from tests.support.fake_linkedin import Failure, FakeLinkedIn
from tests.support.outbound import LOCAL, guarded
from tests.support.vendor_files import LINKEDIN_DAY as DAY
from tests.support.vendor_files import LINKEDIN_HEADER as HEADER
from tests.support.vendor_files import LINKEDIN_ORG as ORG
from tests.support.vendor_files import linkedin_row as row


def write_csv(tmp_path: Path, rows: list[list[Any]], header: list[str] = HEADER) -> Path:
    path = tmp_path / f"linkedin-{uuid.uuid4().hex[:8]}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def by_type(signals: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["occurredAt"][:10], s["type"]): s for s in signals}


def rejects(api: Api, **params: str) -> list[dict[str, Any]]:
    r = api.get("/ingest/rejects", params={"source": "linkedin", "limit": 100, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def run_of(api: Api, run_id: str) -> dict[str, Any]:
    r = api.get(f"/ingest/runs/{run_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def stored(engine: Any, ws: int) -> dict[str, tuple[Any, ...]]:
    """natural_key -> (domain, type, topic, day, value, match_method, confidence)."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT natural_key, domain, type, topic, day, value, match_method, confidence "
                "FROM signals WHERE workspace_id = :ws AND source = 'linkedin'"
            ),
            {"ws": ws},
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def rollup(engine: Any, ws: int) -> dict[tuple[Any, ...], tuple[int, float]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, type, topic, day, count, value_sum FROM signal_daily "
                "WHERE workspace_id = :ws AND source = 'linkedin'"
            ),
            {"ws": ws},
        ).all()
    return {tuple(r[:4]): (int(r[4]), float(r[5])) for r in rows}


def recomputed(engine: Any, ws: int) -> dict[tuple[Any, ...], tuple[int, float]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT domain, type, topic, day, count(*), sum(value) FROM signals "
                "WHERE workspace_id = :ws AND source = 'linkedin' "
                "GROUP BY domain, type, topic, day"
            ),
            {"ws": ws},
        ).all()
    return {tuple(r[:4]): (int(r[4]), float(r[5])) for r in rows}


def org_rows(engine: Any, ws: int) -> dict[str, tuple[str, str]]:
    with read_tx(engine) as conn:
        rows = conn.execute(
            text("SELECT org, domain, origin FROM linkedin_orgs WHERE workspace_id = :ws"),
            {"ws": ws},
        ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def epoch_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


# ---- organizations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "urn"),
    [
        ("urn:li:organization:12345", "urn:li:organization:12345"),
        ("  URN:LI:Organization:0042 ", "urn:li:organization:42"),
        ("urn:li:company:777", "urn:li:organization:777"),
        ("12345", "urn:li:organization:12345"),
        ("https://www.linkedin.com/company/12345/", "urn:li:organization:12345"),
        ("http://uk.linkedin.com/company/12345/about?trk=x", "urn:li:organization:12345"),
        ("linkedin.com/company/98765", "urn:li:organization:98765"),
    ],
)
def test_normalise_org_accepts_urns_ids_and_numeric_company_urls(value: str, urn: str) -> None:
    assert linkedin.normalise_org(value) == urn


@pytest.mark.parametrize(
    "value",
    [
        "",
        "acme",
        "0",
        "-5",
        "12.5",
        "urn:li:sponsoredAccount:5",
        "urn:li:organization:",
        "urn:li:organization:abc",
        "https://www.linkedin.com/company/acme-corp/",
        "https://www.linkedin.com/in/12345",
        "https://example.com/company/12345",
        "12345678901234567890",
    ],
)
def test_normalise_org_refuses_anything_else(value: str) -> None:
    with pytest.raises(BadRequest) as exc:
        linkedin.normalise_org(value)
    assert f"'{value}'" in exc.value.custom_message


def test_map_org_normalises_both_and_names_bad_values(engine: Any, workspace: Workspace) -> None:
    ws = workspace.id
    assert linkedin.map_org(
        engine, ws, "https://www.linkedin.com/company/31/", "WWW.Acme.COM/x"
    ) == ("urn:li:organization:31")
    assert org_rows(engine, ws) == {"urn:li:organization:31": ("acme.com", "manual")}
    with pytest.raises(BadRequest, match="'acme-corp'"):
        linkedin.map_org(engine, ws, "acme-corp", "acme.com")
    with pytest.raises(BadRequest, match="'not a domain'"):
        linkedin.map_org(engine, ws, "31", "not a domain")


# ---- the file importer: happy path through the command line --------------------------------


def test_import_through_the_cli_reaches_the_account(
    database_url: str, engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    api = workspace.api
    aid = create_account(api, "acme.com")
    linkedin.map_org(engine, workspace.id, "1001", "acme.com")
    path = write_csv(
        tmp_path,
        [
            row(1001, DAY, "Q4 ABM", 120, 7, 15, 2, name="Acme"),
            row(1001, DAY + timedelta(days=1), "Q4 ABM", 80, 3, 4, 0, name="Acme"),
        ],
    )
    r = intently(database_url, "import", "linkedin", str(path), "--workspace", workspace.name)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"run id\W+([0-9a-f]{24})", r.stdout)
    assert m is not None, r.stdout

    run = run_of(api, m.group(1))
    assert run["source"] == "linkedin" and run["kind"] == "file" and run["status"] == "done"
    assert run["label"] == path.name
    assert (run["read"], run["accepted"], run["updated"], run["duplicate"]) == (8, 7, 0, 0)
    assert (run["rejected"], run["skipped"]) == (0, 1)
    assert run["skippedByReason"] == {"zero_count": 1}
    assert rejects(api) == []

    got = by_type(signals_of(api, aid))
    assert set(got) == {
        ("2026-10-05", "ad_impression"), ("2026-10-05", "ad_click"),
        ("2026-10-05", "ad_engagement"), ("2026-10-05", "lead_form"),
        ("2026-10-06", "ad_impression"), ("2026-10-06", "ad_click"),
        ("2026-10-06", "ad_engagement"),
    }  # fmt: skip
    first = got[("2026-10-05", "ad_impression")]
    assert first["value"] == 120 and first["topic"] == "Q4 ABM"
    assert first["occurredAt"] == "2026-10-05T00:00:00.000Z"
    assert (first["provider"], first["matchMethod"], first["confidence"]) == (
        "linkedin", "mapping", 1.0,
    )  # fmt: skip
    assert got[("2026-10-05", "lead_form")]["value"] == 2
    assert got[("2026-10-06", "ad_click")]["value"] == 3
    keys = stored(engine, workspace.id)
    assert "urn:li:organization:1001|2026-10-05|Q4 ABM|ad_click" in keys


def test_us_dates_thousands_page_urls_and_gzip(engine: Any, workspace: Workspace,
                                               tmp_path: Path) -> None:  # fmt: skip
    import gzip

    linkedin.map_org(engine, workspace.id, "1002", "acme.com")
    header = ["company", "COMPANY PAGE URL", "day", "paid_impressions", "Paid Clicks",
              "Total Engagements", "Extra"]  # fmt: skip
    plain = write_csv(
        tmp_path,
        [["Acme", "https://www.linkedin.com/company/1002/", "10/07/2026", "1,234", "12", "3", "x"]],
        header,
    )
    gz = tmp_path / "export.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    report = linkedin.import_file(engine, workspace.id, gz)
    assert (report.read, report.accepted, report.rejected) == (3, 3, 0), report.as_dict()
    keys = stored(engine, workspace.id)
    assert keys["urn:li:organization:1002|2026-10-07||ad_impression"][:5] == (
        "acme.com", "ad_impression", "", epoch_day(date(2026, 10, 7)), 1234.0,
    )  # fmt: skip


def test_on_progress_gets_bytes(engine: Any, workspace: Workspace, tmp_path: Path) -> None:
    path = write_csv(tmp_path, [row(1, DAY)])
    calls: list[tuple[int, int, int]] = []
    linkedin.import_file(
        engine, workspace.id, path, on_progress=lambda r, done, total: calls.append(
            (r.read, done, total))
    )  # fmt: skip
    assert calls and calls[-1][2] == path.stat().st_size and calls[-1][0] == 1


# ---- mapping ------------------------------------------------------------------------------


def test_mapping_through_linkedin_url_and_the_table_wins(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    api = workspace.api
    ws = workspace.id
    initech = create_account(
        api, "initech.com", linkedinUrl="https://www.linkedin.com/company/2002/"
    )
    globex = create_account(
        api, "globex.com", linkedinUrl="https://www.linkedin.com/company/Globex-Corp"
    )
    create_account(api, "noise.com", linkedinUrl="https://www.linkedin.com/in/someone")
    header = ["Company Name", "Organization URN", "Company Page URL", "Date", "Impressions",
              "Clicks", "Engagements"]  # fmt: skip
    rows = [
        ["Initech", ORG.format(2002), "", str(DAY), 10, 1, 2],
        ["Globex", ORG.format(3003), "https://www.linkedin.com/company/globex-corp/", str(DAY),
         20, 2, 3],
    ]  # fmt: skip
    report = linkedin.import_file(engine, ws, write_csv(tmp_path, rows, header))
    assert (report.accepted, report.rejected) == (6, 0), report.as_dict()
    for aid, value in ((initech, 10), (globex, 20)):
        got = by_type(signals_of(api, aid))
        s = got[("2026-10-05", "ad_impression")]
        assert (s["value"], s["matchMethod"], s["confidence"]) == (value, "linkedin_url", 0.95)
    assert org_rows(engine, ws) == {}  # learned from accounts, not copied into the table

    # An explicit mapping comes first: the same rows move to the mapped domain.
    linkedin.map_org(engine, ws, ORG.format(2002), "initech.io")
    again = linkedin.import_file(engine, ws, write_csv(tmp_path, rows, header))
    assert (again.updated, again.duplicate) == (3, 3), again.as_dict()
    assert signals_of(api, initech) == []
    keys = stored(engine, ws)
    assert keys[f"{ORG.format(2002)}|2026-10-05||ad_click"][0] == "initech.io"
    assert keys[f"{ORG.format(2002)}|2026-10-05||ad_click"][5:] == ("mapping", 1.0)
    assert rollup(engine, ws) == recomputed(engine, ws)


def test_mapping_through_the_website_and_an_account_created_later(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    api = workspace.api
    ws = workspace.id
    header = ["Company Name", "Organization URN", "Website", "Date", "Impressions", "Clicks",
              "Engagements"]  # fmt: skip
    rows = [
        # The organization's first row has no website; a later one does: both map through it.
        ["Umbrella", ORG.format(4004), "", str(DAY - timedelta(days=1)), 1, 0, 0],
        ["Umbrella", ORG.format(4004), "https://www.Umbrella.com/", str(DAY), 30, 0, 4],
    ]
    report = linkedin.import_file(engine, ws, write_csv(tmp_path, rows, header))
    assert (report.accepted, report.skipped, report.rejected) == (3, 3, 0), report.as_dict()
    assert org_rows(engine, ws) == {ORG.format(4004): ("umbrella.com", "website")}

    aid = create_account(api, "umbrella.com")  # after its signals: they count for it now
    got = by_type(signals_of(api, aid))
    s = got[("2026-10-05", "ad_impression")]
    assert (s["value"], s["matchMethod"], s["confidence"]) == (30, "website", 0.8)

    # The stored website maps later files that have no website column.
    plain = linkedin.import_file(engine, ws, write_csv(tmp_path, [row(4004, DAY, "", 30, 0, 4, 0)]))
    assert plain.rejected == 0 and plain.duplicate == 2, plain.as_dict()

    # A mapping by hand replaces the website, and a later website never overrides it.
    linkedin.map_org(engine, ws, "4004", "umbrella.org")
    assert org_rows(engine, ws) == {ORG.format(4004): ("umbrella.org", "manual")}
    again = linkedin.import_file(engine, ws, write_csv(tmp_path, rows, header))
    assert again.updated == 3, again.as_dict()
    assert org_rows(engine, ws) == {ORG.format(4004): ("umbrella.org", "manual")}
    assert signals_of(api, aid) == []


# ---- unmapped organizations, mapping and re-applying ----------------------------------------


def test_unmapped_then_map_through_the_cli_reapplies(
    database_url: str, engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    api = workspace.api
    ws = workspace.id
    aid = create_account(api, "hooli.com")
    rows = [row(5005, DAY, "Retarget", 50, 4, 6, 0, name="Hooli"),
            row(6006, DAY, "", 10, 1, 1, 0, name="Pied Piper")]  # fmt: skip
    report = linkedin.import_file(engine, ws, write_csv(tmp_path, rows))
    assert (report.read, report.rejected, report.accepted) == (2, 2, 0)
    assert report.rejected_by_reason == {"unknown_organization": 2}
    open_ = rejects(api)
    assert [(r["reason"], r["ref"], r["line"]) for r in open_] == [
        ("unknown_organization", ORG.format(5005), 2),
        ("unknown_organization", ORG.format(6006), 3),
    ]
    assert "urn:li:organization:5005 (Hooli)" in open_[0]["detail"]
    assert open_[0]["record"]["Campaign"] == "Retarget"

    r = intently(database_url, "linkedin", "map", ORG.format(5005), "hooli.com",
            "--workspace", workspace.name)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "urn:li:organization:5005 -> hooli.com" in r.stdout

    got = by_type(signals_of(api, aid))
    assert {k: v["value"] for k, v in got.items()} == {
        ("2026-10-05", "ad_impression"): 50,
        ("2026-10-05", "ad_click"): 4,
        ("2026-10-05", "ad_engagement"): 6,
    }
    assert got[("2026-10-05", "ad_click")]["topic"] == "Retarget"
    assert got[("2026-10-05", "ad_click")]["matchMethod"] == "mapping"
    reapplied = rejects(api, status="reapplied")
    assert [x["ref"] for x in reapplied] == [ORG.format(5005)]
    assert [x["ref"] for x in rejects(api)] == [ORG.format(6006)]  # still open

    second = linkedin.reapply(engine, ws)
    assert (second.read, second.accepted, second.duplicate, second.status) == (0, 0, 0, "done")
    assert run_of(api, second.run_id)["kind"] == "reapply"
    assert [x["ref"] for x in rejects(api)] == [ORG.format(6006)]


def test_reapply_through_an_account_linkedin_url(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    api = workspace.api
    ws = workspace.id
    linkedin.import_file(engine, ws, write_csv(tmp_path, [row(7007, DAY, "", 9, 0, 0, 0)]))
    assert len(rejects(api)) == 1
    aid = create_account(api, "vandelay.com", linkedinUrl="linkedin.com/company/7007")
    report = linkedin.reapply(engine, ws)
    assert (report.read, report.accepted, report.skipped) == (4, 1, 3), report.as_dict()
    s = signals_of(api, aid)
    assert [(x["type"], x["value"], x["matchMethod"]) for x in s] == [
        ("ad_impression", 9, "linkedin_url")
    ]
    assert rejects(api) == [] and len(rejects(api, status="reapplied")) == 1


# ---- bad input ----------------------------------------------------------------------------


def test_every_rejection_reason(engine: Any, workspace: Workspace, tmp_path: Path) -> None:
    api = workspace.api
    ws = workspace.id
    linkedin.map_org(engine, ws, "1", "acme.com")
    header = ["Company Name", "Organization URN", "Company Page URL", "Date", "Impressions",
              "Clicks", "Engagements"]  # fmt: skip
    rows = [
        ["Acme", ORG.format(1), "", str(DAY), 1, 1, 1],  # fine
        ["Unknown", ORG.format(999), "", str(DAY), 1, 1, 1],
        ["Bad", "acme", "", str(DAY), 1, 1, 1],
        ["Vanity", "", "https://www.linkedin.com/company/acme-corp/", str(DAY), 1, 1, 1],
        ["NaN", ORG.format(1), "", str(DAY), "12x", 1, 1],
        ["Neg", ORG.format(1), "", str(DAY), 1, -3, 1],
        ["Date", ORG.format(1), "", "2026-13-01", 1, 1, 1],
        ["Empty date", ORG.format(1), "", "", 1, 1, 1],
        ["Future", ORG.format(1), "", "2999-01-01", 1, 1, 1],
        ["Nobody", "", "", str(DAY), 1, 1, 1],
    ]
    report = linkedin.import_file(engine, ws, write_csv(tmp_path, rows, header))
    assert report.rejected_by_reason == {
        "unknown_organization": 1,
        "invalid_organization": 2,
        "invalid_number": 2,
        "invalid_date": 3,
        "missing_organization": 1,
    }
    assert (report.read, report.accepted, report.rejected) == (12, 3, 9)
    got = {r["line"]: r for r in rejects(api)}
    assert {n: got[n]["reason"] for n in got} == {
        3: "unknown_organization",
        4: "invalid_organization",
        5: "invalid_organization",
        6: "invalid_number",
        7: "invalid_number",
        8: "invalid_date",
        9: "invalid_date",
        10: "invalid_date",
        11: "missing_organization",
    }
    assert got[3]["ref"] == ORG.format(999) and ORG.format(999) in got[3]["detail"]
    assert "Organization URN 'acme'" in got[4]["detail"] and got[4]["ref"] is None
    assert "Company Page URL 'https://www.linkedin.com/company/acme-corp/'" in got[5]["detail"]
    assert "Impressions '12x'" in got[6]["detail"]
    assert "Clicks '-3'" in got[7]["detail"]
    assert "Date '2026-13-01'" in got[8]["detail"]
    assert "Date is empty" in got[9]["detail"]
    assert "Date '2999-01-01'" in got[10]["detail"]
    assert "Organization URN or Company Page URL is empty" in got[11]["detail"]
    assert got[6]["record"] == dict(zip(header, ["NaN", ORG.format(1), "", str(DAY), "12x", "1",
                                                  "1"], strict=True))  # fmt: skip


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (["Company Name", "Organization URN", "Date", "Impressions", "Clicks"], "Engagements"),
        (
            ["Company Name", "Date", "Impressions", "Clicks", "Engagements"],
            "Organization URN or Company Page URL",
        ),
        (
            [
                "Company Name",
                "Organization URN",
                "Start Date",
                "Impressions",
                "Clicks",
                "Engagements",
            ],
            "Date, or Start Date and End Date",
        ),
        (["domain", "topic", "composite score"], "Company Name"),
    ],
)
def test_a_file_of_another_format_fails_naming_the_columns(
    engine: Any, workspace: Workspace, tmp_path: Path, header: list[str], missing: str
) -> None:
    path = write_csv(tmp_path, [["x"] * len(header)], header)
    with pytest.raises(FileFormatError) as exc:
        linkedin.import_file(engine, workspace.id, path)
    message = exc.value.custom_message
    assert missing in message and "found " + ", ".join(header) in message
    with read_tx(engine) as conn:
        n = conn.execute(
            text("SELECT count(*) FROM ingest_runs WHERE workspace_id = :ws"), {"ws": workspace.id}
        ).scalar()
    assert n == 0  # failed before a run started


def test_cli_names_every_missing_column_at_once(
    database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    # No count columns but Impressions, no organization column, no date or period: one
    # error lists all of it, rather than one round of fixes per kind of column.
    path = write_csv(tmp_path, [["Acme", "5"]], ["Company Name", "Impressions"])
    r = intently(database_url, "import", "linkedin", str(path), "--workspace", workspace.name)
    assert r.returncode == 2, r.stdout
    message = " ".join(r.stderr.split())
    assert (
        f"{path.name} is not a LinkedIn company engagement export: missing column(s) Clicks; "
        "Engagements; Organization URN or Company Page URL; Date, or Start Date and End Date; "
        "expected Company Name, Impressions, Clicks, Engagements, an organization column and a "
        "date or period; found Company Name, Impressions"
    ) in message, message
    assert workspace.api.get("/ingest/runs").json()["data"]["data"] == []


# ---- periods, zeros, idempotency, revisions, late data --------------------------------------


def test_period_rows_count_on_their_start_and_key_their_end(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "1", "acme.com")
    header = ["Company Name", "Organization URN", "Start Date", "End Date", "Impressions",
              "Clicks", "Engagements"]  # fmt: skip
    rows = [
        ["Acme", ORG.format(1), "2026-10-01", "2026-10-07", 70, 0, 0],
        ["Acme", ORG.format(1), "2026-10-01", "2026-10-31", 300, 0, 0],
        ["Acme", ORG.format(1), "2026-10-08", "2026-10-08", 11, 0, 0],
        ["Acme", ORG.format(1), "2026-10-09", "2026-10-02", 5, 0, 0],
    ]
    report = linkedin.import_file(engine, ws, write_csv(tmp_path, rows, header))
    assert (report.accepted, report.rejected) == (3, 1), report.as_dict()
    keys = stored(engine, ws)
    u = ORG.format(1)
    assert keys[f"{u}|2026-10-01/2026-10-07||ad_impression"][3:5] == (
        epoch_day(date(2026, 10, 1)), 70.0,
    )  # fmt: skip
    assert keys[f"{u}|2026-10-01/2026-10-31||ad_impression"][3:5] == (
        epoch_day(date(2026, 10, 1)), 300.0,
    )  # fmt: skip
    # A one-day period is that day: the same key a daily row would have.
    assert keys[f"{u}|2026-10-08||ad_impression"][4] == 11.0
    bad = rejects(workspace.api)
    assert bad[0]["reason"] == "invalid_date" and "End Date '2026-10-02'" in bad[0]["detail"]
    assert rollup(engine, ws)[("acme.com", "ad_impression", "", epoch_day(date(2026, 10, 1)))] == (
        2, 370.0,
    )  # fmt: skip


def test_zero_and_empty_counts_make_no_signal_until_they_revise_one(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "1", "acme.com")
    rows = [row(1, DAY, "", 0, "", "0", "0.0"), row(1, DAY + timedelta(days=1), "", 5, 3, 0, "")]
    first = linkedin.import_file(engine, ws, write_csv(tmp_path, rows))
    assert (first.read, first.accepted, first.skipped) == (8, 2, 6), first.as_dict()
    assert first.skipped_by_reason == {"zero_count": 6}
    assert set(stored(engine, ws)) == {
        f"{ORG.format(1)}|2026-10-06||ad_impression",
        f"{ORG.format(1)}|2026-10-06||ad_click",
    }
    # LinkedIn revises the clicks of the 6th to zero: the stored signal follows.
    revised = linkedin.import_file(
        engine, ws, write_csv(tmp_path, [row(1, DAY + timedelta(days=1), "", 5, 0, 0, "")])
    )
    assert (revised.updated, revised.duplicate, revised.skipped) == (1, 1, 2), revised.as_dict()
    assert stored(engine, ws)[f"{ORG.format(1)}|2026-10-06||ad_click"][4] == 0.0
    assert rollup(engine, ws) == recomputed(engine, ws)


def test_reimport_changes_nothing(engine: Any, workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "1", "acme.com")
    path = write_csv(tmp_path, [row(1, DAY, "A"), row(1, DAY, "B"), row(2, DAY), row("bad")])
    first = linkedin.import_file(engine, ws, path)
    assert (first.accepted, first.rejected) == (8, 2), first.as_dict()
    before = (stored(engine, ws), rollup(engine, ws))
    second = linkedin.import_file(engine, ws, path)
    assert (second.accepted, second.updated, second.duplicate) == (0, 0, 8), second.as_dict()
    # The unknown organization's row is open already; the malformed row is rejected again.
    assert second.skipped_by_reason == {"already_rejected": 1}
    assert second.rejected_by_reason == {"invalid_organization": 1}
    assert (stored(engine, ws), rollup(engine, ws)) == before
    assert [r["reason"] for r in rejects(workspace.api)].count("unknown_organization") == 1


def test_revised_counts_update_and_the_rollup_follows(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "1", "acme.com")
    linkedin.import_file(engine, ws, write_csv(tmp_path, [row(1, DAY, "C", 100, 5, 9, 1)]))
    report = linkedin.import_file(engine, ws, write_csv(tmp_path, [row(1, DAY, "C", 140, 5, 9, 1)]))
    assert (report.updated, report.duplicate, report.accepted) == (1, 3, 0), report.as_dict()
    key = ("acme.com", "ad_impression", "C", epoch_day(DAY))
    assert rollup(engine, ws)[key] == (1, 140.0)
    assert rollup(engine, ws) == recomputed(engine, ws)


def test_late_data_counts_on_the_day_it_happened(
    engine: Any, workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace.id
    aid = create_account(workspace.api, "acme.com")
    linkedin.map_org(engine, ws, "1", "acme.com")
    old = date.today() - timedelta(days=60)
    linkedin.import_file(engine, ws, write_csv(tmp_path, [row(1, old, "", 3, 0, 0, 0)]))
    (s,) = signals_of(workspace.api, aid)
    assert s["occurredAt"] == f"{old.isoformat()}T00:00:00.000Z"
    assert s["receivedAt"][:10] != s["occurredAt"][:10]
    assert list(rollup(engine, ws)) == [("acme.com", "ad_impression", "", epoch_day(old))]


def test_mappings_stay_in_their_workspace(
    engine: Any, workspace: Workspace, other: Workspace, tmp_path: Path
) -> None:
    linkedin.map_org(engine, workspace.id, "1", "acme.com")
    create_account(workspace.api, "globex.com", linkedinUrl="https://www.linkedin.com/company/2/")
    path = write_csv(tmp_path, [row(1, DAY), row(2, DAY)])
    assert linkedin.import_file(engine, workspace.id, path).accepted == 8
    theirs = linkedin.import_file(engine, other.id, path)
    assert (theirs.accepted, theirs.rejected) == (0, 2), theirs.as_dict()
    assert stored(engine, other.id) == {}
    assert rejects(workspace.api) == []
    assert {r["ref"] for r in rejects(other.api)} == {ORG.format(1), ORG.format(2)}
    # Re-applying in one workspace never uses the other's mappings.
    assert linkedin.reapply(engine, other.id).read == 0
    linkedin.map_org(engine, other.id, "1", "acme.org")
    assert linkedin.reapply(engine, other.id).accepted == 4
    assert {v[0] for v in stored(engine, workspace.id).values()} == {"acme.com", "globex.com"}
    assert {v[0] for v in stored(engine, other.id).values()} == {"acme.org"}


# ---- the puller ---------------------------------------------------------------------------

KEY = "linkedin-test-credentials-key-" + "k" * 16
TOKEN = "AQV-secret-token-" + uuid.uuid4().hex
SETTINGS = Settings(credentials_key=KEY, outbound_allow=LOCAL)
TODAY = date(2026, 11, 20)


@pytest.fixture
def fake() -> Iterator[FakeLinkedIn]:
    with FakeLinkedIn(TOKEN) as f:
        yield f


def connect(engine: Any, ws: int, fake: FakeLinkedIn, token: str = TOKEN, **config: str) -> None:
    set_connection(
        engine,
        ws,
        "linkedin",
        key=KEY,
        credentials={"access_token": token},
        config={"base_url": fake.url, "accounts": "5551, urn:li:sponsoredAccount:5552", **config},
    )


def state(engine: Any, ws: int) -> dict[str, Any]:
    return get_connection(engine, ws, "linkedin", key=KEY)


def test_pull_asks_linkedin_in_its_format_and_stores_the_window(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    ws = workspace.id
    aid = create_account(
        workspace.api, "acme.com", linkedinUrl="https://www.linkedin.com/company/11/"
    )
    connect(engine, ws, fake, version="202509")
    fake.put(11, date(2026, 11, 19), impressions=40, clicks=2, totalEngagements=5, oneClickLeads=1)
    fake.put(11, date(2026, 10, 21), impressions=7, clicks=0, totalEngagements=0, oneClickLeads=0)
    fake.put(11, date(2026, 10, 20), impressions=99)  # before the first window: not asked for
    sleeps: list[float] = []
    report = linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY, sleep=sleeps.append)
    assert report.status == "done", report.as_dict()
    assert (report.accepted, report.skipped, report.rejected) == (5, 3, 0)
    assert sleeps == []

    (req,) = fake.analytics_requests()
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["LinkedIn-Version"] == "202509"
    assert req.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert req.param("q") == "analytics"
    assert req.param("pivot") == "MEMBER_COMPANY"
    assert req.param("timeGranularity") == "DAILY"
    assert req.param("accounts") == (
        "List(urn%3Ali%3AsponsoredAccount%3A5551,urn%3Ali%3AsponsoredAccount%3A5552)"
    )
    assert req.param("dateRange") == (
        "(start:(year:2026,month:10,day:21),end:(year:2026,month:11,day:19))"
    )
    assert set((req.param("fields") or "").split(",")) >= {
        "impressions", "clicks", "totalEngagements", "oneClickLeads", "pivotValues", "dateRange",
    }  # fmt: skip
    assert req.date_range() == (TODAY - timedelta(days=30), TODAY - timedelta(days=1))

    got = by_type(signals_of(workspace.api, aid))
    assert {k: v["value"] for k, v in got.items()} == {
        ("2026-11-19", "ad_impression"): 40,
        ("2026-11-19", "ad_click"): 2,
        ("2026-11-19", "ad_engagement"): 5,
        ("2026-11-19", "lead_form"): 1,
        ("2026-10-21", "ad_impression"): 7,
    }
    assert got[("2026-11-19", "ad_click")]["provider"] == "linkedin"
    assert got[("2026-11-19", "ad_click")]["matchMethod"] == "linkedin_url"
    c = state(engine, ws)
    assert c["state"] == {"last_day": "2026-11-19"} and c["last_status"] == "done"
    run = run_of(workspace.api, report.run_id)
    assert run["kind"] == "pull" and run["status"] == "done" and run["accepted"] == 5


def test_pull_rereads_the_trailing_window_and_revised_days_update(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "11", "acme.com")
    connect(engine, ws, fake)
    fake.put(11, date(2026, 11, 18), impressions=40, clicks=2)
    fake.put(11, date(2026, 11, 19), impressions=10)
    linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY)

    fake.put(11, date(2026, 11, 18), impressions=55, clicks=2)  # LinkedIn revised the 18th
    fake.put(11, date(2026, 11, 21), impressions=3)  # a new day
    second = linkedin.pull(engine, ws, settings=SETTINGS, today=date(2026, 11, 22))
    assert (second.accepted, second.updated, second.duplicate) == (1, 1, 2), second.as_dict()
    req = fake.analytics_requests()[-1]
    assert req.date_range() == (date(2026, 11, 19) - timedelta(days=7), date(2026, 11, 21))
    assert state(engine, ws)["state"] == {"last_day": "2026-11-21"}
    assert rollup(engine, ws)[("acme.com", "ad_impression", "", epoch_day(date(2026, 11, 18)))] == (
        1, 55.0,
    )  # fmt: skip
    assert rollup(engine, ws) == recomputed(engine, ws)

    # The workspace's trailingDays setting decides how far back the next pull reads.
    r = workspace.api.put("/sources/linkedin/settings", json={"trailingDays": 2})
    assert r.status_code == 200, r.text
    third = linkedin.pull(engine, ws, settings=SETTINGS, today=date(2026, 11, 22))
    assert fake.analytics_requests()[-1].date_range() == (date(2026, 11, 19), date(2026, 11, 21))
    assert (third.accepted, third.updated, third.duplicate) == (0, 0, 2), third.as_dict()


def test_pull_retries_rate_limits_server_errors_and_timeouts(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "11", "acme.com")
    connect(engine, ws, fake)
    fake.put(11, date(2026, 11, 19), impressions=40)
    fake.script = [Failure(429, {"Retry-After": "2"}), Failure(503), Failure(0, stall_s=0.5)]
    sleeps: list[float] = []
    with guarded(SETTINGS, 0.2) as client:
        report = linkedin.pull(
            engine, ws, settings=SETTINGS, today=TODAY, sleep=sleeps.append, client=client
        )
    assert report.status == "done" and report.accepted == 1, report.as_dict()
    assert len(fake.analytics_requests()) == 4
    assert sleeps[0] == 2.0  # LinkedIn's Retry-After, when it sends one
    assert 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0  # backoff with jitter


def test_pull_that_gives_up_fails_keeps_its_state_and_never_shows_the_token(
    database_url: str, engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "11", "acme.com")
    connect(engine, ws, fake, max_tries="3")
    fake.put(11, date(2026, 11, 19), impressions=40)
    assert linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY).status == "done"
    before = stored(engine, ws)

    fake.default = Failure(500)
    fake.put(11, date(2026, 11, 21), impressions=1)
    sleeps: list[float] = []
    report = linkedin.pull(engine, ws, settings=SETTINGS, today=date(2026, 11, 23),
                           sleep=sleeps.append)  # fmt: skip
    assert report.status == "failed"
    assert report.error is not None and "HTTP 500" in report.error
    assert "gave up after 3 tries" in report.error
    assert len(sleeps) == 2
    c = state(engine, ws)
    assert c["state"] == {"last_day": "2026-11-19"}  # not advanced
    assert c["last_status"] == "failed" and "HTTP 500" in c["last_error"]
    assert stored(engine, ws) == before
    run = run_of(workspace.api, report.run_id)
    assert run["status"] == "failed" and "HTTP 500" in run["error"]

    assert TOKEN not in repr(report.as_dict()) and TOKEN not in str(run)
    assert TOKEN not in repr(describe(engine, ws))
    listing = intently(database_url, "connections", "list", "--workspace", workspace.name)
    assert listing.returncode == 0, listing.stderr
    assert "linkedin" in listing.stdout and "HTTP 500" in listing.stdout
    assert TOKEN not in listing.stdout + listing.stderr


def test_pull_stores_whole_windows_and_resumes_after_the_last(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    ws = workspace.id
    linkedin.map_org(engine, ws, "11", "acme.com")
    connect(engine, ws, fake, days_per_request="10", max_tries="2")
    fake.put(11, date(2026, 10, 22), impressions=1)
    fake.put(11, date(2026, 11, 5), impressions=2)
    fake.script = [None]
    fake.default = Failure(502)
    report = linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY, sleep=lambda s: None)
    assert report.status == "failed" and report.accepted == 1, report.as_dict()
    windows = [r.date_range() for r in fake.analytics_requests()]
    assert (
        windows
        == [(date(2026, 10, 21), date(2026, 10, 30))]
        + [(date(2026, 10, 31), date(2026, 11, 9))] * 2
    )
    assert state(engine, ws)["state"] == {"last_day": "2026-10-30"}


def test_a_refused_token_fails_at_once_and_unreadable_config_says_what_to_set(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    ws = workspace.id
    wrong = "AQV-wrong-" + uuid.uuid4().hex
    connect(engine, ws, fake, token=wrong)
    report = linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY)
    assert report.status == "failed" and len(fake.seen) == 1
    assert report.error is not None and "401" in report.error and "access_token" in report.error
    assert wrong not in repr(report.as_dict()) and wrong not in repr(describe(engine, ws))

    set_connection(engine, ws, "linkedin", key=KEY, config={"accounts": ""})
    with pytest.raises(BadRequest, match="no ad accounts"):
        linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY)
    set_connection(engine, ws, "linkedin", key=KEY, credentials={"token": "x"},
                   config={"accounts": "1"})  # fmt: skip
    with pytest.raises(BadRequest, match="no access_token"):
        linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY)
    assert state(engine, ws)["last_status"] == "failed"


def test_pull_maps_through_websites_rejects_the_unknown_and_reapplies(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn
) -> None:
    api = workspace.api
    ws = workspace.id
    soylent = create_account(
        api, "soylent.com", linkedinUrl="https://www.linkedin.com/company/soylent-corp/"
    )
    connect(engine, ws, fake)
    day = date(2026, 11, 19)
    fake.put(21, day, impressions=10)
    fake.put(22, day, impressions=20)
    fake.put(23, day, impressions=30, clicks=1)
    fake.orgs[21] = {"localizedName": "Umbrella", "vanityName": "umbrella",
                     "localizedWebsite": "https://www.umbrella.com/"}  # fmt: skip
    fake.orgs[22] = {"localizedName": "Soylent", "vanityName": "Soylent-Corp"}
    report = linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY)
    assert (report.accepted, report.rejected) == (2, 1), report.as_dict()
    keys = stored(engine, ws)
    assert keys[f"{ORG.format(21)}|{day}||ad_impression"][0] == "umbrella.com"
    assert keys[f"{ORG.format(21)}|{day}||ad_impression"][5:] == ("website", 0.8)
    assert org_rows(engine, ws)[ORG.format(21)] == ("umbrella.com", "website")
    assert [s["matchMethod"] for s in signals_of(api, soylent)] == ["linkedin_url"]
    (bad,) = rejects(api)
    assert (bad["reason"], bad["ref"], bad["line"]) == (
        "unknown_organization",
        ORG.format(23),
        None,
    )
    assert bad["record"]["pivotValues"] == [ORG.format(23)]
    looked_up = [s.path for s in fake.seen if s.path.startswith("/rest/organizations/")]
    assert sorted(looked_up) == [f"/rest/organizations/{n}" for n in (21, 22, 23)]

    # The trailing window read again: the open reject is not repeated, the website is stored.
    again = linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY)
    assert (again.duplicate, again.rejected) == (2, 0), again.as_dict()
    assert again.skipped_by_reason["already_rejected"] == 1
    assert "/rest/organizations/21" not in [s.path for s in fake.seen[len(fake.seen) - 3 :]]
    assert len(rejects(api)) == 1

    linkedin.map_org(engine, ws, "23", "initech.com")
    done = linkedin.reapply(engine, ws)
    assert (done.accepted, done.skipped) == (2, 2), done.as_dict()
    assert stored(engine, ws)[f"{ORG.format(23)}|{day}||ad_click"][:1] == ("initech.com",)
    assert rejects(api) == []


@pytest.mark.parametrize(("status", "asked"), [(403, 1), (500, 2)])
def test_organization_lookups_stop_when_linkedin_refuses_or_fails_them(
    engine: Any, workspace: Workspace, fake: FakeLinkedIn, status: int, asked: int
) -> None:
    ws = workspace.id
    connect(engine, ws, fake, max_tries="2")
    for org in (31, 32, 33):
        fake.put(org, date(2026, 11, 19), impressions=1)
    fake.org_status = status
    report = linkedin.pull(engine, ws, settings=SETTINGS, today=TODAY, sleep=lambda s: None)
    assert report.status == "done" and report.rejected == 3, report.as_dict()
    assert len([s for s in fake.seen if s.path.startswith("/rest/organizations/")]) == asked


def test_pulled_signals_stay_in_their_workspace(
    engine: Any, workspace: Workspace, other: Workspace, fake: FakeLinkedIn
) -> None:
    linkedin.map_org(engine, workspace.id, "11", "acme.com")
    connect(engine, workspace.id, fake)
    fake.put(11, date(2026, 11, 19), impressions=4)
    assert linkedin.pull(engine, workspace.id, settings=SETTINGS, today=TODAY).accepted == 1
    # The other workspace has no connection: the first workspace's credentials are not used.
    with pytest.raises(Exception, match="No 'linkedin' connection"):
        linkedin.pull(engine, other.id, settings=SETTINGS, today=TODAY)
    assert stored(engine, other.id) == {}
