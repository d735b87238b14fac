"""The journey page: accounts per stage now (the funnel) and moves between stages over the
last 7 and 30 days, read from the accounts' stages and the recorded stage changes."""

from __future__ import annotations

import copy
import re
from typing import Any

from intently.kit.db import write_tx
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.signals.store import SignalIn, store
from intently.stages.schemas import DEFAULT_STAGES
from intently.stages.service import apply_stages
from tests.support.api import Api
from tests.support.dashboard import Dashboard

_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
_CELLS = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_TAGS = re.compile(r"<[^>]+>")


def push(api: Api, *domains: str) -> list[str]:
    items = [{"domain": d, "name": d} for d in domains]
    r = api.post("/accounts", json={"accounts": items})
    assert r.status_code == 200, r.text
    return [x["rtp_aid"] for x in r.json()["data"]["results"]]


def signal(engine: Any, ws: int, domain: str, source: str, type_: str) -> None:
    with write_tx(engine) as conn:
        at = now_us() - US_PER_DAY
        store(conn, ws, [SignalIn(domain, source, type_, at, f"{domain}-{type_}")])


def place(engine: Any, ws: int, aids: list[str]) -> None:
    with write_tx(engine) as conn:
        apply_stages(conn, ws, aids, cause="test")


def table(html: str, marker: str) -> dict[str, list[str]]:
    """The rows of the table after `marker`: first cell's text -> the other cells' text."""
    start = html.index(marker)
    end = html.index("</table>", start)
    out: dict[str, list[str]] = {}
    for row in _ROW.findall(html[start:end]):
        cells = [" ".join(_TAGS.sub(" ", c).split()) for c in _CELLS.findall(row)]
        if cells:
            out[cells[0]] = cells[1:]
    return out


def funnel(html: str) -> dict[str, tuple[int, str]]:
    """Stage -> (count, percent) as the funnel shows them."""
    rows = table(html, 'class="funnel"')
    return {k: (int(v[1].replace(",", "")), v[2]) for k, v in rows.items()}


def test_an_empty_workspace_shows_an_empty_state(admin: Dashboard) -> None:
    r = admin.get("/app/journey")
    assert r.status_code == 200
    assert "No accounts yet" in r.text
    assert "Unaware" in r.text  # the stage list is named even with no accounts
    assert 'aria-current="page">Journey' in r.text.replace('href="/app/journey" ', "")


def test_the_funnel_counts_accounts_per_stage_in_the_stage_list_order(
    admin: Dashboard, engine: Any
) -> None:
    ws = admin.ws
    aids = push(ws.api, "a.io", "b.io", "c.io", "d.io")
    signal(engine, ws.id, "a.io", "g2", "pricing")  # Decision
    signal(engine, ws.id, "b.io", "website", "page_view")  # Aware
    place(engine, ws.id, aids[:3])  # d.io never placed
    r = admin.get("/app/journey")
    assert r.status_code == 200, r.text
    rows = funnel(r.text)
    names = list(rows)
    assert names[:7] == [
        "Customer", "Opportunity", "Decision", "Consideration", "Engaged", "Aware", "Unaware",
    ]  # fmt: skip
    assert rows["Decision"] == (1, "25.0")
    assert rows["Aware"] == (1, "25.0")
    assert rows["Unaware"] == (1, "25.0")
    assert rows["Customer"] == (0, "0.0")
    assert rows["Not placed yet"] == (1, "25.0")
    assert "1 accounts have not been through a scoring run yet" in r.text


