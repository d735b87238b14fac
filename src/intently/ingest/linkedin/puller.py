"""The LinkedIn ad analytics puller: adAnalytics by member company, daily, on the
connector skeleton (`ingest/connector.py`)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.engine import Engine

from intently.ingest.connector import (
    Checkpoints,
    ConnectorError,
    VendorApi,
    http_client,
    read_connection,
    record_refusal,
    run_pull,
    windows,
)
from intently.ingest.http import GaveUp, Retryable, RetryPolicy, retry_after_seconds
from intently.ingest.linkedin.apply import (
    CHUNK_ROWS,
    OpenRejects,
    Pending,
    apply_rows,
    constant,
    merged_hints,
)
from intently.ingest.linkedin.orgs import Match, OrgHints, OrgResolver, org_id
from intently.ingest.linkedin.rows import METRICS, SOURCE, RowError, parse_element
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest
from intently.settings import Settings
from intently.signals.schemas import default_settings
from intently.signals.store import IngestRun, RunReport, read_source_config

DEFAULT_BASE_URL = "https://api.linkedin.com"
# LinkedIn's versioned Marketing API (LinkedIn-Version: YYYYMM); each version is served
# for about a year, so connections can pin a newer one with config `version`.
DEFAULT_API_VERSION = "202603"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class LinkedinApiError(ConnectorError):
    """LinkedIn's API failed, or kept failing after the retries."""


