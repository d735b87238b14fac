"""`intently sync push|pull` against a live server (a subprocess on the test database)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from intently.client import Client
from tests.support.cli import intently
from tests.support.server import LiveServer


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _report(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_push_accounts_with_a_column_map_reports_every_row(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    key = live_server.key()
    api = f"{live_server.url}/api/v1"
    with Client(api, key) as c:
        c.create_custom_field("Industry", "singleLineText")
    rows = [[f"co{i}.example.com", f"Co {i}", "target;emea", "Software"] for i in range(230)]
    rows[5] = ["not a domain", "Bad", "", ""]  # its batch is refused: 100 rows fail
    rows[150] = ["co120.example.com", "Again", "", ""]  # a business failure of one row
    source = _csv(tmp_path / "accounts.csv", ["Website", "Company", "tags", "cf:INDUSTRY_C"], rows)
    done = intently(
        database_url, "sync", "push", "accounts", str(source), "--url", api, "--key", key,
        "--map", "Website=domain", "--map", "Company=name",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # some rows failed
    assert "129 of 230 rows pushed; 101 failed" in done.stdout
    report = _report(source.with_suffix(".report.csv"))
    assert [int(r["line"]) for r in report] == list(range(2, 232))
    assert report[5]["status"] == "error" and "domain" in report[5]["reason"]
    assert report[150]["status"] == "failed" and "already exists" in report[150]["reason"]
    assert report[200]["status"] == "created" and len(report[200]["id"]) == 24
    with Client(api, key) as c:
        got = {a["domain"]: a for a in c.iter_accounts()}
    assert len(got) == 129
    assert got["co200.example.com"]["tags"] == ["target", "emea"]
    assert got["co200.example.com"]["customFields"] == {"INDUSTRY_C": "Software"}


def test_push_refuses_unknown_columns(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    source = _csv(tmp_path / "a.csv", ["domain", "nmae"], [["a.com", "A"]])
    done = intently(
        database_url, "sync", "push", "accounts", str(source), "--url",
        f"{live_server.url}/api/v1", "--key", live_server.key(),
    )  # fmt: skip
    assert done.returncode == 2
    assert "column(s) 'nmae' are not accounts fields" in done.stderr


def test_push_deals_and_activities(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    key = live_server.key()
    api = f"{live_server.url}/api/v1"
    with Client(api, key) as c:
        c.push_accounts([{"domain": "acme.com", "name": "Acme"}])
    deals = _csv(
        tmp_path / "deals.csv",
        ["externalDealId", "name", "amount", "stageLabel", "accountDomains"],
        [["D1", "Big", "25000", "Proposal", "acme.com"], ["D2", "Odd", "lots", "", "acme.com"]],
    )
    done = intently(database_url, "sync", "push", "deals", str(deals), "--url", api, "--key", key)
    assert done.returncode == 1
    report = _report(deals.with_suffix(".report.csv"))
    assert {r["line"]: r["status"] for r in report} == {"2": "created", "3": "failed"}
    assert "amount 'lots' is not a number" in report[1]["reason"]
    acts = _csv(
        tmp_path / "acts.csv",
        ["externalActivityId", "activityType", "occurredAt", "domain", "ownerEmail",
         "contactEmails"],
        [[f"A{i}", "email", "2026-11-01T10:00:00Z", "acme.com", "rep@x.com", "cto@acme.com"]
         for i in range(60)],
    )  # fmt: skip
    done = intently(
        database_url, "sync", "push", "activities", str(acts), "--url", api, "--key", key
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60 of 60 rows pushed; 0 failed" in done.stdout


def test_profile_columns_push_and_pull(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    key = live_server.key()
    api = f"{live_server.url}/api/v1"
    header = ["domain", "name", "shortName", "industry", "employeeCount", "annualRevenue",
              "country", "city", "logoUrl"]  # fmt: skip
    rows = [
        ["acme.com", "Acme", "ACME", "Software", "1,200", "25000000", "de", "Berlin",
         "https://acme.com/logo.png"],
        ["bare.com", "Bare", "", "", "", "", "", "", ""],
        ["bad.com", "Bad", "", "", "12.5", "", "", "", ""],
        ["odd.com", "Odd", "", "", "many", "", "", "", ""],
    ]  # fmt: skip
    good = _csv(tmp_path / "good.csv", header, rows[:2])
    done = intently(database_url, "sync", "push", "accounts", str(good), "--url", api, "--key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = _csv(tmp_path / "bad.csv", header, rows[2:])
    done = intently(database_url, "sync", "push", "accounts", str(bad), "--url", api, "--key", key)
    assert done.returncode == 1, done.stderr
    report = {r["line"]: r for r in _report(bad.with_suffix(".report.csv"))}
    # Refused by the API (with its batch), naming field and value; and by the CLI itself.
    assert report["2"]["status"] == "error" and "employeeCount" in report["2"]["reason"]
    assert "12.5" in report["2"]["reason"]
    assert report["3"]["status"] == "failed" and "'many' is not a number" in report["3"]["reason"]
    state, out = tmp_path / "state.json", tmp_path / "accounts.out.csv"
    done = intently(database_url, "sync", "pull", "accounts", "--url", api, "--key", key,
                    "--state", str(state), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    pulled = {r["domain"]: r for r in _report(out)}
    acme = pulled["acme.com"]
    assert (acme["shortName"], acme["industry"], acme["country"], acme["city"]) == (
        "ACME", "Software", "DE", "Berlin",
    )  # fmt: skip
    assert acme["employeeCount"] == "1200" and float(acme["annualRevenue"]) == 25_000_000
    assert acme["logoUrl"] == "https://acme.com/logo.png"
    assert {"rtp_fit_score", "rtp_grade"} <= set(acme)
    bare = pulled["bare.com"]
    assert [bare[c] for c in header[2:]] == [""] * 7


def test_pull_is_full_then_delta_and_keeps_the_state_atomically(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    key = live_server.key()
    api = f"{live_server.url}/api/v1"
    with Client(api, key) as c:
        c.create_custom_field("Tier", "singleLineText")
        c.push_accounts(
            [{"domain": f"p{i}.example.com", "name": f"P {i}", "customFields": {"TIER_C": "1"}}
             for i in range(40)]
        )  # fmt: skip
    state, out = tmp_path / "state.json", tmp_path / "accounts.csv"
    args = ["sync", "pull", "accounts", "--url", api, "--key", key, "--state", str(state),
            "--out", str(out)]  # fmt: skip
    done = intently(database_url, *args)
    assert done.returncode == 0, done.stderr
    rows = _report(out)
    assert len(rows) == 40 and rows[0]["cf:TIER_C"] == "1"
    assert {"rtp_aid", "rtp_account_score", "rtp_journey_stage", "segments"} <= set(rows[0])
    first = json.loads(state.read_text())["syncTimestamp"]
    with Client(api, key) as c:
        c.push_accounts([{"domain": "p3.example.com", "name": "Renamed"}], upsert=True)
    done = intently(database_url, *args)
    assert done.returncode == 0, done.stderr
    rows = _report(out)
    assert [r["domain"] for r in rows] == ["p3.example.com"] and rows[0]["name"] == "Renamed"
    assert json.loads(state.read_text())["syncTimestamp"] > first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    state.write_text("not json")
    bad = intently(database_url, *args)
    assert bad.returncode == 2 and "is not a sync state file" in bad.stderr


def test_delta_sync_while_another_process_writes(live_server: LiveServer, tmp_path: Path) -> None:
    """A client keeps a copy by delta syncs while a separate process pushes and renames
    accounts; after the writer stops, one more sync makes the copy equal the server."""
    import subprocess
    import sys

    from intently.client import SyncState

    key = live_server.key()
    api = f"{live_server.url}/api/v1"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, api, key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    copy: dict[str, dict[str, Any]] = {}
    state = SyncState()
    with Client(api, key) as c:
        syncs = 0
        while writer.poll() is None or syncs < 2:
            items, stamp = c.sync_accounts(state)
            for item in items:
                copy[item["rtp_aid"]] = item
            state.sync_timestamp = stamp
            syncs += 1
        out, err = writer.communicate()
        assert writer.returncode == 0, err
        items, stamp = c.sync_accounts(state)
        for item in items:
            copy[item["rtp_aid"]] = item
        truth = {a["rtp_aid"]: a for a in c.iter_accounts()}
    assert syncs >= 2
    assert int(out.strip()) == len(truth) == len(copy)
    assert {k: (v["name"], v["domain"]) for k, v in copy.items()} == {
        k: (v["name"], v["domain"]) for k, v in truth.items()
    }


_WRITER = """
import sys
from intently.client import Client
api, key = sys.argv[1], sys.argv[2]
with Client(api, key) as c:
    for round_ in range(12):
        batch = [{"domain": f"w{round_}-{i}.example.com", "name": f"W {round_} {i}"}
                 for i in range(50)]
        assert all(r.ok for r in c.push_accounts(batch))
        if round_:
            renamed = [{"domain": f"w{round_ - 1}-{i}.example.com", "name": f"R {round_} {i}"}
                       for i in range(0, 50, 3)]
            assert all(r.ok for r in c.push_accounts(renamed, upsert=True))
print(12 * 50)
"""