def test_movement_counts_entries_and_exits_per_stage(admin: Dashboard, engine: Any) -> None:
    ws = admin.ws
    [aid, other] = push(ws.api, "mover.io", "stays.io")
    place(engine, ws.id, [aid, other])  # both: (new) -> Unaware
    signal(engine, ws.id, "mover.io", "g2", "comparison")
    place(engine, ws.id, [aid])  # Unaware -> Decision
    r = admin.get("/app/journey")
    assert r.status_code == 200
    moves = table(r.text, "Movement")
    # entered, left, net for 7 days, then for 30 days
    assert moves["Unaware"] == ["2", "1", "+1", "2", "1", "+1"]
    assert moves["Decision"] == ["1", "0", "+1", "1", "0", "+1"]
    assert moves["Aware"] == ["0", "0", "0", "0", "0", "0"]
    flows = table(r.text, "Most common moves")
    assert flows["new account"] == ["Unaware", "2"]
    assert flows["Unaware"] == ["Decision", "1"]
    assert 'data-chart="journey-moves"' in r.text and 'id="journey-moves"' in r.text


def test_old_changes_fall_out_of_the_windows(
    admin: Dashboard, engine: Any, is_postgres: bool
) -> None:
    ws = admin.ws
    [aid] = push(ws.api, "old.io")
    place(engine, ws.id, [aid])
    with write_tx(engine) as conn:
        # Ten days ago: out of the 7-day window, in the 30-day one.
        conn.exec_driver_sql(
            "UPDATE stage_changes SET changed_at = changed_at - ? WHERE workspace_id = ?".replace(
                "?", "%s" if is_postgres else "?"
            ),
            (10 * US_PER_DAY, ws.id),
        )
    r = admin.get("/app/journey?days=7")
    assert r.status_code == 200
    moves = table(r.text, "Movement")
    assert moves["Unaware"] == ["0", "0", "0", "1", "0", "+1"]
    assert "No stage changes in the last 7 days" in r.text
    r30 = admin.get("/app/journey?days=30")
    assert "Most common moves, last 30 days" in r30.text
    with write_tx(engine) as conn:
        conn.exec_driver_sql(
            "UPDATE stage_changes SET changed_at = changed_at - ? WHERE workspace_id = ?".replace(
                "?", "%s" if is_postgres else "?"
            ),
            (30 * US_PER_DAY, ws.id),
        )
    r = admin.get("/app/journey")
    assert "No stage changes in the last 30 days" in r.text
    assert funnel(r.text)["Unaware"] == (1, "100.0")


def test_stages_of_an_older_stage_list_still_show(admin: Dashboard, engine: Any) -> None:
    ws = admin.ws
    [aid] = push(ws.api, "renamed.io")
    place(engine, ws.id, [aid])
    doc = copy.deepcopy(DEFAULT_STAGES)
    doc["stages"][-1]["name"] = "Cold <script>alert(1)</script>"
    assert ws.api.put("/stages", json=doc).status_code == 200
    r = admin.get("/app/journey")
    assert r.status_code == 200
    rows = funnel(r.text)
    assert rows["Unaware (older list)"] == (1, "100.0")
    assert "Cold &lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "<script>alert(1)</script>" not in r.text
    assert "version 1" in r.text


def test_a_bad_period_is_named(admin: Dashboard) -> None:
    r = admin.get("/app/journey?days=14")
    assert r.status_code == 400
    assert "days must be 7 or 30, got &#39;14&#39;" in r.text


def test_members_see_the_journey_and_anonymous_users_sign_in(
    admin: Dashboard, member: Dashboard, client: Any
) -> None:
    push(admin.ws.api, "seen.io")
    r = member.get("/app/journey")
    assert r.status_code == 200 and "Not placed yet" in r.text
    anon = client.get("/app/journey?days=7", follow_redirects=False)
    assert anon.status_code == 303
    assert anon.headers["location"] == "/app/login?next=/app/journey%3Fdays%3D7"


def test_a_workspace_sees_only_its_own_accounts(
    admin: Dashboard, make_dashboard: Any, engine: Any
) -> None:
    other = make_dashboard("admin")
    aids = push(other.ws.api, "theirs-1.io", "theirs-2.io")
    place(engine, other.ws.id, aids)
    r = admin.get("/app/journey")
    assert "No accounts yet" in r.text
    assert funnel(other.get("/app/journey").text)["Unaware"] == (2, "100.0")
