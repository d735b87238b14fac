"""Memory of a page of GET /accounts, measured with tracemalloc (deterministic, unlike
time): the page's items are not copied over and over on their way to the response body,
and a page's size is bounded by bytes whatever `limit` says."""

from __future__ import annotations

import tracemalloc
from typing import Any

from intently.accounts import repository, service
from intently.kit.db import read_tx
from intently.kit.envelope import envelope_response
from intently.kit.pagination import PAGE_BYTES
from tests.api.test_large_pages import NOTE, seed_large_accounts
from tests.support.api import Workspace

# The items as the database renders them, then the response body: two copies, with room
# for the encoder's buffer growing.
MOST_COPIES = 2.5


def peak_of_page(app: Any, workspace: Workspace) -> tuple[int, int]:
    """(peak bytes traced while making the first page with limit=1000, its body's bytes)."""
    st = app.state.intently
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = service.list_accounts(
            st.engine, st.codec, workspace.id, limit=1000, cursor=None, last_sync_us=None,
            domains=None,
        )  # fmt: skip
        body = envelope_response("/api/v1/accounts", result).body
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, len(body)


def test_a_page_of_large_accounts_holds_few_copies_of_its_items(
    app: Any, workspace: Workspace
) -> None:
    seed_large_accounts(workspace.api)
    peak, size = peak_of_page(app, workspace)
    assert size <= PAGE_BYTES + 2 * NOTE
    assert peak <= MOST_COPIES * size, f"peak {peak:,} B for a body of {size:,} B"


def test_a_page_stopped_by_its_budget_leaves_the_transaction_usable(
    engine: Any, workspace: Workspace
) -> None:
    # The rows past the budget are left unread; on PostgreSQL a cancelled query would
    # abort the transaction the page was read in.
    seed_large_accounts(workspace.api, n=200, note=10)
    with read_tx(engine) as conn:
        rows, more = repository.page(conn, workspace.id, after="", limit=1000, keys=[], budget=1)
        assert len(rows) == 1 and more
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        rows, more = repository.page(conn, workspace.id, after="", limit=1000, keys=[])
        assert len(rows) == 200 and not more
