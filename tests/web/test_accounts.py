"""The accounts table (ranking, filters, keyset pages, CSV export) and the account page."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import pytest

from tests.support.dashboard import Dashboard
from tests.support.scoring import push_accounts, signals

LINK = re.compile(r'href="/app/accounts/([0-9a-f]{24})"')
NEXT = re.compile(r'href="(/app/accounts\?[^"]*after=[^"]+)"')


def _order(page: str) -> list[str]:
    return LINK.findall(page)


def _walk(board: Dashboard, path: str) -> list[str]:
    """Every account id over every page, following the Next links."""
    seen: list[str] = []
    while path:
        r = board.get(path)
        assert r.status_code == 200, r.text[:300]
        seen += _order(r.text)
        found = NEXT.search(r.text)
        path = html.unescape(found.group(1)) if found else ""
    return seen


@pytest.fixture
def scored(admin: Dashboard, engine: Any) -> dict[str, str]:
    """Six scored accounts: domain -> rtp_aid, with tags, signals of several sources."""
    api = admin.ws.api
    r = api.post(
        "/accounts",
        json={
            "accounts": [
                {"domain": "alpha.com", "name": "Alpha Corp", "tags": ["target", "emea"]},
                {"domain": "bravo.io", "name": "Bravo", "tags": ["target"]},
                {"domain": "charlie.net", "name": "Charlie <script>alert(1)</script>"},
                {"domain": "delta.org", "name": "Delta Health"},
                {"domain": "echo.dev", "name": "Echo", "tags": ["partner"]},
                {"domain": "foxtrot.co", "name": '=HYPERLINK("x")'},
            ]
        },
    )
    assert r.status_code == 200, r.text
    ids = {x["domain"]: x["rtp_aid"] for x in r.json()["data"]["results"]}
    ws = admin.ws.id
    signals(engine, ws, "alpha.com", "g2", "pricing", 0, 1, 2, 3)
    signals(engine, ws, "alpha.com", "website", "page_view", 0, 0, 1, topic="/pricing")
    signals(engine, ws, "bravo.io", "bombora", "surge", 1, 2, value=70, topic="CRM Software")
    signals(engine, ws, "charlie.net", "website", "page_view", 0, 1, 2, 3, 4, topic="/docs")
    signals(engine, ws, "delta.org", "linkedin", "ad_click", 0, 1)
    assert api.post("/scoring/runs", json={"full": True}).status_code == 200
    return ids


def _scores(admin: Dashboard) -> dict[str, float]:
    return {a["domain"]: a["rtp_account_score"] for a in _all(admin)}


def test_the_table_ranks_by_score_with_stage_sub_scores_and_chips(
    admin: Dashboard, scored: dict[str, str]
) -> None:
    page = admin.get("/app/accounts").text
    scores = _scores(admin)
    by_id = {v: k for k, v in scored.items()}
    order = [by_id[aid] for aid in _order(page)]
    assert sorted(order) == sorted(scored)
    assert [scores[d] for d in order] == sorted(scores.values(), reverse=True)
    # Tag chips, stage badges and sub-score columns are there.
    assert "#target" in page and 'class="badge stage"' in page
    assert "Bombora" in page and "Export CSV" in page


def test_names_are_escaped(admin: Dashboard, scored: dict[str, str]) -> None:
    page = admin.get("/app/accounts").text
    assert "Charlie &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    detail = admin.get(f"/app/accounts/{scored['charlie.net']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "<script>alert(1)</script>" not in detail


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=alp", {"alpha.com"}),
        ("q=DELTA", {"delta.org"}),
        ("q=health", set()),  # the start of a name or domain, not any word in it
        ("q=bravo.i", {"bravo.io"}),
        ("tag=target", {"alpha.com", "bravo.io"}),
        ("source=bombora", {"bravo.io"}),
        ("source=linkedin", {"delta.org"}),
        ("source=g2&tag=emea", {"alpha.com"}),
        ("q=nothing-like-this", set()),
    ],
)
def test_filters_select_the_right_accounts(
    admin: Dashboard, scored: dict[str, str], query: str, expected: set[str]
) -> None:
    by_id = {v: k for k, v in scored.items()}
    page = admin.get("/app/accounts?" + query).text
    assert {by_id[a] for a in _order(page)} == expected
    if not expected:
        assert "No account matches these filters" in page


def test_score_range_and_stage_filters_agree_with_the_api(
    admin: Dashboard, scored: dict[str, str]
) -> None:
    data = _all(admin)
    by_id = {v: k for k, v in scored.items()}
    lo = sorted(a["rtp_account_score"] for a in data)[3]
    page = admin.get(f"/app/accounts?score_min={lo}").text
    assert {by_id[a] for a in _order(page)} == {
        a["domain"] for a in data if a["rtp_account_score"] >= lo
    }
    page = admin.get(f"/app/accounts?score_max={lo}").text
    assert {by_id[a] for a in _order(page)} == {
        a["domain"] for a in data if a["rtp_account_score"] <= lo
    }
    stage = data[0]["rtp_journey_stage"]
    page = admin.get("/app/accounts", params={"stage": stage}).text
    assert {by_id[a] for a in _order(page)} == {
        a["domain"] for a in data if a["rtp_journey_stage"] == stage
    }


def test_segment_filter_and_chips(admin: Dashboard, scored: dict[str, str]) -> None:
    api = admin.ws.api
    r = api.post("/segments", json={"name": "Hot list", "type": "static", "status": "active"})
    assert r.status_code == 201, r.text
    sid = (
        r.json()["data"]["segmentId"] if "segmentId" in r.json()["data"] else r.json()["data"]["id"]
    )
    r = api.post(f"/segments/{sid}/accounts", json={"domains": ["echo.dev", "delta.org"]})
    assert r.status_code == 200, r.text
    by_id = {v: k for k, v in scored.items()}
    page = admin.get(f"/app/accounts?segment={sid}").text
    assert {by_id[a] for a in _order(page)} == {"echo.dev", "delta.org"}
    assert page.count('<span class="chip">Hot list</span>') == 2


def test_keyset_pages_cover_every_account_once(admin: Dashboard, engine: Any) -> None:
    domains = [f"acct{n:03d}.example.com" for n in range(130)]
    ids = push_accounts(admin.ws.api, *domains[:100]) + push_accounts(admin.ws.api, *domains[100:])
    for n, d in enumerate(domains[:60]):
        signals(engine, admin.ws.id, d, "g2", "pricing", *range(n % 7))
    assert admin.ws.api.post("/scoring/runs", json={"full": True}).status_code == 200
    seen = _walk(admin, "/app/accounts")
    assert len(seen) == 130 and set(seen) == set(ids)
    # Ties (many accounts share a score) are broken by id, so none is lost or repeated.
    scores = {a["rtp_aid"]: a["rtp_account_score"] for a in _all(admin)}
    assert [scores[a] for a in seen] == sorted(scores.values(), reverse=True)


def _all(board: Dashboard) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    path = "/accounts?limit=1000"
    while path:
        body = board.ws.api.get(path).json()["data"]
        out += body["data"]
        cursor = body["nextCursor"]
        path = f"/accounts?limit=1000&cursor={cursor}" if cursor else ""
    return out


def test_htmx_filter_requests_get_only_the_results(
    admin: Dashboard, scored: dict[str, str]
) -> None:
    r = admin.htmx("GET", "/app/accounts?tag=target", headers={"HX-Target": "results"})
    assert r.status_code == 200
    assert "<html" not in r.text and len(_order(r.text)) == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("score_min=abc", "score_min should be a number from 0 to 100; got &#39;abc&#39;"),
        ("score_max=101", "score_max should be between 0 and 100; got &#39;101.0&#39;"),
        ("source=fax", "source should be one of website, bombora, g2, linkedin; got &#39;fax&#39;"),
        ("after=forged", "Invalid cursor"),
    ],
)
def test_bad_filters_are_named(admin: Dashboard, query: str, message: str) -> None:
    r = admin.get("/app/accounts?" + query)
    assert r.status_code == 400
    assert message in r.text


def test_a_cursor_of_another_workspace_is_refused(
    admin: Dashboard, make_dashboard: Any, engine: Any
) -> None:
    push_accounts(admin.ws.api, *[f"p{n}.example.com" for n in range(60)])
    cursor = NEXT.search(admin.get("/app/accounts").text)
    assert cursor
    stranger = make_dashboard("admin")
    r = stranger.get(html.unescape(cursor.group(1)))
    assert r.status_code == 400 and "Invalid cursor" in r.text


def test_export_holds_every_filtered_account_with_formulas_defused(
    admin: Dashboard, scored: dict[str, str]
) -> None:
    r = admin.get("/app/accounts/export.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["domain"] for row in rows} == set(scored)
    by_domain = {row["domain"]: row for row in rows}
    assert by_domain["foxtrot.co"]["name"] == '\'=HYPERLINK("x")'
    assert by_domain["alpha.com"]["tags"] == "target;emea"
    scores = _scores(admin)
    assert [float(row["rtp_account_score"]) for row in rows] == sorted(
        scores.values(), reverse=True
    )
    only = list(csv.DictReader(io.StringIO(admin.get("/app/accounts/export.csv?tag=target").text)))
    assert {row["domain"] for row in only} == {"alpha.com", "bravo.io"}


def test_empty_workspace_says_how_to_start(admin: Dashboard) -> None:
    page = admin.get("/app/accounts").text
    assert "No accounts yet" in page and "POST /api/v1/accounts" in page


def test_account_page_explains_the_score(admin: Dashboard, scored: dict[str, str]) -> None:
    r = admin.get(f"/app/accounts/{scored['alpha.com']}")
    assert r.status_code == 200
    page = r.text
    assert "Alpha Corp" in page and "Why this score" in page
    explained = admin.ws.api.get(f"/accounts/{scored['alpha.com']}/score").json()["data"]
    g2 = next(s for s in explained["sources"] if s["source"] == "g2")
    pricing = next(t for t in g2["types"] if t["type"] == "pricing")
    # The signal types that gave points are listed with their points.
    assert "Signals that gave points" in page
    assert f"<strong>{pricing['points']:,.1f}</strong>" in page
    # Charts carry their data as JSON (no inline script), timeline shows pages.
    assert 'data-chart="explain-chart"' in page and 'data-chart="history-chart"' in page
    assert "/pricing" in page and "Signal timeline" in page
    assert "Stage history" in page


def test_account_page_lists_deals_activities_and_contacts(
    admin: Dashboard, scored: dict[str, str]
) -> None:
    api = admin.ws.api
    r = api.post(
        "/deals",
        json={"deals": [{"externalDealId": "D-1", "name": "Alpha expansion", "amount": 25000,
                         "stageLabel": "Proposal",
                         "associatedAccounts": [{"domain": "alpha.com"}]}]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    r = api.post(
        "/sales-activities",
        json={"activities": [{"externalActivityId": "A-1", "activityType": "email",
                              "occurredAt": "2026-11-01T10:00:00.000Z", "domain": "alpha.com",
                              "subject": "Pricing follow-up", "ownerEmail": "rep@us.example",
                              "contacts": [{"email": "cto@alpha.com", "name": "Ada CTO",
                                            "title": "CTO"}]}]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    page = admin.get(f"/app/accounts/{scored['alpha.com']}").text
    for text in ("Alpha expansion", "Proposal", "25,000", "Pricing follow-up", "Ada CTO", "CTO"):
        assert text in page, text


def test_account_page_of_an_empty_account_has_empty_states(admin: Dashboard) -> None:
    (aid,) = push_accounts(admin.ws.api, "quiet.example.com")
    page = admin.get(f"/app/accounts/{aid}").text
    for text in ("No signals", "No deals", "No sales activities", "No contacts"):
        assert text in page


def test_timeline_pages_with_htmx(admin: Dashboard, engine: Any) -> None:
    (aid,) = push_accounts(admin.ws.api, "busy.example.com")
    signals(engine, admin.ws.id, "busy.example.com", "website", "page_view", *range(60),
            topic="/blog")  # fmt: skip
    page = admin.get(f"/app/accounts/{aid}").text
    assert page.count('<span class="when">') == 50
    more = re.search(r'hx-get="(/app/accounts/[0-9a-f]+/signals\?cursor=[^"]+)"', page)
    assert more
    r = admin.htmx("GET", html.unescape(more.group(1)))
    assert r.status_code == 200 and r.text.count('<span class="when">') == 10


def test_another_workspaces_account_is_not_found(
    admin: Dashboard, make_dashboard: Any, scored: dict[str, str]
) -> None:
    stranger = make_dashboard("admin")
    r = stranger.get(f"/app/accounts/{scored['alpha.com']}")
    assert r.status_code == 404
    assert "alpha.com" not in r.text
    assert stranger.get("/app/accounts").text.count("alpha.com") == 0


def test_a_search_matching_too_many_says_to_type_more(
    admin: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intently.accounts import ranking

    push_accounts(admin.ws.api, *[f"many{n}.example.com" for n in range(12)])
    monkeypatch.setattr(ranking, "SEARCH_CANDIDATES", 5)
    page = admin.get("/app/accounts?q=many").text
    assert "More than 5 accounts start with “many”" in page
    assert len(_order(page)) == 5  # the first 5 by domain (names are the domains here)
    assert "Type more" not in admin.get("/app/accounts?q=many1").text


@pytest.mark.parametrize("small_set", [1_000, 2])
def test_a_stage_reads_the_same_whether_sorted_or_walked(
    admin: Dashboard, scored: dict[str, str], monkeypatch: pytest.MonkeyPatch, small_set: int
) -> None:
    """Stages under SMALL_SET accounts are read and sorted, larger ones walked along the
    score index: both give every account of the stage, by score."""
    from intently.accounts import ranking

    monkeypatch.setattr(ranking, "SMALL_SET", small_set)
    data = _all(admin)
    stage = max(
        {a["rtp_journey_stage"] for a in data},
        key=lambda s: sum(a["rtp_journey_stage"] == s for a in data),
    )
    want = sorted(
        (a for a in data if a["rtp_journey_stage"] == stage),
        key=lambda a: (a["rtp_account_score"], a["rtp_aid"]),
        reverse=True,
    )
    page = admin.get("/app/accounts", params={"stage": stage}).text
    assert _order(page) == [a["rtp_aid"] for a in want]
