"""Filling a static segment from a CSV of domains: POST /segments/{id}/accounts/upload and
`intently segments add` (matched, unknown and invalid rows, with line numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from intently.segments import upload
from tests.support.api import Api, Workspace
from tests.support.cli import intently
from tests.support.segments import (
    HOT,
    UNKNOWN_ID,
    account,
    business,
    create,
    get_segment,
    item_segments,
    member_ids,
    moves,
    patch,
    push,
    unauthorised,
)

INVALID = "domain must be a valid domain name"


def send(api: Api, sid: str, text: str | bytes, ctype: str = "text/csv") -> httpx.Response:
    body = text.encode() if isinstance(text, str) else text
    return api.post(
        f"/segments/{sid}/accounts/upload", content=body, headers={"Content-Type": ctype}
    )


def report(api: Api, sid: str, text: str, ctype: str = "text/csv") -> dict[str, Any]:
    r = send(api, sid, text, ctype)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def static(api: Api, status: str = "active", name: str = "List") -> str:
    return str(create(api, name, type="static", status=status)["segmentId"])


def test_headerless_csv_reads_the_first_column(api: Api) -> None:
    a, b = push(api, account("acme.com"), account("globex.com"))
    sid = static(api)
    got = report(api, sid, "acme.com,Acme Inc\nhttps://www.Globex.com/about,Globex\nnope.com,x\n")
    assert got == {
        "rows": 3,
        "matched": 2,
        "added": 2,
        "alreadyMembers": 0,
        "unknownCount": 1,
        "invalidCount": 0,
        "duplicates": 0,
        "unknown": ["nope.com"],
        "invalid": [],
        "segmentId": sid,
    }
    assert member_ids(api, sid) == [a, b]
    assert moves(api, sid) == [("segment.entered", a), ("segment.entered", b)]
    assert item_segments(api, a) == [{"segmentId": sid, "name": "List"}]


@pytest.mark.parametrize("header", ["domain", "Website", "URL", " Company Domain "])
def test_the_domain_column_is_found_by_its_header(api: Api, header: str) -> None:
    (a,) = push(api, account("acme.com"))
    sid = static(api)
    text = f"name,{header},country\nAcme,acme.com,DE\nGlobex,nope.com,FR\n"
    got = report(api, sid, text)
    assert (got["rows"], got["matched"], got["added"]) == (2, 1, 1)
    assert got["unknown"] == ["nope.com"]
    assert member_ids(api, sid) == [a]


def test_invalid_rows_are_reported_with_their_line(api: Api) -> None:
    (a,) = push(api, account("acme.com"))
    sid = static(api)
    text = "domain,name\nacme.com,A\n\nnot a domain,B\n,C\n10.0.0.1,D\nlocalhost,E\n"
    got = report(api, sid, text)
    assert got["rows"] == 5 and got["matched"] == 1 and got["invalidCount"] == 4
    assert got["invalid"] == [
        {"line": 4, "value": "not a domain", "reason": INVALID},
        {"line": 5, "value": "", "reason": INVALID},
        {"line": 6, "value": "10.0.0.1", "reason": INVALID},
        {"line": 7, "value": "localhost", "reason": INVALID},
    ]
    assert member_ids(api, sid) == [a]


def test_existing_members_and_duplicates(api: Api) -> None:
    a, b = push(api, account("acme.com"), account("globex.com"))
    sid = static(api)
    assert api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [a]}).status_code == 200
    got = report(api, sid, "acme.com\nglobex.com\nwww.globex.com\nGLOBEX.COM\nnope.com\nnope.com\n")
    assert (got["matched"], got["added"], got["alreadyMembers"]) == (2, 1, 1)
    assert got["unknownCount"] == 1 and got["unknown"] == ["nope.com"]
    assert got["rows"] == 6 and got["duplicates"] == 3
    assert got["rows"] == (
        got["matched"] + got["unknownCount"] + got["invalidCount"] + got["duplicates"]
    )
    assert member_ids(api, sid) == [a, b]
    again = report(api, sid, "acme.com\nglobex.com\n")
    assert (again["added"], again["alreadyMembers"]) == (0, 2)


def test_duplicates_count_the_same_across_slices(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report does not depend on where the slices fall."""
    monkeypatch.setattr(upload, "SLICE", 2)
    a, b = push(api, account("acme.com"), account("globex.com"))
    sid = static(api)
    got = report(api, sid, "acme.com\nnope.com\nacme.com\nnope.com\nglobex.com\nacme.com\n")
    assert {k: got[k] for k in ("rows", "matched", "added", "alreadyMembers", "duplicates")} == {
        "rows": 6,
        "matched": 2,
        "added": 2,
        "alreadyMembers": 0,
        "duplicates": 3,
    }
    assert (got["unknownCount"], got["unknown"]) == (1, ["nope.com"])
    assert member_ids(api, sid) == [a, b]


def test_draft_segment_fills_silently(api: Api) -> None:
    (a,) = push(api, account("acme.com"))
    sid = static(api, "draft")
    assert report(api, sid, "acme.com\n")["added"] == 1
    assert moves(api, sid) == []
    assert item_segments(api, a) == []
    patch(api, sid, status="active")
    assert moves(api, sid) == [("segment.entered", a)]


def test_bom_crlf_and_text_plain(api: Api) -> None:
    (a,) = push(api, account("acme.com"))
    sid = static(api)
    got = report(api, sid, "\ufeffDomain\r\nacme.com\r\n", "text/plain; charset=utf-8")
    assert (got["rows"], got["added"]) == (1, 1)
    assert member_ids(api, sid) == [a]