@dataclass(frozen=True, slots=True)
class PullConfig:
    base_url: str
    accounts: tuple[str, ...]  # sponsored account ids
    version: str
    initial_days: int
    days_per_request: int
    max_tries: int
    website_lookups: int  # organization lookups per pull (0: none)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PullConfig:
        def number(name: str, default: int, low: int, high: int) -> int:
            raw = config.get(name, default)
            try:
                value = int(str(raw).strip())
            except ValueError:
                value = low - 1
            if not low <= value <= high:
                raise BadRequest(
                    f"linkedin connection config {name} '{raw}' must be a whole number from "
                    f"{low} to {high}"
                )
            return value

        ids: list[str] = []
        for part in str(config.get("accounts") or "").split(","):
            text = part.strip()
            if not text:
                continue
            m = re.fullmatch(r"(?:urn:li:sponsoredAccount:)?(\d{1,19})", text, re.ASCII)
            if m is None:
                raise BadRequest(
                    f"linkedin connection config accounts: '{text}' is not an ad account id"
                )
            ids.append(m.group(1))
        if not ids:
            raise BadRequest(
                "the linkedin connection has no ad accounts: set them with "
                "`intently connections set linkedin --config accounts=ID[,ID...]`"
            )
        version = str(config.get("version") or DEFAULT_API_VERSION).strip()
        if not re.fullmatch(r"\d{6}", version, re.ASCII):
            raise BadRequest(f"linkedin connection config version '{version}' is not YYYYMM")
        base = str(config.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise BadRequest(f"linkedin connection config base_url '{base}' is not an HTTP URL")
        return cls(
            base_url=base,
            accounts=tuple(ids),
            version=version,
            initial_days=number("initial_days", 30, 1, 730),
            days_per_request=number("days_per_request", 31, 1, 366),
            max_tries=number("max_tries", 5, 1, 20),
            website_lookups=number("website_lookups", 200, 0, 100_000),
        )


class LinkedinApi(VendorApi):
    """LinkedIn's REST API with a bearer token: bounded retries, and the token kept out of
    every message."""

    BACKOFF_S = 1.0
    BACKOFF_CAP_S = 30.0
    RETRY_AFTER_CAP_S = 300.0  # a longer wait than this fails the pull instead of hanging it
    error = LinkedinApiError

    def __init__(
        self,
        client: httpx.Client,
        config: PullConfig,
        token: str,
        sleep: Callable[[float], None],
    ) -> None:
        retries = RetryPolicy(
            config.max_tries, self.BACKOFF_S, self.BACKOFF_CAP_S, self.RETRY_AFTER_CAP_S
        )
        super().__init__(
            client, retries, sleep, (token,), base_url=config.base_url, vendor_url=DEFAULT_BASE_URL
        )
        self.config = config
        self._token = token
        self.last_status = 0

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "LinkedIn-Version": self.config.version,
            "X-Restli-Protocol-Version": "2.0.0",
            "Accept": "application/json",
        }

    def get(self, url: str, what: str, *, missing_ok: bool = False) -> Any:
        """GET JSON; None for 403/404 when `missing_ok`. Raises LinkedinApiError."""

        def gave_up(exc: GaveUp) -> str:
            if exc.wait is not None:
                return f"{exc.problem}; LinkedIn asked to wait {exc.wait:.0f} s, giving up"
            return f"{exc.problem} (gave up after {self.config.max_tries} tries)"

        return self.call(lambda: self._once(url, what, missing_ok), gave_up)

    def _once(self, url: str, what: str, missing_ok: bool) -> Any:
        self.last_status = 0
        try:
            resp = self.client.get(url, headers=self._headers())
        except httpx.TimeoutException:
            raise Retryable(f"LinkedIn {what}: timed out") from None
        except httpx.TransportError as exc:
            raise Retryable(f"LinkedIn {what}: {type(exc).__name__}") from None
        status = self.last_status = resp.status_code
        said = self._message(resp) if status >= 300 else ""
        if status == 429 or status >= 500:
            raise Retryable(
                f"LinkedIn {what}: HTTP {status}{said}",
                retry_after_seconds(resp.headers.get("Retry-After")),
            )
        if missing_ok and status in (403, 404):
            return None
        if status == 401:
            raise LinkedinApiError(
                self.scrub(
                    f"LinkedIn {what}: HTTP 401{said}: the access token was refused; "
                    "set a fresh one with `intently connections set linkedin -c access_token=...`"
                )
            )
        if status >= 300:
            raise LinkedinApiError(self.scrub(f"LinkedIn {what}: HTTP {status}{said}"))
        try:
            return resp.json()
        except ValueError:
            raise LinkedinApiError(f"LinkedIn {what}: the answer is not JSON") from None

    def _message(self, resp: httpx.Response) -> str:
        """LinkedIn's error sentence, when the answer has one (short; never the whole body)."""
        try:
            body = resp.json()
        except ValueError:
            return ""
        msg = body.get("message") if isinstance(body, dict) else None
        said = self.answer(str(msg), 300) if msg else ""
        return f": {said}" if said else ""

    def analytics(self, start: date, end: date) -> list[Any]:
        """adAnalytics by member company, one element per organization and day."""

        def ymd(d: date) -> str:
            return f"(year:{d.year},month:{d.month},day:{d.day})"

        accounts = ",".join(
            quote(f"urn:li:sponsoredAccount:{a}", safe="") for a in self.config.accounts
        )
        fields = ",".join([m for m, _ in METRICS] + ["pivotValues", "dateRange"])
        url = (
            f"{self.config.base_url}/rest/adAnalytics?q=analytics&pivot=MEMBER_COMPANY"
            f"&timeGranularity=DAILY&dateRange=(start:{ymd(start)},end:{ymd(end)})"
            f"&accounts=List({accounts})&fields={fields}"
        )
        body = self.get(url, f"adAnalytics {start}..{end}")
        elements = body.get("elements") if isinstance(body, dict) else None
        if not isinstance(elements, list):
            raise LinkedinApiError(
                f"LinkedIn adAnalytics {start}..{end}: no elements in the answer"
            )
        return elements

    def organization(self, urn: str) -> OrgHints | None:
        """The organization's vanity name and website, when LinkedIn shows them to this token."""
        body = self.get(
            f"{self.config.base_url}/rest/organizations/{org_id(urn)}",
            f"organization {urn}",
            missing_ok=True,
        )
        if not isinstance(body, dict):
            return None
        website = body.get("localizedWebsite")
        vanity = body.get("vanityName")
        name = body.get("localizedName")
        return OrgHints(
            name=name if isinstance(name, str) else None,
            vanity=vanity.strip().lower() if isinstance(vanity, str) and vanity.strip() else None,
            website=try_normalise_domain(website) if isinstance(website, str) else None,
        )


