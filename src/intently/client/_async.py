"""`AsyncClient`: the same API as `Client` for asyncio programs (httpx.AsyncClient)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from intently.client._client import (
    ACCOUNTS_BATCH,
    ACTIVITIES_BATCH,
    DEALS_BATCH,
    MAPPINGS_BATCH,
    PAGE_LIMIT,
    SIGNALS_BATCH,
    BulkResult,
    Page,
    SyncState,
    _Base,
    _batches,
    _item_outcomes,
    _mapping_outcomes,
    _members,
    _page,
    accounts_params,
    events_params,
)
from intently.client._errors import (
    IntentlyError,
)


class AsyncClient(_Base):
    """As `Client`, awaited; bulk helpers keep `concurrency` batches in flight."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ):
        super().__init__(base_url, api_key, **options)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """The envelope's `data` of a successful answer; else the error, raised."""
        headers = self._headers(method)
        attempt, busy_s = 0, 0.0
        while True:
            try:
                response = await self._http.request(
                    method, path.lstrip("/"), params=params, json=json, headers=headers
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(self._after_failure(exc, attempt, path))
                attempt += 1
                continue
            data, wait, busy = self._judge(response, attempt, path, busy_s)
            if wait < 0:
                return data
            await asyncio.sleep(wait)
            if busy:
                busy_s += wait
            else:
                attempt += 1

    async def list_accounts(
        self,
        *,
        limit: int = PAGE_LIMIT,
        cursor: str | None = None,
        last_sync: str | None = None,
        domains: Sequence[str] | None = None,
    ) -> Page:
        params = accounts_params(limit, cursor, last_sync, domains)
        return _page(await self.request("GET", "accounts", params=params))

    async def iter_accounts(
        self, last_sync: str | None = None, domains: Sequence[str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = await self.list_accounts(cursor=cursor, last_sync=last_sync, domains=domains)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def sync_accounts(self, state: SyncState) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.list_accounts(cursor=cursor, last_sync=state.sync_timestamp)
            items.extend(page.items)
            if page.next_cursor is None:
                return items, page.sync_timestamp
            cursor = page.next_cursor

    async def get_account(self, rtp_aid: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"accounts/{rtp_aid}"))

    async def push_accounts(
        self,
        accounts: Iterable[Mapping[str, Any]],
        *,
        upsert: bool = False,
        segment_id: str | None = None,
    ) -> list[BulkResult]:
        extra: dict[str, Any] = {"upsert": upsert}
        if segment_id:
            extra["segmentId"] = segment_id
        return await self._bulk("accounts", "accounts", accounts, ACCOUNTS_BATCH, extra)

    async def map_external_ids(self, mappings: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        return await self._bulk(
            "accounts/external-ids", "mappings", mappings, MAPPINGS_BATCH, {},
            method="PATCH", outcomes=_mapping_outcomes,
        )  # fmt: skip

    async def push_deals(self, deals: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        return await self._bulk("deals", "deals", deals, DEALS_BATCH, {})

    async def push_activities(self, activities: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        return await self._bulk("sales-activities", "activities", activities, ACTIVITIES_BATCH, {})

    async def list_custom_fields(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "accounts/custom-fields"))

    async def update_custom_fields(self, ident: str, values: Mapping[str, Any]) -> dict[str, Any]:
        body = {"customFields": dict(values)}
        return dict(await self.request("PUT", f"accounts/{ident}", json=body))

    async def missing_external_ids(self, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        params = {"limit": limit}
        return list(await self.request("GET", "accounts/missing-external-ids", params=params))

    async def create_custom_field(
        self, label: str, label_type: str, **extra: Any
    ) -> dict[str, Any]:
        body = {"label": label, "labelType": label_type, **extra}
        data = await self.request("POST", "accounts/custom-field", json=body)
        return dict(data[0] if isinstance(data, list) else data)

    async def delete_custom_field(self, key: str) -> Any:
        return await self.request("DELETE", f"accounts/custom-fields/{quote(key, safe='')}")

    async def list_segments(self) -> list[dict[str, Any]]:
        data = await self.request("GET", "segments")
        return list(data["data"] if isinstance(data, dict) else data)

    async def account_score(self, rtp_aid: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"accounts/{rtp_aid}/score"))

    async def account_history(self, rtp_aid: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"accounts/{rtp_aid}/history"))

    async def push_signals(self, signals: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        return await self._bulk("signals", "signals", signals, SIGNALS_BATCH, {})

    async def create_segment(
        self,
        name: str,
        type: str = "static",
        *,
        status: str = "active",
        rules: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "type": type, "status": status}
        if rules is not None:
            body["rules"] = dict(rules)
        return dict(await self.request("POST", "segments", json=body))

    async def get_segment(self, segment_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"segments/{segment_id}"))

    async def update_segment(self, segment_id: str, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("PATCH", f"segments/{segment_id}", json=fields))

    async def add_segment_members(
        self, segment_id: str, *, domains: Sequence[str] = (), rtp_aids: Sequence[str] = ()
    ) -> dict[str, Any]:
        body = _members(domains, rtp_aids)
        return dict(await self.request("POST", f"segments/{segment_id}/accounts", json=body))

    async def remove_segment_members(
        self, segment_id: str, *, domains: Sequence[str] = (), rtp_aids: Sequence[str] = ()
    ) -> dict[str, Any]:
        body = _members(domains, rtp_aids)
        return dict(await self.request("DELETE", f"segments/{segment_id}/accounts", json=body))

    async def iter_account_signals(
        self, rtp_aid: str, source: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        params = {"source": source} if source else {}
        async for item in self.iter_pages(f"accounts/{rtp_aid}/signals", params):
            yield item

    async def iter_segment_members(self, segment_id: str) -> AsyncIterator[dict[str, Any]]:
        async for item in self.iter_pages(f"segments/{segment_id}/accounts"):
            yield item

    async def iter_events(
        self,
        *,
        types: Sequence[str] = (),
        since: str | None = None,
        rtp_aid: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        async for item in self.iter_pages("events", events_params(types, since, rtp_aid)):
            yield item

    async def iter_pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a keyset-paginated list (segment members, an account's signals,
        events): the first page with `params`, the next ones by their cursor."""
        query: dict[str, Any] = {"limit": PAGE_LIMIT, **(params or {})}
        while True:
            page = _page(await self.request("GET", path, params=query))
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            query = {"limit": PAGE_LIMIT, "cursor": page.next_cursor}

    async def _bulk(
        self,
        path: str,
        key: str,
        records: Iterable[Mapping[str, Any]],
        size: int,
        extra: dict[str, Any],
        *,
        method: str = "POST",
        outcomes: Any = None,
    ) -> list[BulkResult]:
        judge = outcomes or _item_outcomes
        gate = asyncio.Semaphore(self.concurrency)

        async def send(batch: list[dict[str, Any]]) -> list[tuple[str, Any, Any, Any]]:
            async with gate:
                try:
                    data = await self.request(method, path, json={key: batch, **extra})
                except IntentlyError as exc:
                    return [("error", None, None, exc)] * len(batch)
            return [(status, item, reason, None) for status, item, reason in judge(batch, data)]

        answered = await asyncio.gather(*(send(b) for b in _batches(records, size)))
        out: list[BulkResult] = []
        for outcomes_of_batch in answered:
            for status, item, reason, error in outcomes_of_batch:
                out.append(BulkResult(len(out), status, item, reason, error))
        return out
