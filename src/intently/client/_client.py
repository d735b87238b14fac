"""`Client`: the External API over httpx, envelopes unwrapped, keyset pages walked lazily,
bulk writes split into the documented batch sizes, and safe requests retried."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from intently.client._errors import (
    ConnectionFailed,
    IntentlyError,
    RateLimited,
    ServerError,
    error_for,
)

# Items per request, as the API documents them (spec section 6).
ACCOUNTS_BATCH = 100
DEALS_BATCH = 100
ACTIVITIES_BATCH = 50
MAPPINGS_BATCH = 100
PAGE_LIMIT = 1000
SIGNALS_BATCH = 1000
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    sync_timestamp: str


@dataclass(frozen=True)
class BulkResult:
    """One input record's outcome, at its position in the input.

    `status` is the server's (created, updated, skipped, failed) or "error" when its whole
    batch was refused (then `error` holds the exception)."""

    index: int
    status: str
    data: dict[str, Any] | None = None
    reason: str | None = None
    error: IntentlyError | None = None

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "error")


@dataclass
class SyncState:
    """What a delta sync keeps between runs: the last walk's syncTimestamp."""

    sync_timestamp: str | None = None


class _Base:
    """What both clients share: their settings, the headers of a request, and the retry
    policy (which answers are retried, and after how long)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        concurrency: int = 1,
        busy_timeout_s: float = 600.0,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency should be 1 or more; got {concurrency}")
        self.concurrency = concurrency
        self.max_retries = max_retries
        # How long a write is waited for while an earlier try of it still runs on the
        # server (409 with Retry-After): such answers do not use up max_retries.
        self.busy_timeout_s = busy_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http_options: dict[str, Any] = {
            "base_url": base_url.rstrip("/") + "/",
            "headers": {"X-Api-Key": api_key, "Accept": "application/json"},
            "timeout": timeout,
        }

    @staticmethod
    def _headers(method: str) -> dict[str, str]:
        # One key for every try of one write, so the server can tell a retry.
        return {"Idempotency-Key": uuid.uuid4().hex} if method in _WRITES else {}

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return delay * random.uniform(0.5, 1.0)  # jitter: clients do not move in step

    def _after_failure(self, exc: httpx.TransportError, attempt: int, path: str) -> float:
        """The wait before trying again after no answer came, or ConnectionFailed."""
        if attempt >= self.max_retries:
            raise ConnectionFailed(0, type(exc).__name__, str(exc), path) from exc
        return self._delay(attempt, None)

    def _judge(
        self, response: httpx.Response, attempt: int, path: str, busy_s: float
    ) -> tuple[Any, float, bool]:
        """(data, -1, _) for a success; (None, wait, busy) to try again, busy when an
        earlier try still runs; else the error, raised. `busy_s`: waited on busy so far."""
        if response.status_code < 400:
            return response.json().get("data"), -1.0, False
        retry_after = _retry_after(response)
        error = error_for(response.status_code, _json(response), path, retry_after)
        # A 409 with Retry-After: an earlier try of this write still runs on the server
        # (its Idempotency-Key is taken); a later try gets its answer. It may run for
        # minutes (a scoring run), so it is waited out by time, not by tries.
        if response.status_code == 409 and retry_after is not None:
            if busy_s < self.busy_timeout_s:
                return None, min(max(retry_after, 0.05), self.max_backoff_s), True
            raise error
        if isinstance(error, RateLimited | ServerError) and attempt < self.max_retries:
            return None, self._delay(attempt, retry_after), False
        raise error


class Client(_Base):
    """A workspace's External API. `base_url` is the API root (".../api/v1", or
    ".../api/v1/crm" for the externalId flavour); `api_key` its key.

    Retries connection failures, 429 (after Retry-After) and 5xx with exponential
    backoff and jitter, for GETs and for writes, which carry an Idempotency-Key set here
    (the same key on every try of one request, so a write runs once; a 409 saying an
    earlier try still runs is waited out, up to `busy_timeout_s`). Bulk helpers send
    `concurrency` batches at once."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ):
        super().__init__(base_url, api_key, **options)
        self._http = httpx.Client(transport=transport, **self._http_options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests --------------------------------------------------------------------

    def request(
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
                response = self._http.request(
                    method, path.lstrip("/"), params=params, json=json, headers=headers
                )
            except httpx.TransportError as exc:
                time.sleep(self._after_failure(exc, attempt, path))
                attempt += 1
                continue
            data, wait, busy = self._judge(response, attempt, path, busy_s)
            if wait < 0:
                return data
            time.sleep(wait)
            if busy:
                busy_s += wait
            else:
                attempt += 1

    # ---- accounts --------------------------------------------------------------------

    def list_accounts(
        self,
        *,
        limit: int = PAGE_LIMIT,
        cursor: str | None = None,
        last_sync: str | None = None,
        domains: Sequence[str] | None = None,
    ) -> Page:
        """E1: one keyset page."""
        params = accounts_params(limit, cursor, last_sync, domains)
        return _page(self.request("GET", "accounts", params=params))

    def iter_accounts(
        self, last_sync: str | None = None, domains: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every account (changed since `last_sync`), page by page as they are consumed."""
        yield from self._walk(
            lambda cursor: self.list_accounts(cursor=cursor, last_sync=last_sync, domains=domains)
        )

    def sync_accounts(self, state: SyncState) -> tuple[list[dict[str, Any]], str]:
        """A delta sync: the accounts changed since the state's timestamp (all on the
        first run), and the syncTimestamp to store once they are safely handled."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        stamp = ""
        while True:
            page = self.list_accounts(cursor=cursor, last_sync=state.sync_timestamp)
            items.extend(page.items)
            stamp = page.sync_timestamp
            if page.next_cursor is None:
                return items, stamp
            cursor = page.next_cursor

    def get_account(self, rtp_aid: str) -> dict[str, Any]:
        return dict(self.request("GET", f"accounts/{rtp_aid}"))

    def push_accounts(
        self,
        accounts: Iterable[Mapping[str, Any]],
        *,
        upsert: bool = False,
        segment_id: str | None = None,
    ) -> list[BulkResult]:
        """E2 for any number of accounts, 100 a request; one result per input, in order."""
        extra: dict[str, Any] = {"upsert": upsert}
        if segment_id:
            extra["segmentId"] = segment_id
        return self._bulk("accounts", "accounts", accounts, ACCOUNTS_BATCH, extra)

    def update_custom_fields(self, ident: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """E3: set custom field values of one account (rtp_aid; externalId under /crm)."""
        return dict(self.request("PUT", f"accounts/{ident}", json={"customFields": dict(values)}))

    def missing_external_ids(self, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        """E4."""
        return list(self.request("GET", "accounts/missing-external-ids", params={"limit": limit}))

    def map_external_ids(self, mappings: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        """E5 for any number of {domain, externalId} mappings, 100 a request."""
        return self._bulk(
            "accounts/external-ids",
            "mappings",
            mappings,
            MAPPINGS_BATCH,
            {},
            method="PATCH",
            outcomes=_mapping_outcomes,
        )

    # ---- deals, activities, custom fields, segments ----------------------------------

    def push_deals(self, deals: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        """E6 for any number of deals, 100 a request."""
        return self._bulk("deals", "deals", deals, DEALS_BATCH, {})

    def push_activities(self, activities: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        """E7 for any number of sales activities, 50 a request."""
        return self._bulk("sales-activities", "activities", activities, ACTIVITIES_BATCH, {})

    def create_custom_field(self, label: str, label_type: str, **extra: Any) -> dict[str, Any]:
        """E8: the field made (the API answers a one-element array)."""
        body = {"label": label, "labelType": label_type, **extra}
        data = self.request("POST", "accounts/custom-field", json=body)
        return dict(data[0] if isinstance(data, list) else data)

    def list_custom_fields(self) -> list[dict[str, Any]]:
        """E9."""
        return list(self.request("GET", "accounts/custom-fields"))

    def list_segments(self) -> list[dict[str, Any]]:
        """E10."""
        data = self.request("GET", "segments")
        return list(data["data"] if isinstance(data, dict) else data)

    def delete_custom_field(self, key: str) -> Any:
        """Deactivate a custom field (its values are kept, hidden)."""
        return self.request("DELETE", f"accounts/custom-fields/{quote(key, safe='')}")

    # ---- extensions: one account ---------------------------------------------------------

    def account_score(self, rtp_aid: str) -> dict[str, Any]:
        """How the account's score comes about, source by source and type by type."""
        return dict(self.request("GET", f"accounts/{rtp_aid}/score"))

    def account_history(self, rtp_aid: str) -> dict[str, Any]:
        """Score and stage per day, and every stage change."""
        return dict(self.request("GET", f"accounts/{rtp_aid}/history"))

    def iter_account_signals(
        self, rtp_aid: str, source: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The account's signals, newest first, page by page."""
        params = {"source": source} if source else {}
        yield from self.iter_pages(f"accounts/{rtp_aid}/signals", params)

    def push_signals(self, signals: Iterable[Mapping[str, Any]]) -> list[BulkResult]:
        """Generic intent signals, any number, 1,000 a request."""
        return self._bulk("signals", "signals", signals, SIGNALS_BATCH, {})

    # ---- extensions: segments and events -------------------------------------------------

    def create_segment(
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
        return dict(self.request("POST", "segments", json=body))

    def get_segment(self, segment_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"segments/{segment_id}"))

    def update_segment(self, segment_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH name, status and/or rules."""
        return dict(self.request("PATCH", f"segments/{segment_id}", json=fields))

    def iter_segment_members(self, segment_id: str) -> Iterator[dict[str, Any]]:
        yield from self.iter_pages(f"segments/{segment_id}/accounts")

    def add_segment_members(
        self,
        segment_id: str,
        *,
        domains: Sequence[str] = (),
        rtp_aids: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Into a static segment, by domain and/or rtp_aid (up to 1,000 each)."""
        return self._members("POST", segment_id, domains, rtp_aids)

    def remove_segment_members(
        self,
        segment_id: str,
        *,
        domains: Sequence[str] = (),
        rtp_aids: Sequence[str] = (),
    ) -> dict[str, Any]:
        return self._members("DELETE", segment_id, domains, rtp_aids)

    def _members(
        self, method: str, segment_id: str, domains: Sequence[str], rtp_aids: Sequence[str]
    ) -> dict[str, Any]:
        body = _members(domains, rtp_aids)
        return dict(self.request(method, f"segments/{segment_id}/accounts", json=body))

    def iter_events(
        self,
        *,
        types: Sequence[str] = (),
        since: str | None = None,
        rtp_aid: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The change event log (account.created, stage.changed, segment.entered, ...)."""
        yield from self.iter_pages("events", events_params(types, since, rtp_aid))

    def iter_pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a keyset-paginated list (segment members, an account's signals,
        events): the first page with `params`, the next ones by their cursor."""

        first: dict[str, Any] = {"limit": PAGE_LIMIT, **(params or {})}

        def fetch(cursor: str | None) -> Page:
            # A cursor carries the first page's filters: the next pages send it alone.
            query = {"limit": PAGE_LIMIT, "cursor": cursor} if cursor else first
            return _page(self.request("GET", path, params=query))

        yield from self._walk(fetch)

    # ---- helpers ---------------------------------------------------------------------

    def _walk(self, fetch: Any) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page: Page = fetch(cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _bulk(
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

        def send(batch: list[dict[str, Any]]) -> list[tuple[str, Any, Any, Any]]:
            try:
                data = self.request(method, path, json={key: batch, **extra})
            except IntentlyError as exc:
                # The whole batch was refused (its shape, a segment, the key): every
                # record of it gets the error, and the rest of the input still goes.
                return [("error", None, None, exc)] * len(batch)
            return [(status, item, reason, None) for status, item, reason in judge(batch, data)]

        batches = _batches(records, size)
        if self.concurrency > 1:
            # Requests in flight at once (the server takes them in parallel where it
            # can); map() keeps the batches' order.
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="intently") as pool:
                answered = list(pool.map(send, batches))
        else:
            answered = [send(b) for b in batches]
        out: list[BulkResult] = []
        for outcomes_of_batch in answered:
            for status, item, reason, error in outcomes_of_batch:
                out.append(BulkResult(len(out), status, item, reason, error))
        return out


def _batches(records: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(dict(record))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


Outcome = tuple[str, dict[str, Any] | None, str | None]


def _item_outcomes(batch: list[dict[str, Any]], data: Any) -> list[Outcome]:
    """The server's per-item results (E2, E6, E7), matched to the batch by index."""
    results = data.get("results", []) if isinstance(data, dict) else []
    by_index = {int(r.get("index", i)): r for i, r in enumerate(results)}
    out: list[Outcome] = []
    for i in range(len(batch)):
        r = by_index.get(i)
        if r is None:
            out.append(("error", None, "no result returned for this item"))
        else:
            out.append((str(r.get("status")), dict(r), r.get("reason")))
    return out


def _mapping_outcomes(batch: list[dict[str, Any]], data: Any) -> list[Outcome]:
    """E5 answers with counts and the domains not found (as sent): a mapping is
    "matched" or, when its domain is among those, "failed"."""
    missing = set(data.get("notFound") or []) if isinstance(data, dict) else set()
    return [
        ("failed", None, f"No account with domain '{m.get('domain')}'")
        if m.get("domain") in missing
        else ("matched", dict(m), None)
        for m in batch
    ]


def _members(domains: Sequence[str], rtp_aids: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if domains:
        body["domains"] = list(domains)
    if rtp_aids:
        body["rtp_aids"] = list(rtp_aids)
    return body


def accounts_params(
    limit: int, cursor: str | None, last_sync: str | None, domains: Sequence[str] | None
) -> dict[str, Any]:
    """E1's query parameters."""
    params: dict[str, Any] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    if last_sync:
        params["lastSync"] = last_sync
    if domains:
        params["domains"] = ",".join(domains)
    return params


def events_params(types: Sequence[str], since: str | None, rtp_aid: str | None) -> dict[str, Any]:
    """The event log's filters, as query parameters."""
    params: dict[str, Any] = {}
    if types:
        params["type"] = ",".join(types)
    if since:
        params["since"] = since
    if rtp_aid:
        params["rtp_aid"] = rtp_aid
    return params


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _page(data: Any) -> Page:
    return Page(list(data["data"]), data.get("nextCursor"), str(data.get("syncTimestamp", "")))