def test_quoted_fields(api: Api) -> None:
    (a,) = push(api, account("acme.com"))
    sid = static(api)
    got = report(api, sid, 'name,domain\n"Acme, Inc.","acme.com"\n"Bad ""x""",bad value\n')
    assert got["matched"] == 1
    assert got["invalid"] == [{"line": 3, "value": "bad value", "reason": INVALID}]
    assert member_ids(api, sid) == [a]


def test_a_row_is_reported_at_its_first_line(api: Api) -> None:
    sid = static(api)
    text = 'name,domain\n"Two\nlines",bad value\n"One",also bad\n'
    got = report(api, sid, text)
    assert got["invalid"] == [
        {"line": 2, "value": "bad value", "reason": INVALID},
        {"line": 4, "value": "also bad", "reason": INVALID},
    ]


def test_refusals(api: Api) -> None:
    push(api, account("acme.com"))
    sid = static(api)
    dyn = create(api, "Dyn", HOT)["segmentId"]
    shelved = static(api, "archived", "Shelved")
    r = send(api, sid, '{"domains": ["acme.com"]}', "application/json")
    assert r.status_code == 415, r.text
    assert "text/csv" in r.json()["customMessage"]
    assert send(api, sid, "acme.com", "").status_code == 415
    business(send(api, sid, ""), 400, "Request body is empty: expected a CSV of domains")
    business(send(api, sid, "  \n\n"), 400, "Request body is empty: expected a CSV of domains")
    business(send(api, sid, "domain\n"), 400, "The CSV holds no domains")
    business(send(api, sid, b"\xff\xfeacme.com"), 400, "Request body is not UTF-8 text")
    business(send(api, dyn, "acme.com\n"), 400, f"Segment '{dyn}' is not a static segment")
    business(
        send(api, shelved, "acme.com\n"),
        400,
        f"Segment '{shelved}' is not active or draft and cannot accept new members",
    )
    business(send(api, UNKNOWN_ID, "acme.com\n"), 404, f"Segment '{UNKNOWN_ID}' not found")
    business(send(api, "nope", "acme.com\n"), 400, "Invalid segmentId format")
    unauthorised(send(api.with_key(None), sid, "acme.com\n"))
    assert get_segment(api, sid)["memberCount"] == 0
    assert get_segment(api, shelved)["memberCount"] == 0


def test_body_limit(api: Api) -> None:
    sid = static(api)
    r = send(api, sid, "a.com\n" * 200_000)  # 1.2 MB: over the default 1 MiB
    assert r.status_code == 413, r.text


def test_another_workspace_cannot_upload(workspace: Workspace, other: Workspace) -> None:
    push(workspace.api, account("acme.com"))
    push(other.api, account("acme.com"))
    sid = static(workspace.api)
    business(send(other.api, sid, "acme.com\n"), 404, f"Segment '{sid}' not found")
    assert get_segment(workspace.api, sid)["memberCount"] == 0
    # and accounts of another workspace are unknown here
    theirs = static(other.api)
    (mine,) = push(workspace.api, account("only-mine.com"))
    got = report(other.api, theirs, "only-mine.com\nacme.com\n")
    assert (got["matched"], got["unknown"]) == (1, ["only-mine.com"])
    assert mine not in member_ids(other.api, theirs)


# ---- the CLI -----------------------------------------------------------------------------------


def test_cli_add_by_name_and_id(workspace: Workspace, database_url: str, tmp_path: Path) -> None:
    api = workspace.api
    a, b = push(api, account("acme.com"), account("globex.com"))
    sid = static(api, name="Key accounts")
    path = tmp_path / "list.csv"
    path.write_text("Website,Name\nacme.com,A\n[/bad] value,B\nnope.com,C\n", encoding="utf-8")
    done = intently(
        database_url, "segments", "add", "Key accounts", str(path), "-w", workspace.name
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "3 rows: 1 matched (1 added, 0 already members), 1 unknown, 1 invalid, 0 duplicates",
        f"  line 3: invalid '[/bad] value': {INVALID}",
        "  unknown: nope.com",
    ]
    assert member_ids(api, sid) == [a]
    path.write_text("globex.com\nacme.com\nwww.acme.com\n", encoding="utf-8")
    done = intently(database_url, "segments", "add", sid, str(path), "-w", workspace.name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "3 rows: 2 matched (1 added, 1 already members), 0 unknown, 0 invalid, 1 duplicates"
    )
    assert member_ids(api, sid) == [a, b]


def test_cli_add_refusals(workspace: Workspace, database_url: str, tmp_path: Path) -> None:
    api = workspace.api
    push(api, account("acme.com"))
    twin = static(api, name="Twin")
    path = tmp_path / "list.csv"
    path.write_text("acme.com\n", encoding="utf-8")
    ws = ("-w", workspace.name)

    def error(*args: str) -> str:
        done = intently(database_url, "segments", "add", *args, *ws)
        assert done.returncode == 2, (done.stdout, done.stderr)
        return " ".join(done.stderr.split())

    assert "segment '[/Nope]' not found (give its id or its exact name)" in error(
        "[/Nope]", str(path)
    )
    binary = tmp_path / "latin1.csv"
    binary.write_bytes(b"caf\xe9.com\n")
    assert f"{binary} is not UTF-8 text" in error(twin, str(binary))


def test_an_upload_slice_costs_a_few_queries_whatever_its_size(api: Api, engine: Any) -> None:
    push(api, *[account(f"d{i}.com") for i in range(100)])
    push(api, *[account(f"e{i}.com") for i in range(100)])
    sid = static(api)
    text = "".join(f"d{i}.com\ne{i}.com\n" for i in range(100))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        got = report(api, sid, text)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert got["added"] == 200
    assert len(statements) < 40, len(statements)
