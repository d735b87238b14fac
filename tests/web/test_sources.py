"""Dashboard Sources pages: snippet and write key, IP ranges, vendor file imports with their
reports, puller connections (credentials write-only), source settings, runs and rejects.

Everything is driven through the dashboard's HTTP surface; results are checked through the
External API (signals, settings, the website key) as a user of the API would see them."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from intently.ingest.connections import get_connection
from intently.signals.store import IngestRun
from tests.support.dashboard import Dashboard, run_id_of, upload
from tests.support.data import push_account, signals_of
from tests.support.vendor_files import (
    LINKEDIN_HEADER,
    SURGE_HEADER,
    SURGE_ROWS,
    bombora_csv,
    bombora_row,
    linkedin_row,
)

KEY = "web-sources-credentials-key-" + "k" * 16
XSS = "<script>alert(1)</script>"

ADMIN_GETS = [
    "/app/sources",
    "/app/sources/website",
    "/app/sources/bombora",
    "/app/sources/g2",
    "/app/sources/linkedin",
    "/app/sources/runs",
    "/app/sources/bombora/progress",
]
ADMIN_POSTS = [
    "/app/sources/website/rotate-key",
    "/app/sources/website/ip-ranges",
    "/app/sources/website/ip-ranges/clear",
    "/app/sources/bombora/import",
    "/app/sources/g2/connection",
    "/app/sources/bombora/settings",
    "/app/sources/linkedin/map",
]


@pytest.fixture
def sealed(app: Any) -> Iterator[None]:
    """The app with an operator credentials key (the session app has none)."""
    st = app.state.intently
    settings = st.settings.model_copy(update={"credentials_key": KEY})
    app.state.intently = dataclasses.replace(st, settings=settings)
    try:
        yield
    finally:
        app.state.intently = st


# ---- access ------------------------------------------------------------------------------


def test_every_route_renders_for_an_empty_workspace(admin: Dashboard) -> None:
    for path in ADMIN_GETS:
        r = admin.get(path)
        assert r.status_code == 200, (path, r.text[:300])
    assert "Nothing imported yet" in admin.get("/app/sources").text
    assert "No website events yet" in admin.get("/app/sources").text
    assert "No imports yet" in admin.get("/app/sources/runs").text
    assert "Nothing imported yet" in admin.get("/app/sources/g2").text
    assert "No website runs yet" in admin.get("/app/sources/website").text
    assert "Not connected" in admin.get("/app/sources/linkedin").text


def test_a_member_gets_403_everywhere(member: Dashboard, admin: Dashboard) -> None:
    upload(admin, "/app/sources/bombora/import", "s.csv", bombora_csv(SURGE_ROWS, SURGE_HEADER))
    run_id = admin.ws.api.get("/ingest/runs").json()["data"]["data"][0]["runId"]
    for path in [*ADMIN_GETS, f"/app/sources/runs/{run_id}"]:
        assert member.get(path).status_code == 403, path
    for path in ADMIN_POSTS:
        assert member.post(path, {}).status_code == 403, path
        assert member.htmx("POST", path, data={}).status_code == 403, path
    assert "Sources" not in member.get("/app/accounts").text.split("<main")[0]


def test_anonymous_is_sent_to_sign_in(client: Any) -> None:
    for path in ADMIN_GETS:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/app/login?next="), path


def test_posts_without_the_csrf_token_are_refused(admin: Dashboard) -> None:
    key = admin.ws.api.get("/website").json()["data"]["writeKey"]
    for path in ADMIN_POSTS:
        r = admin.client.post(path, data={"x": "1"}, follow_redirects=False)
        assert r.status_code == 403, path
    assert admin.ws.api.get("/website").json()["data"]["writeKey"] == key


def test_unknown_sources_and_other_workspaces_runs_are_404(
    admin: Dashboard, make_dashboard: Any
) -> None:
    assert admin.get("/app/sources/salesforce").status_code == 404
    assert admin.post("/app/sources/website/import", {}).status_code == 404
    other = make_dashboard("admin")
    r = upload(other, "/app/sources/bombora/import", "s.csv", bombora_csv(SURGE_ROWS, SURGE_HEADER))
    theirs = run_id_of(r.text)
    assert other.get(f"/app/sources/runs/{theirs}").status_code == 200
    r = admin.get(f"/app/sources/runs/{theirs}")
    assert r.status_code == 404
    assert theirs in r.text  # the message names the id


# ---- website -----------------------------------------------------------------------------


def test_website_shows_the_snippet_with_this_servers_url_and_rotates_the_key(
    admin: Dashboard,
) -> None:
    key = admin.ws.api.get("/website").json()["data"]["writeKey"]
    page = admin.get("/app/sources/website").text
    assert f"&lt;script async src=&#34;http://testserver/t.js?k={key}&#34;&gt;" in page
    assert f'<code id="write-key-value">{key}</code>' in page
    assert "/v1/batch" in page  # Segment-compatible instructions

    r = admin.htmx("POST", "/app/sources/website/rotate-key")
    assert r.status_code == 200
    new = admin.ws.api.get("/website").json()["data"]["writeKey"]
    assert new != key and new in r.text and key not in r.text
    assert "stops working" in r.text

    r = admin.post("/app/sources/website/rotate-key")
    assert r.status_code == 303
    assert admin.ws.api.get("/website").json()["data"]["writeKey"] not in (key, new)


def test_ip_ranges_upload_reports_counts_and_named_rejects(admin: Dashboard) -> None:
    body = (
        "network,domain,company\n"
        "52.10.0.0/16,acme.com,Acme\n"
        "64.233.160.5,globex.com,Globex\n"
        "999.1.1.1/24,initech.io,Initech\n"
        f"185.199.108.0/22,gmail.com,{XSS}\n"
    ).encode()
    r = upload(admin, "/app/sources/website/ip-ranges", "ranges.csv", body)
    assert r.status_code == 200, r.text
    assert re.search(r"<dt>Read</dt><dd>4</dd>", r.text)
    assert re.search(r"<dt>Stored \(new\)</dt><dd>2</dd>", r.text)
    assert re.search(r"<dt>IP ranges now</dt><dd>2</dd>", r.text)
    assert "999.1.1.1/24" in r.text  # the rejected row, shown with its line
    assert "network_domain" in r.text
    assert XSS not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "<strong>2</strong> IP ranges" in admin.get("/app/sources/website").text

    # Again: nothing new. Replace with one row: the other range goes.
    r = upload(admin, "/app/sources/website/ip-ranges", "ranges.csv", body)
    assert re.search(r"<dt>Already there</dt><dd>2</dd>", r.text)
    r = upload(
        admin,
        "/app/sources/website/ip-ranges",
        "one.csv",
        b"52.10.0.0/16,acme.com\n",
        replace="on",
    )
    assert r.status_code == 200
    assert re.search(r"<dt>IP ranges now</dt><dd>1</dd>", r.text)
    r = admin.htmx("POST", "/app/sources/website/ip-ranges/clear")
    assert "1 IP ranges removed" in r.text
    assert "<strong>0</strong> IP ranges" in admin.get("/app/sources/website").text


def test_website_settings_save_and_name_bad_values(admin: Dashboard) -> None:
    r = admin.htmx(
        "POST",
        "/app/sources/website/settings",
        data={
            "respectDoNotTrack": "off",
            "ipRetentionDays": "30",
            "highValuePages": "pricing */pricing*\ntrial */start-trial*",
            "formEvents": "Form Submitted\nDemo Booked",
        },
    )
    assert r.status_code == 200, r.text
    assert "Settings saved" in r.text
    got = admin.ws.api.get("/sources/website/settings").json()["data"]
    assert got["respectDoNotTrack"] is False
    assert got["ipRetentionDays"] == 30
    assert got["highValuePages"][1] == {"name": "trial", "pattern": "*/start-trial*"}
    assert got["formEvents"] == ["Form Submitted", "Demo Booked"]

    r = admin.htmx(
        "POST",
        "/app/sources/website/settings",
        data={"respectDoNotTrack": "on", "ipRetentionDays": "9999", "highValuePages": ""},
    )
    assert r.status_code == 400
    assert "ipRetentionDays: &#39;9999&#39; must be from 0 to 3650" in r.text
    r = admin.htmx(
        "POST",
        "/app/sources/website/settings",
        data={"respectDoNotTrack": "on", "ipRetentionDays": "7", "highValuePages": "justone"},
    )
    assert r.status_code == 400 and "highValuePages: &#39;justone&#39;" in r.text
    assert admin.ws.api.get("/sources/website/settings").json()["data"]["ipRetentionDays"] == 30


# ---- vendor file imports ------------------------------------------------------------------


def test_a_bombora_upload_makes_signals_and_shows_the_report(admin: Dashboard) -> None:
    api = admin.ws.api
    aid = push_account(api, "acme.com")
    content = bombora_csv(SURGE_ROWS, SURGE_HEADER)
    r = upload(admin, "/app/sources/bombora/import", "surge-week-47.csv", content)
    assert r.status_code == 200, r.text
    assert "Imported surge-week-47.csv" in r.text
    assert re.search(r"<dt>Read</dt><dd>4</dd>", r.text)
    assert re.search(r"<dt>Stored \(new\)</dt><dd>2</dd>", r.text)
    assert re.search(r"<dt>Rejected</dt><dd>1 <span class=\"chip\">", r.text)
    assert re.search(r"<dt>Skipped</dt><dd>1 ", r.text)
    run_id = run_id_of(r.text)
    assert "not a domain" in r.text  # the rejected row's raw cells
    # The page's recent runs list is refreshed out of band with this run.
    oob = r.text.split('id="recent-runs-list" hx-swap-oob="true"', 1)[1]
    assert run_id in oob and "surge-week-47.csv" in oob

    got = signals_of(api, aid, "bombora")
    assert sorted((s["topic"], s["value"]) for s in got) == [
        ("CRM", 88.0),
        ("Cloud Computing", 72.0),
    ]
    run = api.get(f"/ingest/runs/{run_id}").json()["data"]
    assert (run["status"], run["label"], run["accepted"]) == ("done", "surge-week-47.csv", 2)

    # The same file again through a plain (non-htmx) form post: a full page, all duplicates.
    r = upload(admin, "/app/sources/bombora/import", "surge-week-47.csv", content, htmx=False)
    assert r.status_code == 200
    assert "<html" in r.text and re.search(r"<dt>Already there</dt><dd>2</dd>", r.text)
    assert len(signals_of(api, aid, "bombora")) == 2

    cards = admin.get("/app/sources").text
    assert "surge-week-47.csv" in cards and "Nothing imported yet" in cards  # G2 still empty
    assert "surge-week-47.csv" in admin.get("/app/sources/bombora").text


def test_a_bombora_file_for_a_given_week(admin: Dashboard) -> None:
    api = admin.ws.api
    aid = push_account(api, "acme.com")
    content = bombora_csv([bombora_row("acme.com", "CRM", 75)])
    r = upload(admin, "/app/sources/bombora/import", "noweek.csv", content)
    assert r.status_code == 400
    assert "week" in r.text.lower()
    r = upload(admin, "/app/sources/bombora/import", "noweek.csv", content, week="2026-13-01")
    assert r.status_code == 400 and "week: &#39;2026-13-01&#39; is not a date" in r.text
    r = upload(admin, "/app/sources/bombora/import", "noweek.csv", content, week="2026-11-25")
    assert r.status_code == 200, r.text
    assert "week 2026-11-23" in r.text
    assert [s["occurredAt"][:10] for s in signals_of(api, aid, "bombora")] == ["2026-11-23"]


def test_a_bad_file_shows_the_importers_named_errors(admin: Dashboard) -> None:
    wrong = b"Name,Website,Score\nAcme,acme.com,80\n"
    r = upload(admin, "/app/sources/bombora/import", "wrong.csv", wrong)
    assert r.status_code == 400
    assert 'class="flash error"' in r.text
    assert "missing column(s)" in r.text and "found Name, Website, Score" in r.text
    r = upload(admin, "/app/sources/g2/import", "wrong.csv", wrong)
    assert r.status_code == 400 and "missing column" in r.text
    r = upload(admin, "/app/sources/bombora/import", "bin.csv", b"\xff\xfe\x00garbage\x00\xff")
    assert r.status_code == 400 and "not a UTF-8" in r.text
    r = upload(admin, "/app/sources/bombora/import", "empty.csv", b"")
    assert r.status_code == 400 and "file: &#39;empty.csv&#39; is empty" in r.text
    r = admin.htmx("POST", "/app/sources/bombora/import", data={"week": ""})
    assert r.status_code == 400 and "file: choose a file" in r.text
    # Nothing was half-imported.
    assert (
        admin.ws.api.get("/ingest/runs", params={"source": "bombora"}).json()["data"]["data"] == []
    )


def test_g2_and_linkedin_uploads(admin: Dashboard) -> None:
    api = admin.ws.api
    aid = push_account(api, "globex.com")
    g2 = (
        b"Id,Time,Tag,Title,URL,Company Name,Company Domain\n"
        b"ev-1,2026-10-05T10:00:00Z,products.pricing,Pricing,https://www.g2.com/products/x/pricing,"
        b"Globex,globex.com\n"
        b"ev-2,not a time,products.pricing,Pricing,https://www.g2.com/products/x,Globex,globex.com\n"
    )
    r = upload(admin, "/app/sources/g2/import", "g2.csv", g2)
    assert r.status_code == 200, r.text
    assert re.search(r"<dt>Stored \(new\)</dt><dd>1</dd>", r.text)
    assert [s["type"] for s in signals_of(api, aid, "g2")] == ["pricing"]

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(LINKEDIN_HEADER)
    w.writerow(linkedin_row(123456, impressions=50))
    r = upload(admin, "/app/sources/linkedin/import", "li.csv", out.getvalue().encode())
    assert r.status_code == 200, r.text
    assert "unknown_organization" in r.text  # unmapped organization: kept as a reject
    assert "urn:li:organization:123456" in r.text
    li_run = run_id_of(r.text)
    assert "Map a LinkedIn organization" in admin.get("/app/sources/linkedin").text

    # Map the organization from the dashboard: its rejected rows are re-applied.
    r = admin.htmx(
        "POST", "/app/sources/linkedin/map", data={"org": "123456", "domain": "not a domain"}
    )
    assert r.status_code == 400 and "domain: &#39;not a domain&#39; is not a domain" in r.text
    r = admin.htmx("POST", "/app/sources/linkedin/map", data={"org": "", "domain": "globex.com"})
    assert r.status_code == 400 and "org: enter" in r.text
    r = admin.htmx(
        "POST", "/app/sources/linkedin/map", data={"org": "123456", "domain": "globex.com"}
    )
    assert r.status_code == 200, r.text
    assert "urn:li:organization:123456 now maps to globex.com" in r.text
    types = sorted(s["type"] for s in signals_of(api, aid, "linkedin"))
    assert types == ["ad_click", "ad_engagement", "ad_impression", "lead_form"]
    assert "reapplied" in admin.get(f"/app/sources/runs/{li_run}").text


def test_the_rejects_browser_pages_by_keyset_and_escapes_rows(admin: Dashboard) -> None:
    rows = [bombora_row(f"bad domain {i:03d}", "CRM", 80, Week="2026-11-23") for i in range(120)]
    rows.append(bombora_row(XSS, "CRM", 80, Week="2026-11-23"))
    r = upload(admin, "/app/sources/bombora/import", "bad.csv", bombora_csv(rows, SURGE_HEADER))
    assert r.status_code == 200
    assert "(first 10)" in r.text and "All 121 rejected rows" in r.text
    run_id = run_id_of(r.text)

    seen: list[str] = []
    path: str | None = f"/app/sources/runs/{run_id}"
    pages = 0
    while path:
        page = admin.get(path)
        assert page.status_code == 200
        assert "OFFSET" not in page.text
        seen += re.findall(r"&#34;Domain&#34;: &#34;bad domain (\d{3})", page.text)
        nxt = re.search(r'href="(/app/sources/runs/[0-9a-f]+\?cursor=[^"#]+)#rejects"', page.text)
        path = nxt.group(1).replace("&amp;", "&") if nxt else None
        pages += 1
        if pages == 3:
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
            assert XSS not in page.text
    assert pages == 3
    assert seen == [f"{i:03d}" for i in range(120)]  # each once, in file order
    assert re.search(r'<td class="num">2</td>', admin.get(f"/app/sources/runs/{run_id}").text)

    runs = admin.get("/app/sources/runs?source=bombora").text
    assert run_id in runs and "bad.csv" in runs
    assert "No rejected rows" in admin.get(
        "/app/sources/runs/" + run_id_of(upload(admin, "/app/sources/bombora/import", "ok.csv",
                                               bombora_csv(SURGE_ROWS[:1], SURGE_HEADER)).text)
    ).text  # fmt: skip
    assert admin.get("/app/sources/runs?source=nope").status_code == 404


def test_the_runs_list_pages_by_keyset(admin: Dashboard, engine: Any) -> None:
    for i in range(55):
        IngestRun(engine, admin.ws.id, "g2", "file", f"run-{i:02d}.csv").finish()
    first = admin.get("/app/sources/runs?source=g2")
    labels = re.findall(r"run-(\d\d)\.csv", first.text)
    assert labels == [f"{i:02d}" for i in range(54, 4, -1)]
    nxt = re.search(r'href="(/app/sources/runs\?cursor=[^"]+)"', first.text)
    assert nxt
    second = admin.get(nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r"run-(\d\d)\.csv", second.text) == ["04", "03", "02", "01", "00"]
    assert "Older runs" not in second.text and "First page" in second.text


def test_progress_shows_the_running_import(admin: Dashboard, engine: Any) -> None:
    r = admin.htmx("GET", "/app/sources/bombora/progress")
    assert r.status_code == 200 and "counts appear after the first batch" in r.text
    run = IngestRun(engine, admin.ws.id, "bombora", "file", "huge-surge.csv")
    run.read(20_000)
    run.flush()
    r = admin.htmx("GET", "/app/sources/bombora/progress")
    assert "Importing huge-surge.csv: 20,000 rows read" in r.text
    run.finish()
    assert "huge-surge" not in admin.htmx("GET", "/app/sources/bombora/progress").text


# ---- connections ------------------------------------------------------------------------


def pages_of(board: Dashboard) -> str:
    return "".join(
        board.get(p).text for p in ["/app/sources", "/app/sources/g2", "/app/sources/bombora",
                                    "/app/sources/linkedin", "/app/sources/runs"]
    )  # fmt: skip


def test_credentials_are_write_only(admin: Dashboard, engine: Any, sealed: None) -> None:
    token = "g2tok-" + uuid.uuid4().hex
    assert "not set" in admin.get("/app/sources/g2").text
    r = admin.htmx(
        "POST",
        "/app/sources/g2/connection",
        data={"token": token, "base_url": "", "initial_days": "7", "interval_minutes": "30"},
    )
    assert r.status_code == 200, r.text
    assert "Connection saved" in r.text and token not in r.text
    assert (r.headers["HX-Retarget"], r.headers["HX-Reswap"]) == ("#connection", "outerHTML")
    assert '<span class="badge set">set</span>' in r.text
    stored = get_connection(engine, admin.ws.id, "g2", key=KEY)
    assert stored["credentials"] == {"token": token}
    assert stored["config"]["initial_days"] == 7 and stored["config"]["interval_minutes"] == 30
    assert stored["config"]["base_url"] == "https://data.g2.com"
    page = admin.get("/app/sources/g2").text
    assert 'value="30"' in page and token not in page

    # An empty field keeps the stored secret; the schedule can be turned off.
    r = admin.post("/app/sources/g2/connection", {"token": "", "enabled": "off"})
    assert r.status_code == 303
    stored = get_connection(engine, admin.ws.id, "g2", key=KEY)
    assert stored["credentials"] == {"token": token} and stored["enabled"] is False
    assert token not in pages_of(admin)

    # Bombora: change the password alone; the user name stays.
    admin.htmx("POST", "/app/sources/bombora/connection",
               data={"username": "partner-7", "password": "pw-first-Zq7"})  # fmt: skip
    admin.htmx("POST", "/app/sources/bombora/connection", data={"password": "pw-second-Zq7"})
    creds = get_connection(engine, admin.ws.id, "bombora", key=KEY)["credentials"]
    assert creds == {"username": "partner-7", "password": "pw-second-Zq7"}
    html = pages_of(admin)
    for secret in ("partner-7", "pw-first-Zq7", "pw-second-Zq7", token):
        assert secret not in html


def test_connection_errors_name_the_field_and_value(admin: Dashboard, sealed: None) -> None:
    r = admin.htmx("POST", "/app/sources/g2/connection", data={"token": ""})
    assert r.status_code == 400 and "token: required to create" in r.text
    r = admin.htmx(
        "POST", "/app/sources/g2/connection", data={"token": "t-1", "interval_minutes": "often"}
    )
    assert r.status_code == 400
    assert "interval_minutes: &#39;often&#39; is not a whole number" in r.text
    r = admin.htmx(
        "POST", "/app/sources/linkedin/connection",
        data={"access_token": "li-1", "accounts": "503412345, acme"},
    )  # fmt: skip
    assert (
        r.status_code == 400 and "accounts: &#39;acme&#39; is not a LinkedIn ad account" in r.text
    )
    r = admin.htmx(
        "POST", "/app/sources/bombora/connection",
        data={"username": "u", "password": "p", "base_url": "ftp://x"},
    )  # fmt: skip
    assert r.status_code == 400 and "base_url: &#39;ftp://x&#39; is not an http(s) URL" in r.text
    assert "t-1" not in pages_of(admin)
    assert "Not connected" in admin.get("/app/sources/g2").text


def test_without_an_operator_key_the_page_says_how_to_set_one(admin: Dashboard) -> None:
    assert "INTENTLY_CREDENTIALS_KEY is not set" in admin.get("/app/sources/g2").text
    r = admin.htmx("POST", "/app/sources/g2/connection", data={"token": "tok-nokey"})
    assert r.status_code == 400 and "INTENTLY_CREDENTIALS_KEY is not set" in r.text


# ---- source settings --------------------------------------------------------------------


def test_vendor_settings_save_and_validate(admin: Dashboard) -> None:
    api = admin.ws.api
    r = admin.htmx(
        "POST",
        "/app/sources/bombora/settings",
        data={"surgeThreshold": "70", "topics": "CRM\n\nCloud Computing\n"},
    )
    assert r.status_code == 200 and "Settings saved" in r.text
    assert api.get("/sources/bombora/settings").json()["data"] == {
        "surgeThreshold": 70,
        "topics": ["CRM", "Cloud Computing"],
    }
    r = admin.htmx("POST", "/app/sources/bombora/settings", data={"surgeThreshold": "101"})
    assert r.status_code == 400 and "surgeThreshold: &#39;101&#39; must be from 0 to 100" in r.text

    r = admin.post("/app/sources/g2/settings", {"tagMap": "products.pricing pricing\nads.* other"})
    assert r.status_code == 303
    assert api.get("/sources/g2/settings").json()["data"]["tagMap"][1] == {
        "tag": "ads.*",
        "type": "other",
    }
    r = admin.htmx("POST", "/app/sources/g2/settings", data={"tagMap": f"x.y {XSS}"})
    assert r.status_code == 400
    assert "&lt;script&gt;" in r.text and XSS not in r.text

    r = admin.htmx("POST", "/app/sources/linkedin/settings", data={"trailingDays": "14"})
    assert r.status_code == 200
    assert api.get("/sources/linkedin/settings").json()["data"]["trailingDays"] == 14
    assert 'value="14"' in admin.get("/app/sources/linkedin").text


def test_a_new_base_url_needs_a_public_host_and_the_credentials_again(
    admin: Dashboard, engine: Any, sealed: None
) -> None:
    token = "g2tok-" + uuid.uuid4().hex
    r = admin.post("/app/sources/g2/connection", {"token": token})
    assert r.status_code == 303
    # The stored token is never sent to a host it was not set for.
    r = admin.post("/app/sources/g2/connection", {"base_url": "https://8.8.8.8/g2"})
    assert r.status_code == 400
    assert "base_url: changing it to &#39;https://8.8.8.8/g2&#39; needs the credentials" in r.text
    # Nor does the server call into its own network.
    for inward in ("http://127.0.0.1:5432", "http://10.0.0.7/g2", "http://169.254.169.254/"):
        r = admin.post("/app/sources/g2/connection", {"base_url": inward, "token": "t2"})
        assert r.status_code == 400 and "refused" in r.text, inward
    stored = get_connection(engine, admin.ws.id, "g2", key=KEY)
    assert stored["credentials"] == {"token": token}
    assert stored["config"]["base_url"] == "https://data.g2.com"
    # With the credentials typed again, a public host is taken.
    r = admin.post("/app/sources/g2/connection", {"base_url": "https://8.8.8.8/g2", "token": "t3"})
    assert r.status_code == 303
    stored = get_connection(engine, admin.ws.id, "g2", key=KEY)
    assert stored["config"]["base_url"] == "https://8.8.8.8/g2"
    assert stored["credentials"] == {"token": "t3"}
