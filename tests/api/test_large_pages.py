"""Pages of accounts with large custom fields stop at a byte budget (kit.pagination
PAGE_BYTES): a page of 1,000 accounts of up to 2 MB each would not fit in memory, and the
client still reaches every account by following nextCursor (spec section 5: `limit` is
the most a page holds)."""

from __future__ import annotations

from typing import Any

from intently.kit.pagination import PAGE_BYTES
from tests.support.api import Api

ACCOUNTS = 1000
NOTE = 9000  # characters of custom field per account: 1,000 of them pass PAGE_BYTES


def seed_large_accounts(api: Api, n: int = ACCOUNTS, note: int = NOTE) -> list[str]:
    """`n` accounts with a `note`-character custom field each; their domains."""
    r = api.post("/accounts/custom-field", json={"label": "Notes", "labelType": "multiLineText"})
    assert r.status_code == 201, r.text
    domains = [f"big{i:04d}.com" for i in range(n)]
    for start in range(0, n, 100):
        batch = [
            {"domain": d, "name": d, "customFields": {"NOTES_C": d[0] * note}}
            for d in domains[start : start + 100]
        ]
        r = api.post("/accounts", json={"accounts": batch})
        assert r.status_code == 200, r.text
        assert all(x["status"] == "created" for x in r.json()["data"]["results"])
    return domains


def walk(api: Api, path: str, limit: int) -> list[tuple[int, int, bool]]:
    """(items, body bytes, hasNextPage) of every page; asserts the pages join up."""
    pages: list[tuple[int, int, bool]] = []
    params: dict[str, Any] = {"limit": limit}
    seen: list[str] = []
    while True:
        r = api.get(path, params=params)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        seen += [item["rtp_aid"] for item in page["data"]]
        pages.append((len(page["data"]), len(r.content), page["hasNextPage"]))
        assert (page["nextCursor"] is None) == (not page["hasNextPage"])
        if not page["hasNextPage"]:
            break
        params = {"limit": limit, "cursor": page["nextCursor"]}
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    return pages


def test_a_page_of_large_accounts_stops_at_the_byte_budget(api: Api) -> None:
    seed_large_accounts(api)
    pages = walk(api, "/accounts", 1000)
    assert sum(n for n, _, _ in pages) == ACCOUNTS  # every account, once
    assert len(pages) >= 2 and pages[0][0] < ACCOUNTS and pages[0][2]
    for _, size, _ in pages:
        assert size <= PAGE_BYTES + 2 * NOTE  # the budget and at most one account past it


def test_segment_members_pages_stop_at_the_byte_budget(api: Api) -> None:
    domains = seed_large_accounts(api)
    sid = api.post("/segments", json={"name": "All", "type": "static"}).json()["data"]["segmentId"]
    for start in range(0, len(domains), 1000):
        r = api.post(f"/segments/{sid}/accounts", json={"domains": domains[start : start + 1000]})
        assert r.status_code == 200, r.text
    pages = walk(api, f"/segments/{sid}/accounts", 1000)
    assert sum(n for n, _, _ in pages) == ACCOUNTS and len(pages) >= 2
    assert all(size <= PAGE_BYTES + 2 * NOTE for _, size, _ in pages)


def test_small_accounts_still_fill_a_page(api: Api) -> None:
    seed_large_accounts(api, n=300, note=10)
    assert [n for n, _, _ in walk(api, "/accounts", 1000)] == [300]
    assert [n for n, _, _ in walk(api, "/accounts", 100)] == [100, 100, 100]
