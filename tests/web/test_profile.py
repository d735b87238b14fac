"""The company profile in the dashboard: the CSV/XLSX upload with its column mapping and
report, the profile on the account page, and the profile filters of the accounts list."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import update

from intently.accounts.tables import accounts
from intently.ingest.files import FileFormatError, FileLimits, FileTooLarge, XlsxInput
from intently.kit.db import write_tx
from tests.support.dashboard import Dashboard

LINK = re.compile(r'href="/app/accounts/([0-9a-f]{24})"')
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _push(board: Dashboard, *items: dict[str, Any]) -> dict[str, str]:
    r = board.ws.api.post("/accounts", json={"accounts": list(items)})
    assert r.status_code == 200, r.text
    return {x["domain"]: x["rtp_aid"] for x in r.json()["data"]["results"]}


def _items(board: Dashboard) -> dict[str, dict[str, Any]]:
    r = board.ws.api.get("/accounts", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {a["domain"]: a for a in r.json()["data"]["data"]}


def _columns(board: Dashboard, name: str, content: bytes, kind: str = "text/csv") -> Any:
    return board.htmx(
        "POST", "/app/accounts/profile-upload/columns", files={"file": (name, content, kind)}
    )


def _apply(
    board: Dashboard,
    name: str,
    content: bytes,
    mapping: list[tuple[str, str]],
    kind: str = "text/csv",
) -> Any:
    data = {"column": [c for c, _ in mapping], "target": [t for _, t in mapping]}
    return board.htmx(
        "POST",
        "/app/accounts/profile-upload/apply",
        data=data,
        files={"file": (name, content, kind)},
    )


ROWS = [
    ["Website", "Sector", "Headcount", "Revenue", "HQ Country", "Town", "Notes"],
    ["https://www.Acme.com/", "Software", "1,200", "25000000", "Germany", "Berlin", "x"],
    ["globex.com", "Banking", "51-200 employees", "", "us", "", "y"],
    ["initech.io", "Printing", "40", "", "", "", ""],  # no such account
    ["umbrella.com", "Pharma", "many", "", "GB", "London", ""],  # refused: Headcount
    ["hooli.com", "", "", "-5", "", "", ""],  # refused: Revenue
    ["not a domain", "Retail", "", "", "", "", ""],  # refused: domain
    ["", "", "", "", "", "", ""],  # blank: skipped
]
MAPPING = [
    ("Website", "domain"),
    ("Sector", "industry"),
    ("Headcount", "employeeCount"),
    ("Revenue", "annualRevenue"),
    ("HQ Country", "country"),
    ("Town", "city"),
    ("Notes", ""),
]


@pytest.fixture
def four(admin: Dashboard) -> dict[str, str]:
    return _push(
        admin,
        {"domain": "acme.com", "name": "Acme", "city": "Hamburg"},
        {"domain": "globex.com", "name": "Globex", "industry": "Old"},
        {"domain": "umbrella.com", "name": "Umbrella"},
        {"domain": "hooli.com", "name": "Hooli", "industry": "Search"},
    )


def test_columns_step_lists_the_file_columns_with_guessed_fields(admin: Dashboard) -> None:
    r = _columns(admin, "profile.csv", _csv(ROWS))
    assert r.status_code == 200, r.text
    names = re.findall(r'name="column" value="([^"]*)"', r.text)
    assert names == ROWS[0]
    selects = re.findall(r'<select name="target".*?</select>', r.text, re.S)
    chosen = [re.search(r'<option value="([^"]*)" selected', s) for s in selects]
    assert [c.group(1) if c else "" for c in chosen] == [t for _, t in MAPPING]


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_apply_updates_existing_accounts_and_reports_the_rest(
    admin: Dashboard, four: dict[str, str], kind: str
) -> None:
    api = admin.ws.api
    since = api.get("/accounts").json()["data"]["syncTimestamp"]
    content = _csv(ROWS) if kind == "csv" else _xlsx(ROWS)
    mime = "text/csv" if kind == "csv" else XLSX
    r = _apply(admin, f"profile.{kind}", content, MAPPING, mime)
    assert r.status_code == 200, r.text
    page = html.unescape(r.text)
    assert "2 accounts updated from 6 rows" in page, re.findall(r'role="status">[^<]*', page)
    refused = re.findall(
        r"<tr><td class=\"num\">(\d+)</td><td>(\w+)</td><td><code>([^<]*)</code></td>", r.text
    )
    assert [(int(line), f, html.unescape(v)) for line, f, v in refused] == [
        (5, "employeeCount", "many"),
        (6, "annualRevenue", "-5"),
        (7, "domain", "not a domain"),
    ]
    assert 'employeeCount must be an integer number, not "many"' in page
    assert "initech.io" in page  # not found, listed
    found = _items(admin)
    assert set(found) == {"acme.com", "globex.com", "umbrella.com", "hooli.com"}
    acme, globex = found["acme.com"], found["globex.com"]
    assert (acme["industry"], acme["employeeCount"], acme["annualRevenue"]) == (
        "Software", 1200, 25_000_000,
    )  # fmt: skip
    assert (acme["country"], acme["city"]) == ("DE", "Berlin")
    # The file's values win over what was there; an empty cell keeps it.
    assert (globex["industry"], globex["employeeCount"], globex["country"]) == ("Banking", 51, "US")
    assert globex["city"] is None
    # A refused row writes nothing at all, not even its good cells.
    assert (found["umbrella.com"]["industry"], found["umbrella.com"]["country"]) == (None, None)
    assert found["hooli.com"]["industry"] == "Search"
    # The changes reach an API delta sync.
    r = api.get("/accounts", params={"lastSync": since})
    assert {a["domain"] for a in r.json()["data"]["data"]} == {"acme.com", "globex.com"}

    again = _apply(admin, f"profile.{kind}", content, MAPPING, mime)
    assert "0 accounts updated" in again.text


def test_the_domain_column_is_required_and_a_field_once(
    admin: Dashboard, four: dict[str, str]
) -> None:
    content = _csv(ROWS)
    r = _apply(admin, "p.csv", content, [(c, "" if t == "domain" else t) for c, t in MAPPING])
    assert r.status_code == 400
    assert "choose the column that holds each account&#39;s domain" in r.text
    twice = [(c, "city" if c in ("Town", "Notes") else t) for c, t in MAPPING]
    r = _apply(admin, "p.csv", content, twice)
    assert r.status_code == 400 and "city is mapped from more than one column" in r.text
    r = _apply(admin, "p.csv", content, [(c, "nope" if c == "Notes" else t) for c, t in MAPPING])
    assert r.status_code == 400 and "&#39;nope&#39; is not a profile field" in r.text
    assert _items(admin)["acme.com"]["industry"] is None


def test_a_file_whose_columns_changed_since_the_mapping_is_refused(
    admin: Dashboard, four: dict[str, str]
) -> None:
    other = _csv([["Sector", "Website"], ["Software", "acme.com"]])
    r = _apply(admin, "p.csv", other, [("Website", "domain"), ("Sector", "industry")])
    assert r.status_code == 400 and "not the ones the mapping was chosen for" in r.text
    assert _items(admin)["acme.com"]["industry"] is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty"),
        (b"PK\x03\x04not really a zip", "is not an Excel workbook"),
        (b"\xff\xfe\x00bad", "is not a UTF-8"),
    ],
)
def test_unreadable_files_are_named(admin: Dashboard, content: bytes, words: str) -> None:
    r = _columns(admin, "bad.csv", content)
    assert r.status_code == 400, r.text
    assert words in html.unescape(r.text)


def test_a_member_may_upload_and_an_anonymous_visitor_may_not(
    admin: Dashboard, member: Dashboard, four: dict[str, str]
) -> None:
    assert member.get("/app/accounts/profile-upload").status_code == 200
    r = _apply(member, "p.csv", _csv(ROWS[:2]), MAPPING)
    assert r.status_code == 200, r.text
    assert _items(admin)["acme.com"]["industry"] == "Software"


# ---- the spreadsheet reader's limits ---------------------------------------------------


def test_xlsx_reader_keeps_types_and_skips_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.xlsx"
    path.write_bytes(_xlsx([["Domain", "Employees", None], ["a.com", 12, None], [None, None]]))
    with XlsxInput(path) as table:
        assert table.header == ["Domain", "Employees"]
        assert list(table.rows()) == [(2, ["a.com", 12])]


def test_xlsx_reader_enforces_the_import_limits(tmp_path: Path) -> None:
    path = tmp_path / "big.xlsx"
    path.write_bytes(_xlsx([["Domain", "Note"], *[[f"d{i}.com", "x" * 500] for i in range(3000)]]))
    small = FileLimits(max_decompressed_bytes=100_000, max_compression_ratio=500, max_line_chars=10)
    with pytest.raises(FileTooLarge, match="INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES"):
        XlsxInput(path, limits=small)
    bomb = FileLimits(max_decompressed_bytes=10**9, max_compression_ratio=2, max_line_chars=10**6)
    with pytest.raises(FileTooLarge, match="decompression bomb"):
        XlsxInput(path, limits=bomb)
    short = FileLimits(max_decompressed_bytes=10**9, max_compression_ratio=500, max_line_chars=100)
    with XlsxInput(path, limits=short) as table, pytest.raises(FileFormatError, match="row 2"):
        list(table.rows())


# ---- the account page and the list's filters -------------------------------------------


def test_account_page_shows_the_profile(admin: Dashboard, engine: Any) -> None:
    ids = _push(
        admin,
        {
            "domain": "acme.com",
            "name": "Acme",
            "industry": "Software",
            "employeeCount": 1200,
            "annualRevenue": 25e6,
            "country": "DE",
            "city": "Berlin",
            "logoUrl": "https://cdn.example.com/acme.png",
        },
        {"domain": "bare.com", "name": "Bare"},
    )
    with write_tx(engine) as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.workspace_id == admin.ws.id, accounts.c.id == ids["acme.com"])
            .values(rtp_fit_score=81.25, rtp_grade="A2")
        )
    page = admin.get(f"/app/accounts/{ids['acme.com']}").text
    profile = page[page.index('id="profile"') :]
    profile = profile[: profile.index("</dl>")]
    for text in ("Software", "1,200", "25,000,000 USD", "Berlin, DE", "81.2", "A2"):
        assert text in profile, text
    assert '<img class="logo" src="https://cdn.example.com/acme.png"' in page
    bare = admin.get(f"/app/accounts/{ids['bare.com']}").text
    assert "D4" in bare and '<img class="logo"' not in bare  # graded when created
    csp = admin.get(f"/app/accounts/{ids['bare.com']}").headers["Content-Security-Policy"]
    assert "img-src 'self' data: https:;" in csp


def _account(domain: str, industry: str, employees: int, country: str) -> dict[str, Any]:
    return {
        "domain": domain,
        "name": domain,
        "industry": industry,
        "employeeCount": employees,
        "country": country,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("industry=software", {"a.com", "b.com"}),
        ("country=de", {"a.com", "c.com"}),
        ("employees_min=500", {"a.com", "c.com"}),
        ("employees_min=500&industry=Software", {"a.com"}),
        ("grade=A", {"a.com", "b.com"}),
        ("grade=a2", {"b.com"}),
        ("country=FR", set()),
    ],
)
def test_profile_filters_select_the_right_accounts(
    admin: Dashboard, engine: Any, query: str, expected: set[str]
) -> None:
    ids = _push(
        admin,
        _account("a.com", "Software", 900, "DE"),
        _account("b.com", "SOFTWARE", 20, "US"),
        _account("c.com", "Banking", 5000, "DE"),
        {"domain": "d.com", "name": "D"},
    )  # fmt: skip
    grades = {"a.com": "A1", "b.com": "A2", "c.com": "C3"}
    with write_tx(engine) as conn:
        for domain, grade in grades.items():
            conn.execute(
                update(accounts)
                .where(accounts.c.workspace_id == admin.ws.id, accounts.c.id == ids[domain])
                .values(rtp_grade=grade)
            )
    by_id = {v: k for k, v in ids.items()}
    page = admin.get("/app/accounts?" + query).text
    assert {by_id[a] for a in LINK.findall(page)} == expected
    export = admin.get("/app/accounts/export.csv?" + query).text
    assert {row["domain"] for row in csv.DictReader(io.StringIO(export))} == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("country=Germany", "country should be at most 2 characters"),
        ("country=1x", "country should be a 2-letter ISO code"),
        ("employees_min=lots", "employees_min should be a whole number"),
        ("employees_min=-1", "employees_min should be 0 or more"),
        ("grade=A-1", "grade should be a grade such as B2"),
    ],
)
def test_bad_profile_filters_are_named(admin: Dashboard, query: str, message: str) -> None:
    r = admin.get("/app/accounts?" + query)
    assert r.status_code == 400
    assert message in html.unescape(r.text)


def test_the_rule_builder_offers_the_profile_fields(admin: Dashboard) -> None:
    page = admin.get("/app/segments/new?type=dynamic").text
    for field, label in (
        ("industry", "Industry"),
        ("employeeCount", "Employees"),
        ("annualRevenue", "Annual revenue (USD)"),
        ("country", "Country (ISO code, e.g. DE)"),
        ("rtp_fit_score", "Fit score"),
        ("rtp_grade", "Grade (fit x intent, e.g. A1)"),
    ):
        assert f'<option value="{field}">{label}</option>' in page, field
