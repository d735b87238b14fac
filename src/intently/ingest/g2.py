"""G2 Buyer Intent: the CSV export importer and the event stream puller.

Both read the same events (time, tag, title, URL, company) and make one `g2` signal of
value 1 per event: the type from the workspace's tag map, the topic from the G2 page the
event is about, matched by the company's domain. The natural key is G2's event id
(`id:<id>`, the same for a CSV `Id` column and the API, so an export and a pull of the
same events meet); a CSV without ids keys each row by its domain, tag, URL and time.

The puller reads `GET /api/v1/ahoy/remote-event-streams` (JSON:API pages of 25 with
`links.next`, `Authorization: Token token=...`, `filter[start_time]`/`filter[end_time]`).
It walks the time since the connection's `last_end` (first pull: `initial_days` back) in
windows of `window_hours`, and moves `last_end` only once a window is stored whole, so a
pull that stops re-reads (duplicates), never skips (gaps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from sqlalchemy.engine import Engine

from intently.ingest.connector import (
    Checkpoints,
    ConnectorError,
    VendorApi,
    http_client,
    read_connection,
    run_pull,
    windows,
)
from intently.ingest.files import CsvInput, FileFormatError, FileLimits
from intently.ingest.http import GaveUp, Retryable, RetryPolicy, retry_after_seconds
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest
from intently.kit.timefmt import US_PER_DAY, US_PER_HOUR, US_PER_SECOND, parse_iso8601
from intently.settings import Settings
from intently.signals.schemas import default_settings
from intently.signals.store import (
    IngestRun,
    RunReport,
    SignalIn,
    content_key,
    ingest_run,
    read_source_config,
)

SOURCE = "g2"
DEFAULT_BASE_URL = "https://data.g2.com"
EVENTS_PATH = "/api/v1/ahoy/remote-event-streams"
JSONAPI = "application/vnd.api+json"

# ---- tags and topics -------------------------------------------------------------------------


class TagMap:
    """A workspace's tag map, compiled once: globs on the lower-cased tag, first match wins."""

    def __init__(self, rules: Sequence[Mapping[str, Any]]) -> None:
        self._rules = [(str(r["tag"]).strip().lower(), str(r["type"])) for r in rules]
        # An export holds a few dozen distinct tags; millions of rows hit this cache.
        self._cache: dict[str, str] = {}

    def type_of(self, tag: str) -> str:
        key = tag.strip().lower()
        found = self._cache.get(key)
        if found is None:
            found = next((t for pattern, t in self._rules if fnmatchcase(key, pattern)), "other")
            self._cache[key] = found
        return found


def signal_type(tag: str, tag_map: Sequence[Mapping[str, Any]]) -> str:
    """The signal type of a G2 tag by the tag map (`G2Settings.tagMap`); `other` if none match."""
    return TagMap(tag_map).type_of(tag)


_TOPIC_SEGMENTS = ("products", "categories", "compare")
_TITLE_SUFFIXES = (" | g2", " - g2", " | g2 crowd", " - g2 crowd")


def topic_of(url: str | None, title: str | None) -> str:
    """The G2 product or category an event is about, from its URL, else its title.

    `.../products/<slug>/...` gives the product slug, `.../categories/<slug>...` the
    category slug, `.../compare/<a>-vs-<b>` gives `a vs b` (slugs lower-cased; a locale
    prefix such as `/de/` is allowed). A URL of no such shape falls back to the page title
    without its `| G2` suffix; neither gives ''. Slugs are preferred over titles because
    titles carry years and wording that would split one product into many topics.
    """
    if url:
        segments = [s for s in urlsplit(url.strip()).path.split("/") if s]
        for i, seg in enumerate(segments[:-1]):
            kind = seg.lower()
            if kind in _TOPIC_SEGMENTS:
                slug = unquote(segments[i + 1]).strip().lower()
                if kind == "compare":
                    return " vs ".join(p for p in slug.split("-vs-") if p)
                return slug
    text = " ".join((title or "").split())
    lowered = text.lower()
    for suffix in _TITLE_SUFFIXES:
        if lowered.endswith(suffix):
            text = text[: -len(suffix)].rstrip()
            break
    return text[:200]


def parse_time(value: str) -> int | None:
    """An event time to micros: ISO dates and date-times, offset or `UTC` or none (= UTC)."""
    text = value.strip()
    if text[-3:].upper() == "UTC":
        text = text[:-3].rstrip()
    try:
        return parse_iso8601(text)
    except (ValueError, OverflowError):
        return None


# ---- one event to one signal ------------------------------------------------------------------


@dataclass(slots=True)
class _Event:
    """An event as read from either input; `*_label` name where each value came from."""

    event_id: str
    time: str
    tag: str
    title: str
    url: str
    company: str
    domain: str
    time_label: str
    tag_label: str
    domain_label: str