@dataclass
class _Lookups:
    """Organization lookups of one pull: each organization asked at most once."""

    api: LinkedinApi
    budget: int
    seen: dict[str, OrgHints | None] = field(default_factory=dict)

    def resolve(self, resolver: OrgResolver, items: list[Pending]) -> dict[str, Match | None]:
        hints = merged_hints(items)
        resolved = resolver.resolve(hints)
        learned: dict[str, OrgHints] = {}
        for org, match in resolved.items():
            if match is not None or org in self.seen or self.budget <= 0:
                continue
            self.budget -= 1
            try:
                info = self.api.organization(org)
            except LinkedinApiError:
                # The website is a nicety: its failure fails nothing else, and while
                # LinkedIn fails it, asking about more organizations only adds waits.
                self.seen[org], self.budget = None, 0
                continue
            self.seen[org] = info
            if info is not None and (info.website or info.vanity):
                learned[org] = info
            elif self.api.last_status == 403:
                self.budget = 0  # this token may not read organizations: asking more is waste
        if learned:
            resolver.forget(learned)
            resolved.update(resolver.resolve(learned))
        return resolved


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def pull(
    engine: Engine,
    ws: int,
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    today: date | None = None,
) -> RunReport:
    """Pull ad analytics by member company, daily, from the last pulled day (less the
    workspace's trailing window) up to yesterday (UTC); the first pull reads `initial_days`.

    The resume point (`{"last_day": ...}`) moves only after a window's days are stored. A
    pull that gives up returns a failed report and keeps the error on the connection.
    """
    connection = read_connection(engine, ws, SOURCE, settings)
    token = connection.credential("access_token")
    with record_refusal(engine, ws, SOURCE):
        if not token:
            raise BadRequest(
                "the linkedin connection has no access_token credential: set it with "
                "`intently connections set linkedin -c access_token=...`"
            )
        config = PullConfig.from_config(connection.config)
    trailing = int(
        read_source_config(engine, ws, SOURCE, default_settings(SOURCE)).get("trailingDays", 7)
    )
    today = today or datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    last = _day(connection.state.get("last_day"))
    start = last - timedelta(days=trailing) if last else today - timedelta(days=config.initial_days)
    end = yesterday
    label = f"adAnalytics {start}..{end}" if start <= end else f"adAnalytics up to date ({last})"

    with http_client(client, settings, TIMEOUT) as http:
        api = LinkedinApi(http, config, token, sleep)
        lookups = _Lookups(api, config.website_lookups)
        resolver = OrgResolver(engine, ws)
        open_rejects = OpenRejects(engine, ws)

        def read(run: IngestRun) -> Checkpoints:
            stored_to = last
            # In day numbers, so that the days start..end are the half-open [start, end + 1).
            days = windows(start.toordinal(), end.toordinal() + 1, config.days_per_request)
            for first, stop in days:
                chunk_start, chunk_end = date.fromordinal(first), date.fromordinal(stop - 1)
                items: list[Pending] = []
                for element in api.analytics(chunk_start, chunk_end):
                    try:
                        row = parse_element(element)
                    except RowError as exc:
                        run.read()
                        run.reject(exc.reason, exc.detail, element)
                        continue
                    items.append(Pending(row, constant(element)))
                    if len(items) >= CHUNK_ROWS:
                        resolved = lookups.resolve(resolver, items)
                        apply_rows(engine, ws, run, resolver, items, resolved=resolved,
                                   open_rejects=open_rejects)  # fmt: skip
                        items = []
                resolved = lookups.resolve(resolver, items)
                apply_rows(engine, ws, run, resolver, items, resolved=resolved,
                           open_rejects=open_rejects)  # fmt: skip
                stored_to = chunk_end if stored_to is None else max(stored_to, chunk_end)
                yield {"last_day": stored_to.isoformat()}

        return run_pull(engine, ws, SOURCE, label, read, scrub=api.scrub)