def _signal(ev: _Event, tags: TagMap) -> SignalIn | tuple[str, str]:
    """The event's signal, or (reason, detail) when it cannot be used."""
    raw_domain = ev.domain.strip()
    if not raw_domain:
        who = f"company '{ev.company.strip()}'" if ev.company.strip() else "an unnamed company"
        return "missing_domain", f"{ev.domain_label} is empty for {who}"
    domain = try_normalise_domain(raw_domain)
    if domain is None:
        return "invalid_domain", f"{ev.domain_label} '{raw_domain}' is not a domain"
    tag = ev.tag.strip()
    if not tag:
        return "missing_tag", f"{ev.tag_label} is empty"
    if not ev.time.strip():
        return "invalid_date", f"{ev.time_label} is empty"
    occurred = parse_time(ev.time)
    if occurred is None:
        return "invalid_date", f"{ev.time_label} '{ev.time}' is not an ISO 8601 date or date-time"
    url = ev.url.strip()
    event_id = ev.event_id.strip()
    key = "id:" + event_id if event_id else content_key(domain, tag.lower(), url, occurred)
    return SignalIn(
        domain=domain,
        source=SOURCE,
        type=tags.type_of(tag),
        occurred_at=occurred,
        natural_key=key,
        value=1.0,
        topic=topic_of(url, ev.title),
        provider="g2",
        match_method="domain",
        confidence=1.0,
    )


def _tag_map(engine: Engine, ws: int) -> TagMap:
    config = read_source_config(engine, ws, SOURCE, default_settings(SOURCE))
    return TagMap(config["tagMap"])


# ---- the CSV export ---------------------------------------------------------------------------

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "time": ("Time", "Timestamp", "Date", "Occurred At"),
    "tag": ("Tag", "Activity", "Event"),
    "company": ("Company Name", "Company", "Organization"),
    "domain": ("Company Domain", "Domain", "Website"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("Title",),
    "url": ("URL", "Page URL"),
    "id": ("Id", "Event Id"),
}


def import_file(
    engine: Engine,
    ws: int,
    path: str | Path,
    *,
    on_progress: Callable[[RunReport, int, int], None] | None = None,
    limits: FileLimits | None = None,
) -> RunReport:
    """Import a G2 Buyer Intent CSV export (optionally gzipped), streamed.

    A file that breaks off (cut short, over a limit) ends the run `failed`, the rows before
    the break stored.
    """
    tags = _tag_map(engine, ws)
    with CsvInput(path, what="G2 Buyer Intent export", limits=limits) as inp:
        cols = inp.columns(REQUIRED_COLUMNS, OPTIONAL_COLUMNS)
        labels = {name: inp.header[i].strip() for name, i in cols.items()}
        progress = (
            None
            if on_progress is None
            else lambda r: on_progress(r, inp.bytes_read(), inp.total_bytes)
        )
        positions = [(name, cols.get(name)) for name in ("id", "time", "tag", "title", "url")]
        company_at, domain_at = cols["company"], cols["domain"]
        with ingest_run(
            engine, ws, SOURCE, "file", inp.path.name, on_progress=progress,
            stop_on=FileFormatError,
        ) as run:  # fmt: skip
            for line, cells in inp.rows():
                run.read()
                n = len(cells)
                v = {name: cells[i] if i is not None and i < n else "" for name, i in positions}
                ev = _Event(
                    event_id=v["id"],
                    time=v["time"],
                    tag=v["tag"],
                    title=v["title"],
                    url=v["url"],
                    company=cells[company_at] if company_at < n else "",
                    domain=cells[domain_at] if domain_at < n else "",
                    time_label=labels["time"],
                    tag_label=labels["tag"],
                    domain_label=labels["domain"],
                )
                out = _signal(ev, tags)
                if isinstance(out, SignalIn):
                    run.add(out)
                else:
                    run.reject(out[0], out[1], inp.record(cells), line=line)
        return run.report


# ---- the event stream API ---------------------------------------------------------------------


class G2Error(ConnectorError):
    """G2 could not be read (refused, kept failing, or answered something unusable)."""


@dataclass(frozen=True, slots=True)
class PullConfig:
    """A connection's `config`, with defaults; values may arrive as strings from the CLI."""

    base_url: str = DEFAULT_BASE_URL
    initial_days: int = 30
    window_hours: int = 24
    page_size: int = 25
    max_tries: int = 5
    backoff_base: float = 1.0  # seconds before the second try; doubles each try
    backoff_max: float = 60.0
    max_retry_after: float = 300.0  # the longest Retry-After honoured as given
    timeout: float = 30.0

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> PullConfig:
        defaults = cls()

        def number(name: str, kind: type[int] | type[float], lowest: float) -> Any:
            raw = config.get(name, getattr(defaults, name))
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise BadRequest(f"g2 connection config {name}={raw!r} is not a number") from None
            if value < lowest:
                raise BadRequest(f"g2 connection config {name}={raw!r} must be at least {lowest}")
            return value

        base = str(config.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
        if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
            raise BadRequest(f"g2 connection config base_url={base!r} is not an http(s) URL")
        return cls(
            base_url=base,
            initial_days=number("initial_days", int, 0),
            window_hours=number("window_hours", int, 1),
            page_size=number("page_size", int, 1),
            max_tries=number("max_tries", int, 1),
            backoff_base=number("backoff_base", float, 0),
            backoff_max=number("backoff_max", float, 0),
            max_retry_after=number("max_retry_after", float, 0),
            timeout=number("timeout", float, 0.001),
        )


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us // US_PER_SECOND, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class G2Api(VendorApi):
    """G2's JSON:API over one HTTP client, with bounded retries and the token kept to G2."""

    error = G2Error

    def __init__(
        self,
        http: httpx.Client,
        cfg: PullConfig,
        token: str,
        sleep: Callable[[float], None],
    ) -> None:
        # A Retry-After beyond max_retry_after is waited only that long, not given up on.
        retries = RetryPolicy(
            cfg.max_tries,
            cfg.backoff_base,
            cfg.backoff_max,
            max_retry_after=cfg.max_retry_after,
            clamp_retry_after=True,
        )
        super().__init__(
            http, retries, sleep, (token,), mask="[token]",
            base_url=cfg.base_url, vendor_url=DEFAULT_BASE_URL,
        )  # fmt: skip
        self.cfg = cfg
        self._headers = {
            "Authorization": f"Token token={token}",
            "Accept": JSONAPI,
            "Content-Type": JSONAPI,
        }
        self._companies: dict[str, dict[str, Any] | None] = {}

    def _url(self, link: str) -> str:
        url = urljoin(self.cfg.base_url + "/", link)
        # The token goes only where it was meant to go: a link elsewhere is not followed.
        if _origin(url) != _origin(self.cfg.base_url):
            raise G2Error(f"G2 sent a link to another host ({urlsplit(url).netloc}); not followed")
        return url

    def get(self, url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One JSON:API document. Raises G2Error."""
        doc = self.fetch(url, params)
        if doc is None:  # only a missing_ok fetch answers None
            raise G2Error(f"G2 has no {urlsplit(url).path}")
        return doc

    def fetch(
        self, url: str, params: Mapping[str, str] | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """One JSON:API document; None for a 404 when `missing_ok`. Raises G2Error."""
        path = urlsplit(url).path

        def once() -> dict[str, Any] | None:
            try:
                response = self.client.get(url, params=params, headers=self._headers)
            except httpx.TransportError as exc:  # refused, reset, timed out
                name = type(exc).__name__
                raise Retryable(f"{name}: {exc}" if str(exc) else name) from None
            code = response.status_code
            if code == 429:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                raise Retryable("HTTP 429 (rate limited)", wait)
            if code >= 500:
                raise Retryable(f"HTTP {code}")
            if code in (401, 403):
                raise G2Error(
                    f"G2 refused the token (HTTP {code}) at {path}: set the g2 connection's "
                    "token again (`intently connections set g2 -c token=...`)"
                )
            if code == 404 and missing_ok:
                return None
            if code >= 400:
                said = self.answer(response.text, 200)
                raise G2Error(f"G2 answered HTTP {code} at {path}" + (f": {said}" if said else ""))
            return self._document(response, path)

        def gave_up(exc: GaveUp) -> str:
            return f"G2 kept failing at {path}: {self.cfg.max_tries} tries, last {exc.problem}"

        return self.call(once, gave_up)

    @staticmethod
    def _document(response: httpx.Response, path: str) -> dict[str, Any]:
        try:
            doc = response.json()
        except ValueError:
            raise G2Error(f"G2 answered {path} with something that is not JSON") from None
        if not isinstance(doc, dict) or "data" not in doc:
            raise G2Error(f"G2 answered {path} without a JSON:API `data` member")
        return doc

    def event_pages(self, start_us: int, end_us: int) -> Iterator[dict[str, Any]]:
        """The pages of events in [start, end], following `links.next`."""
        url = self.cfg.base_url + EVENTS_PATH
        params: dict[str, str] | None = {
            "page[size]": str(self.cfg.page_size),
            "filter[start_time]": _iso(start_us),
            "filter[end_time]": _iso(end_us),
        }
        seen: set[str] = set()
        pages = 0
        while True:
            doc = self.get(url, params)
            data = doc["data"]
            if not isinstance(data, list):
                raise G2Error(f"G2 answered {EVENTS_PATH} with `data` that is not a list")
            pages += 1
            yield doc
            nxt = (doc.get("links") or {}).get("next")
            page_count = (doc.get("meta") or {}).get("page_count")
            if not nxt or not data:
                return
            if isinstance(page_count, int) and pages >= page_count:
                return
            url, params = self._url(str(nxt)), None
            if url in seen:
                raise G2Error("G2's links.next points back to a page already read")
            seen.add(url)

    def company(self, event: Mapping[str, Any], included: Mapping[str, Any]) -> Any:
        """The event's company attributes: from `included`, else its related link (cached)."""
        rel = (event.get("relationships") or {}).get("company") or {}
        data = rel.get("data")
        key = None
        if isinstance(data, dict) and data.get("id") is not None:
            key = f"{data.get('type')}:{data['id']}"
            resource = included.get(key)
            if isinstance(resource, dict):
                attrs = resource.get("attributes") or {}
                self._companies[key] = attrs
                return attrs
            if key in self._companies:
                return self._companies[key]
        link = (rel.get("links") or {}).get("related")
        if not link:
            return None
        link_key = "link:" + str(link)
        if link_key not in self._companies:
            doc = self.fetch(self._url(str(link)), missing_ok=True)
            resource = doc.get("data") if doc is not None else None
            attrs = resource.get("attributes") if isinstance(resource, dict) else None
            self._companies[link_key] = attrs if isinstance(attrs, dict) else None
        if key is not None:
            self._companies[key] = self._companies[link_key]
        return self._companies[link_key]


def _event_of(record: Mapping[str, Any], company: Any) -> _Event:
    attrs = record.get("attributes")
    attrs = attrs if isinstance(attrs, dict) else {}
    company = company if isinstance(company, dict) else {}

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return _Event(
        event_id=text(record.get("id")),
        time=text(attrs.get("time")),
        tag=text(attrs.get("tag")),
        title=text(attrs.get("title")),
        url=text(attrs.get("url")),
        company=text(company.get("name") or attrs.get("organization")),
        domain=text(company.get("domain")),
        time_label="attributes.time",
        tag_label="attributes.tag",
        domain_label="the company's domain",
    )


def _store_page(run: IngestRun, api: G2Api, doc: Mapping[str, Any], tags: TagMap) -> None:
    included = {
        f"{r.get('type')}:{r.get('id')}": r
        for r in (doc.get("included") or [])
        if isinstance(r, dict)
    }
    for record in doc["data"]:
        run.read()
        if not isinstance(record, dict):
            run.reject("invalid_event", "the event is not a JSON object", {"event": record})
            continue
        company = api.company(record, included)
        out = _signal(_event_of(record, company), tags)
        if isinstance(out, SignalIn):
            run.add(out)
        else:
            reason, detail = out
            if reason == "missing_domain" and not isinstance(company, dict):
                detail = "G2 gave no company for the event (no included resource or related link)"
            ref = str(record.get("id")) if record.get("id") is not None else None
            run.reject(reason, detail, {"event": record, "company": company}, ref=ref)


def pull(
    engine: Engine,
    ws: int,
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: datetime | None = None,
) -> RunReport:
    """Pull G2's event stream from where the last pull stopped up to now.

    Returns a `failed` report (and records the error on the connection) when G2 cannot be
    read; what was stored before stays, and the resume point stays at the last whole window.
    """
    connection = read_connection(engine, ws, SOURCE, settings)
    token = connection.credential("token").strip()
    if not token:
        raise BadRequest(
            "the g2 connection has no token: `intently connections set g2 -c token=...`"
        )
    cfg = PullConfig.parse(connection.config)
    tags = _tag_map(engine, ws)
    moment = now or datetime.now(UTC)
    end_us = int(moment.timestamp()) * US_PER_SECOND
    last_end = connection.state.get("last_end")
    if last_end:
        try:
            start_us = parse_iso8601(str(last_end))
        except ValueError:
            raise BadRequest(
                f"the g2 connection's resume point {last_end!r} is not a time"
            ) from None
    else:
        start_us = end_us - cfg.initial_days * US_PER_DAY
    label = f"events {_iso(start_us)} to {_iso(end_us)}"

    with http_client(client, settings, cfg.timeout) as http:
        api = G2Api(http, cfg, token, sleep)

        def read(run: IngestRun) -> Checkpoints:
            size = cfg.window_hours * US_PER_HOUR
            for window_start, window_end in windows(start_us, end_us, size):
                for doc in api.event_pages(window_start, window_end):
                    _store_page(run, api, doc, tags)
                yield {"last_end": _iso(window_end)}

        # A window G2 fails halfway keeps its pages read so far: the resume point stays
        # before the window, so the next pull reads them again as duplicates.
        return run_pull(engine, ws, SOURCE, label, read, scrub=api.scrub, keep_partial=True)
