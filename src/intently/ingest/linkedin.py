"""LinkedIn ads: the company engagement export, the ad analytics puller, and organization mapping.

LinkedIn reports ad activity per organization (`urn:li:organization:<id>`), not per
domain. An organization reaches an account's domain, first match wins, through:

1. the workspace's mapping table (`linkedin_orgs`, set by `intently linkedin map`):
   match method `mapping`, confidence 1.0;
2. an account whose `linkedinUrl` names the organization (`/company/<id>`, or its vanity
   name when the file or the API gives one): `linkedin_url`, 0.95;
3. the organization's website (a file column, or the API's organization lookup), kept in
   `linkedin_orgs` with origin `website`: `website`, 0.8.

An organization that matches nothing is rejected as `unknown_organization` with its URN
as the reject's `ref`; `reapply` turns those rejects into signals once it is mapped.

One row (or API element) carries up to four counts, each its own signal: impressions
(`ad_impression`), clicks (`ad_click`), engagements (`ad_engagement`) and lead form
submissions (`lead_form`). Natural key: `<urn>|<day>|<campaign>|<type>`; a row that covers
a period (Start Date .. End Date longer than one day) counts on its start date and its key
names the period, `<urn>|<start>/<end>|<campaign>|<type>`, so two periods that start on the
same day stay apart. LinkedIn revises recent days, so the same key with a new count is an
update (a count revised to 0 sets the stored signal to 0; a 0 never seen before stores
nothing).

Accounting: a run's `read` counts readings (one per count column of a usable row, one per
rejected row), so read = accepted + updated + duplicate + rejected + skipped still holds;
a zero count is skipped as `zero_count`, and an unknown organization's row that is already
open in the rejects (a re-import, the trailing window read again) as `already_rejected`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection, Engine

from intently.accounts.tables import accounts as accounts_t
from intently.ingest.connections import get_connection, save_state
from intently.ingest.files import CsvInput, FileFormatError, header_key
from intently.ingest.http import GaveUp, Retryable, RetryPolicy, retry_after_seconds
from intently.ingest.tables import linkedin_orgs
from intently.kit.db import param_marker, read_tx, write_tx
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest, IntentlyError
from intently.kit.timefmt import now_us
from intently.settings import Settings
from intently.signals import repository as signals_repo
from intently.signals.schemas import default_settings
from intently.signals.service import (
    US_PER_DAY,
    IngestRun,
    RunReport,
    SignalIn,
    ingest_run,
    iter_rejects,
    read_source_config,
)
from intently.signals.tables import signal_rejects

SOURCE = "linkedin"
PROVIDER = "linkedin"
DEFAULT_BASE_URL = "https://api.linkedin.com"
# LinkedIn's versioned Marketing API (LinkedIn-Version: YYYYMM); each version is served
# for about a year, so connections can pin a newer one with config `version`.
DEFAULT_API_VERSION = "202603"

CONFIDENCE = {"mapping": 1.0, "linkedin_url": 0.95, "website": 0.8}

# Signal type per count, in the order a row's readings are taken.
TYPES = ("ad_impression", "ad_click", "ad_engagement", "lead_form")

UNKNOWN = "unknown_organization"

_EPOCH = date(1970, 1, 1)
_CHUNK_ROWS = 2000  # rows resolved together: one mapping lookup per chunk, not per row


class InvalidOrganization(BadRequest):
    """A value that names no LinkedIn organization."""


class LinkedinApiError(IntentlyError):
    """LinkedIn's API failed, or kept failing after the retries."""

    status = 502


# ---- organizations ------------------------------------------------------------------------

_URN_RE = re.compile(r"urn:li:(?:organization|company):(\d{1,19})", re.IGNORECASE | re.ASCII)
_ID_RE = re.compile(r"\d{1,19}", re.ASCII)
_COMPANY_URL_RE = re.compile(
    r"(?:[a-z][a-z0-9+.\-]*://)?(?:[a-z0-9\-]+\.)*linkedin\.com/company/([^/?#\s]+)",
    re.IGNORECASE,
)


def company_ref(value: str) -> tuple[str, str] | None:
    """("id", "12345") or ("vanity", "acme-corp") from a company page URL or an URN; else None."""
    text = value.strip()
    m = _URN_RE.fullmatch(text)
    if m:
        return ("id", str(int(m.group(1)))) if int(m.group(1)) else None
    m = _COMPANY_URL_RE.match(text)
    if m is None:
        return None
    segment = unquote(m.group(1)).strip().lower()
    if _ID_RE.fullmatch(segment):
        return ("id", str(int(segment))) if int(segment) else None
    return ("vanity", segment) if segment else None


def normalise_org(value: str) -> str:
    """`urn:li:organization:<id>` from an URN, a bare id or a company page URL with a numeric id.

    `urn:li:company:<id>` (LinkedIn's older name for the same ids) is accepted too. A page
    URL with a vanity name (`/company/acme-corp`) is not an id: it raises, like any other text.
    """
    text = value.strip()
    ref = ("id", str(int(text))) if _ID_RE.fullmatch(text) and int(text) else company_ref(text)
    if ref is None or ref[0] != "id":
        raise InvalidOrganization(
            f"'{value}' is not a LinkedIn organization: expected urn:li:organization:<id>, a "
            "numeric organization id, or a company page URL with a numeric id"
        )
    return f"urn:li:organization:{ref[1]}"


def org_id(urn: str) -> str:
    return urn.rsplit(":", 1)[1]


@dataclass(frozen=True, slots=True)
class Match:
    """How an organization reached a domain."""

    domain: str
    method: str  # mapping | linkedin_url | website

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.method]


@dataclass(slots=True)
class OrgHints:
    """What a file row or the API said about an organization besides its id."""

    name: str | None = None
    vanity: str | None = None
    website: str | None = None  # a normalised domain


class OrgResolver:
    """Resolves organizations to domains for one run, remembering every answer it gave."""

    def __init__(self, engine: Engine, ws: int) -> None:
        self.engine, self.ws = engine, ws
        self._cache: dict[str, Match | None] = {}
        # What an organization that matched nothing was looked up with: a later row that
        # says more (a website, a vanity name) is worth another look.
        self._tried: dict[str, tuple[str | None, str | None]] = {}

    def resolve(self, orgs: dict[str, OrgHints]) -> dict[str, Match | None]:
        todo = {
            o: h
            for o, h in orgs.items()
            if o not in self._cache
            or (
                self._cache[o] is None
                and (h.website or h.vanity)
                and self._tried.get(o) != (h.website, h.vanity)
            )
        }
        if todo:
            found = self._lookup(todo)
            self._cache.update(found)
            for o, match in found.items():
                if match is None:
                    self._tried[o] = (todo[o].website, todo[o].vanity)
        return {o: self._cache[o] for o in orgs}

    def forget(self, orgs: Iterable[str]) -> None:
        """Resolve these again next time (the API told us more about them)."""
        for o in orgs:
            self._cache.pop(o, None)

    def _lookup(self, orgs: dict[str, OrgHints]) -> dict[str, Match | None]:
        out: dict[str, Match | None] = {}
        rest: dict[str, OrgHints] = {}
        with read_tx(self.engine) as conn:
            stored = _stored_orgs(conn, self.ws, list(orgs))
            for org, hints in orgs.items():
                row = stored.get(org)
                if row is not None and row[1] != "website":
                    out[org] = Match(row[0], "mapping")
                else:
                    rest[org] = hints
            by_url = (
                _orgs_by_linkedin_url(
                    conn,
                    self.ws,
                    ids={org_id(o): o for o in rest},
                    vanities={h.vanity: o for o, h in rest.items() if h.vanity},
                )
                if rest
                else {}
            )
        learned: list[tuple[str, str, str | None]] = []
        for org, hints in rest.items():
            if org in by_url:
                out[org] = Match(by_url[org], "linkedin_url")
                continue
            known = stored.get(org)
            if hints.website and (known is None or known[0] != hints.website):
                learned.append((org, hints.website, hints.name))
            website = hints.website or (known[0] if known else None)
            out[org] = Match(website, "website") if website else None
        if learned:
            with write_tx(self.engine) as conn:
                _store_websites(conn, self.ws, learned)
        return out


def map_org(engine: Engine, ws: int, org: str, domain: str) -> str:
    """Map an organization to a domain by hand (over any website learned for it); its URN."""
    urn = normalise_org(org)
    normalised = try_normalise_domain(domain)
    if normalised is None:
        raise BadRequest(f"'{domain}' is not a domain")
    with write_tx(engine) as conn:
        m = param_marker(conn)
        conn.exec_driver_sql(
            "INSERT INTO linkedin_orgs (workspace_id, org, domain, name, origin, updated_at) "
            f"VALUES ({m}, {m}, {m}, NULL, 'manual', {m}) ON CONFLICT (workspace_id, org) "
            "DO UPDATE SET domain = excluded.domain, origin = excluded.origin, "
            "updated_at = excluded.updated_at",
            (ws, urn, normalised, now_us()),
        )
    return urn


# ---- rows: what a file row or an API element says ------------------------------------------


@dataclass(slots=True)
class Row:
    """One usable row: an organization, a day (or period), a campaign and its counts."""

    org: str
    hints: OrgHints
    day: date
    end: date | None  # the period's last day, when the row covers more than one day
    campaign: str
    counts: dict[str, float | None]  # signal type -> count (None: empty)

    def key(self, type_: str) -> str:
        when = self.day.isoformat() if self.end is None else f"{self.day}/{self.end}"
        return f"{self.org}|{when}|{self.campaign}|{type_}"

    def signal(self, type_: str, value: float, match: Match) -> SignalIn:
        return SignalIn(
            domain=match.domain,
            source=SOURCE,
            type=type_,
            occurred_at=(self.day - _EPOCH).days * US_PER_DAY,
            natural_key=self.key(type_),
            value=value,
            topic=self.campaign,
            provider=PROVIDER,
            match_method=match.method,
            confidence=match.confidence,
        )


class RowError(ValueError):
    """A row that cannot be used: a reason code and a sentence naming the column and value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)


def parse_count(text: str) -> float | None:
    """A count: a non-negative number (`1,234` too); None when empty. Raises ValueError."""
    t = text.strip()
    if not t:
        return None
    if _THOUSANDS_RE.fullmatch(t):
        t = t.replace(",", "")
    v = float(t)
    if v != v or v in (float("inf"), float("-inf")) or v < 0:
        raise ValueError(text)
    return v


_ISO_DAY_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?", re.ASCII)
_YMD_RE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})", re.ASCII)
_MDY_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})", re.ASCII)


def parse_day(text: str) -> date:
    """`2026-11-20` (a date-time's date too), `2026/11/20`, or LinkedIn's US `11/20/2026`."""
    t = text.strip()
    if len(t) == 10 and t[4] == "-" and t[7] == "-":
        return date.fromisoformat(t)  # the common case, without a regex
    for rx, order in ((_ISO_DAY_RE, "ymd"), (_YMD_RE, "ymd"), (_MDY_RE, "mdy")):
        m = rx.fullmatch(t)
        if m:
            a, b, c = (int(g) for g in m.groups()[:3])
            y, mo, d = (a, b, c) if order == "ymd" else (c, a, b)
            return date(y, mo, d)  # ValueError when there is no such day
    raise ValueError(text)


def _check_day(d: date, column: str, value: str) -> date:
    # A few hours ahead of UTC is still today somewhere; anything later is a wrong date.
    if d > datetime.now(UTC).date() + timedelta(days=1):
        raise RowError("invalid_date", f"{column} '{value}' is in the future")
    return d


# File columns: canonical name -> accepted headers (matched ignoring case, spaces, _ and -).
REQUIRED = {
    "name": ("Company Name", "Company", "Organization Name", "Account Name"),
    "impressions": ("Impressions", "Paid Impressions", "Ad Impressions"),
    "clicks": ("Clicks", "Paid Clicks", "Ad Clicks"),
    "engagements": ("Engagements", "Paid Engagements", "Total Engagements", "Ad Engagements"),
}
OPTIONAL = {
    "urn": ("Organization URN", "Company URN", "Organization", "Organization ID", "Company ID"),
    "page": (
        "Company Page URL",
        "Company Page",
        "Company URL",
        "Company LinkedIn URL",
        "LinkedIn URL",
        "LinkedIn Page",
    ),
    "leads": (
        "Leads",
        "Lead Form Submits",
        "Lead Form Submissions",
        "Paid Leads",
        "One Click Leads",
        "Lead Form Opens",
    ),
    "campaign": ("Campaign", "Campaign Name", "Campaign URN", "Campaign ID"),
    "website": ("Website", "Company Website", "Company Domain", "Domain"),
    "day": ("Date", "Day"),
    "start": ("Start Date", "Period Start", "Start"),
    "end": ("End Date", "Period End", "End"),
}
_COUNT_COLUMNS = (
    ("impressions", "ad_impression"),
    ("clicks", "ad_click"),
    ("engagements", "ad_engagement"),
    ("leads", "lead_form"),
)


def _layout(headers: list[str]) -> dict[str, int]:
    """Column index by canonical name, as CsvInput.columns matches them (for stored records)."""
    keys = [header_key(h) for h in headers]
    found: dict[str, int] = {}
    for name, aliases in {**REQUIRED, **OPTIONAL}.items():
        for alias in aliases:
            k = header_key(alias)
            if k in keys:
                found[name] = keys.index(k)
                break
    return found


def _check_layout(cols: dict[str, int], header: list[str], file_name: str) -> None:
    """Beyond the required columns: an organization column, and a date or a period."""
    missing = []
    if "urn" not in cols and "page" not in cols:
        missing.append("Organization URN or Company Page URL")
    if "day" not in cols and not ("start" in cols and "end" in cols):
        missing.append("Date, or Start Date and End Date")
    if missing:
        seen = ", ".join(h.strip() for h in header) or "(none)"
        expected = ", ".join(a[0] for a in REQUIRED.values())
        raise FileFormatError(
            f"{file_name} is not a LinkedIn company engagement export: missing column(s) "
            f"{'; '.join(missing)}; expected {expected}, an organization column and a date "
            f"or period; found {seen}"
        )


def parse_file_row(cols: dict[str, int], header: list[str], cells: list[str]) -> Row:
    """A file row as a Row; raises RowError (reason, detail) when it cannot be used."""

    def cell(name: str) -> str:
        i = cols.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    def title(name: str) -> str:
        return header[cols[name]].strip()

    urn_text, page_text = cell("urn"), cell("page")
    hints = OrgHints(name=cell("name") or None)
    if urn_text:
        try:
            org = normalise_org(urn_text)
        except InvalidOrganization:
            raise RowError(
                "invalid_organization",
                f"{title('urn')} '{urn_text}' is not a LinkedIn organization URN or id",
            ) from None
    elif page_text:
        ref = company_ref(page_text)
        if ref is None or ref[0] != "id":
            raise RowError(
                "invalid_organization",
                f"{title('page')} '{page_text}' has no numeric organization id "
                "(a vanity name alone cannot be mapped; export organization URNs)",
            )
        org = f"urn:li:organization:{ref[1]}"
    else:
        names = " or ".join(title(n) for n in ("urn", "page") if n in cols)
        raise RowError("missing_organization", f"{names} is empty")
    if page_text:
        ref = company_ref(page_text)
        if ref is not None and ref[0] == "vanity":
            hints.vanity = ref[1]
    website = cell("website")
    if website:
        hints.website = try_normalise_domain(website)

    end: date | None = None
    day_text = cell("day")
    try:
        if day_text or not ("start" in cols and "end" in cols):
            column, value = (title("day"), day_text) if "day" in cols else ("Date", "")
            day = _check_day(parse_day(value), column, value)
        else:
            column, value = title("start"), cell("start")
            day = _check_day(parse_day(value), column, value)
            column, value = title("end"), cell("end")
            end = _check_day(parse_day(value), column, value)
            if end < day:
                raise RowError(
                    "invalid_date",
                    f"{column} '{value}' is before {title('start')} '{cell('start')}'",
                )
            if end == day:
                end = None  # a one-day period is that day: the same key as a daily row
    except RowError:
        raise
    except ValueError:
        detail = f"{column} is empty" if not value else f"{column} '{value}' is not a date"
        raise RowError("invalid_date", detail) from None

    counts: dict[str, float | None] = {}
    for name, type_ in _COUNT_COLUMNS:
        if name not in cols:
            continue
        text = cell(name)
        try:
            counts[type_] = parse_count(text)
        except ValueError:
            raise RowError(
                "invalid_number", f"{title(name)} '{text}' is not a non-negative number"
            ) from None
    return Row(org, hints, day, end, cell("campaign"), counts)


def _element_day(value: Any) -> date:
    if not isinstance(value, dict):
        raise ValueError(value)
    parts: list[int] = []
    for k in ("year", "month", "day"):
        p = value.get(k)
        if not isinstance(p, int) or isinstance(p, bool):
            raise ValueError(value)
        parts.append(p)
    return date(parts[0], parts[1], parts[2])


# adAnalytics metric -> signal type. oneClickLeads: lead gen form submissions.
METRICS = (
    ("impressions", "ad_impression"),
    ("clicks", "ad_click"),
    ("totalEngagements", "ad_engagement"),
    ("oneClickLeads", "lead_form"),
)


def parse_element(element: Any) -> Row:
    """An adAnalytics element (MEMBER_COMPANY pivot, DAILY) as a Row; raises RowError."""
    if not isinstance(element, dict):
        raise RowError("invalid_organization", f"element {element!r} is not an object")
    pivots = element.get("pivotValues")
    value = pivots[0] if isinstance(pivots, list) and len(pivots) == 1 else pivots
    if not value:
        raise RowError("missing_organization", "pivotValues is empty")
    try:
        org = normalise_org(str(value))
    except InvalidOrganization:
        raise RowError(
            "invalid_organization", f"pivotValues '{value}' is not a LinkedIn organization URN"
        ) from None
    span = element.get("dateRange")
    try:
        day = _element_day(span.get("start") if isinstance(span, dict) else None)
        end = _element_day(span.get("end")) if isinstance(span, dict) and span.get("end") else day
    except (ValueError, TypeError):
        raise RowError("invalid_date", f"dateRange '{span}' is not a date range") from None
    if end < day:
        raise RowError("invalid_date", f"dateRange '{span}' ends before it starts")
    counts: dict[str, float | None] = {}
    for metric, type_ in METRICS:
        n = element.get(metric)
        if n is None:
            counts[type_] = None
            continue
        ok = isinstance(n, int | float) and not isinstance(n, bool) and 0 <= n < float("inf")
        if not ok:
            raise RowError("invalid_number", f"{metric} '{n}' is not a non-negative number")
        counts[type_] = float(n)
    return Row(org, OrgHints(), day, None if end == day else end, "", counts)


def parse_record(record: Any) -> Row:
    """A stored reject's record (a file row or an API element) as a Row again."""
    if isinstance(record, dict) and "pivotValues" in record:
        return parse_element(record)
    if not isinstance(record, dict):
        raise RowError("invalid_organization", "the stored record is not a row")
    header = [str(h) for h in record]
    cols = _layout(header)
    return parse_file_row(cols, header, ["" if v is None else str(v) for v in record.values()])


# ---- applying rows: resolve, then signals or rejects ---------------------------------------


@dataclass(slots=True)
class Pending:
    row: Row
    record: Callable[[], Any]  # the row as read, built only when it is rejected
    line: int | None = None
    reject_id: str | None = None  # when re-applying a reject


def merged_hints(items: list[Pending]) -> dict[str, OrgHints]:
    """Per organization, what its rows say about it (the first non-empty value of each)."""
    out: dict[str, OrgHints] = {}
    for p in items:
        h = p.row.hints
        known = out.get(p.row.org)
        if known is None:
            out[p.row.org] = OrgHints(h.name, h.vanity, h.website)
            continue
        known.name = known.name or h.name
        known.vanity = known.vanity or h.vanity
        known.website = known.website or h.website
    return out


def _unknown_detail(row: Row) -> str:
    name = f" ({row.hints.name})" if row.hints.name else ""
    return (
        f"LinkedIn organization {row.org}{name} is not mapped to a domain: map it with "
        f"`intently linkedin map {row.org} DOMAIN` or give its account a linkedinUrl, then "
        "re-apply"
    )


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _fingerprint(record: Any) -> bytes:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8")).digest()


class OpenRejects:
    """The open unknown-organization rejects of one run's organizations, as fingerprints of
    their records: a row already waiting there is not rejected twice."""

    def __init__(self, engine: Engine, ws: int) -> None:
        self.engine, self.ws = engine, ws
        self._loaded: set[str] = set()
        self._seen: set[bytes] = set()

    def add(self, record: Any) -> bool:
        """True when the record is new (and now remembered)."""
        fp = _fingerprint(record)
        if fp in self._seen:
            return False
        self._seen.add(fp)
        return True

    def load(self, orgs: set[str]) -> None:
        todo = orgs - self._loaded
        if todo:
            with read_tx(self.engine) as conn:
                self._seen.update(
                    _fingerprint(r) for r in _open_unknown_records(conn, self.ws, todo)
                )
            self._loaded |= todo


def apply_rows(
    engine: Engine,
    ws: int,
    run: IngestRun,
    resolver: OrgResolver,
    items: list[Pending],
    *,
    resolved: dict[str, Match | None] | None = None,
    open_rejects: OpenRejects | None = None,
) -> list[Pending]:
    """Turn resolved rows into signals (zero counts skipped) and unresolved ones into rejects.

    Returns the rows whose organization stayed unknown. Without `open_rejects` (a re-apply)
    they are left alone instead of being rejected again.
    """
    if not items:
        return []
    if resolved is None:
        hints = merged_hints(items)
        resolved = resolver.resolve(hints)
    zero_keys = [
        p.row.key(t)
        for p in items
        if resolved.get(p.row.org) is not None
        for t, n in p.row.counts.items()
        if not n
    ]
    revisable: set[str] = set()
    if zero_keys:
        with read_tx(engine) as conn:
            revisable = set(signals_repo.existing(conn, ws, SOURCE, zero_keys))
    unknown = [p for p in items if resolved.get(p.row.org) is None]
    if unknown and open_rejects is not None:
        open_rejects.load({p.row.org for p in unknown})
    for p in items:
        match = resolved.get(p.row.org)
        if match is None:
            if open_rejects is None:
                continue
            run.read()
            record = p.record()
            if not open_rejects.add(record):
                run.skip("already_rejected")
                continue
            run.reject(UNKNOWN, _unknown_detail(p.row), record, line=p.line, ref=p.row.org)
            continue
        run.read(len(p.row.counts))
        for type_, n in p.row.counts.items():
            if n:
                run.add(p.row.signal(type_, n, match))
            elif p.row.key(type_) in revisable:
                # LinkedIn revised this count to zero: the stored signal follows.
                run.add(p.row.signal(type_, 0.0, match))
            else:
                run.skip("zero_count")
    return unknown


# ---- the file importer -------------------------------------------------------------------


def import_file(
    engine: Engine,
    ws: int,
    path: str | Path,
    *,
    on_progress: Callable[[RunReport, int, int], None] | None = None,
) -> RunReport:
    """Import a LinkedIn company engagement export (CSV or .csv.gz); see the module docstring."""
    with CsvInput(path, what="LinkedIn company engagement export") as inp:
        cols = inp.columns(REQUIRED, OPTIONAL)
        _check_layout(cols, inp.header, inp.path.name)
        progress = (
            None
            if on_progress is None
            else (lambda r: on_progress(r, inp.bytes_read(), inp.total_bytes))
        )
        resolver = OrgResolver(engine, ws)
        open_rejects = OpenRejects(engine, ws)
        with ingest_run(engine, ws, SOURCE, "file", inp.path.name, on_progress=progress) as run:
            pending: list[Pending] = []
            for line, cells in inp.rows():
                try:
                    row = parse_file_row(cols, inp.header, cells)
                except RowError as exc:
                    run.read()
                    run.reject(exc.reason, exc.detail, inp.record(cells), line=line)
                    continue
                pending.append(Pending(row, partial(inp.record, cells), line))
                if len(pending) >= _CHUNK_ROWS:
                    apply_rows(engine, ws, run, resolver, pending, open_rejects=open_rejects)
                    pending = []
            apply_rows(engine, ws, run, resolver, pending, open_rejects=open_rejects)
        return run.report


# ---- re-applying rejects -----------------------------------------------------------------


class _ReapplyRun(IngestRun):
    """An IngestRun whose every write also marks the rejects it re-applied, atomically."""

    def __init__(self, engine: Engine, ws: int) -> None:
        self._marks: list[str] = []
        # Writes happen only when `flush` is called, after whole rejects (never mid-reject).
        super().__init__(
            engine, ws, SOURCE, "reapply", "unknown organizations", batch_size=1 << 62,
            on_flush=self._write_marks,
        )  # fmt: skip

    def mark(self, reject_id: str) -> None:
        self._marks.append(reject_id)

    def _write_marks(self, conn: Connection) -> None:
        marks, self._marks = self._marks, []
        signals_repo.mark_rejects(conn, self.ws, marks, "reapplied")


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def reapply(engine: Engine, ws: int) -> RunReport:
    """Re-process every open `unknown_organization` reject whose organization now maps.

    Each reject's signals and its `reapplied` mark commit in one transaction; rejects whose
    organization still maps to nothing stay open.
    """
    run = _ReapplyRun(engine, ws)
    resolver = OrgResolver(engine, ws)
    try:
        rejects = iter_rejects(engine, ws, source=SOURCE, reason=UNKNOWN, status="open")
        for batch in _batches(rejects, 1000):
            items: list[Pending] = []
            for r in batch:
                try:
                    row = parse_record(r["record"])
                except RowError:
                    continue  # not re-appliable as stored; it stays open for a person to see
                if r["ref"] and row.org != r["ref"]:
                    continue
                items.append(Pending(row, _constant(r["record"]), r["line"], r["id"]))
            unknown = apply_rows(engine, ws, run, resolver, items)
            still = {id(p) for p in unknown}
            for p in items:
                if id(p) not in still and p.reject_id is not None:
                    run.mark(p.reject_id)
            run.flush()
    except BaseException as exc:
        run.finish(error=f"{type(exc).__name__}: {exc}")
        raise
    return run.finish()


# ---- the puller --------------------------------------------------------------------------


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


class LinkedinApi:
    """LinkedIn's REST API with a bearer token: bounded retries, and the token kept out of
    every message."""

    BACKOFF_S = 1.0
    BACKOFF_CAP_S = 30.0
    RETRY_AFTER_CAP_S = 300.0  # a longer wait than this fails the pull instead of hanging it

    def __init__(
        self,
        client: httpx.Client,
        config: PullConfig,
        token: str,
        sleep: Callable[[float], None],
    ) -> None:
        self.client, self.config, self.sleep = client, config, sleep
        self._token = token
        self.last_status = 0
        self.retries = RetryPolicy(
            config.max_tries, self.BACKOFF_S, self.BACKOFF_CAP_S, self.RETRY_AFTER_CAP_S
        )

    def scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "LinkedIn-Version": self.config.version,
            "X-Restli-Protocol-Version": "2.0.0",
            "Accept": "application/json",
        }

    def get(self, url: str, what: str, *, missing_ok: bool = False) -> Any:
        """GET JSON; None for 403/404 when `missing_ok`. Raises LinkedinApiError."""
        try:
            return self.retries.call(lambda: self._once(url, what, missing_ok), self.sleep)
        except GaveUp as exc:
            if exc.wait is not None:
                message = f"{exc.problem}; LinkedIn asked to wait {exc.wait:.0f} s, giving up"
            else:
                message = f"{exc.problem} (gave up after {self.config.max_tries} tries)"
            raise LinkedinApiError(self.scrub(message)) from None

    def _once(self, url: str, what: str, missing_ok: bool) -> Any:
        self.last_status = 0
        try:
            resp = self.client.get(url, headers=self._headers())
        except httpx.TimeoutException:
            raise Retryable(f"LinkedIn {what}: timed out") from None
        except httpx.TransportError as exc:
            raise Retryable(f"LinkedIn {what}: {type(exc).__name__}") from None
        status = self.last_status = resp.status_code
        if status == 429 or status >= 500:
            raise Retryable(
                f"LinkedIn {what}: HTTP {status}{_message(resp)}",
                retry_after_seconds(resp.headers.get("Retry-After")),
            )
        if missing_ok and status in (403, 404):
            return None
        if status == 401:
            raise LinkedinApiError(
                self.scrub(
                    f"LinkedIn {what}: HTTP 401{_message(resp)}: the access token was refused; "
                    "set a fresh one with `intently connections set linkedin -c access_token=...`"
                )
            )
        if status >= 300:
            raise LinkedinApiError(self.scrub(f"LinkedIn {what}: HTTP {status}{_message(resp)}"))
        try:
            return resp.json()
        except ValueError:
            raise LinkedinApiError(f"LinkedIn {what}: the answer is not JSON") from None

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


def _message(resp: httpx.Response) -> str:
    """LinkedIn's error sentence, when the answer has one (short; never the whole body)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    msg = body.get("message") if isinstance(body, dict) else None
    return f": {str(msg)[:300]}" if msg else ""


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
    connection = get_connection(engine, ws, SOURCE, key=settings.credentials_key)
    token = str((connection["credentials"] or {}).get("access_token") or "")
    try:
        if not token:
            raise BadRequest(
                "the linkedin connection has no access_token credential: set it with "
                "`intently connections set linkedin -c access_token=...`"
            )
        config = PullConfig.from_config(dict(connection["config"] or {}))
    except BadRequest as exc:
        save_state(engine, ws, SOURCE, state=None, status="failed", error=exc.custom_message)
        raise
    trailing = int(
        read_source_config(engine, ws, SOURCE, default_settings(SOURCE)).get("trailingDays", 7)
    )
    today = today or datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    last = _day((connection["state"] or {}).get("last_day"))
    start = last - timedelta(days=trailing) if last else today - timedelta(days=config.initial_days)
    end = yesterday
    label = f"adAnalytics {start}..{end}" if start <= end else f"adAnalytics up to date ({last})"

    own_client = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))
    api = LinkedinApi(http, config, token, sleep)
    lookups = _Lookups(api, config.website_lookups)
    resolver = OrgResolver(engine, ws)
    open_rejects = OpenRejects(engine, ws)
    run = IngestRun(engine, ws, SOURCE, "pull", label)
    stored_to = last
    try:
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + timedelta(days=config.days_per_request - 1))
            items: list[Pending] = []
            for element in api.analytics(chunk_start, chunk_end):
                try:
                    row = parse_element(element)
                except RowError as exc:
                    run.read()
                    run.reject(exc.reason, exc.detail, element)
                    continue
                items.append(Pending(row, _constant(element)))
                if len(items) >= _CHUNK_ROWS:
                    resolved = lookups.resolve(resolver, items)
                    apply_rows(engine, ws, run, resolver, items, resolved=resolved,
                               open_rejects=open_rejects)  # fmt: skip
                    items = []
            resolved = lookups.resolve(resolver, items)
            apply_rows(engine, ws, run, resolver, items, resolved=resolved,
                       open_rejects=open_rejects)  # fmt: skip
            run.flush()
            stored_to = chunk_end if stored_to is None else max(stored_to, chunk_end)
            save_state(
                engine, ws, SOURCE, state={"last_day": stored_to.isoformat()}, status="running"
            )
            chunk_start = chunk_end + timedelta(days=1)
    except LinkedinApiError as exc:
        message = api.scrub(exc.custom_message)
        report = run.finish(error=message)
        save_state(engine, ws, SOURCE, state=None, status="failed", error=message)
        return report
    except BaseException as exc:
        message = api.scrub(f"{type(exc).__name__}: {exc}")
        run.finish(error=message)
        save_state(engine, ws, SOURCE, state=None, status="failed", error=message)
        raise
    finally:
        if own_client:
            http.close()
    report = run.finish()
    save_state(engine, ws, SOURCE, state=None, status="done")
    return report


# ---- queries -----------------------------------------------------------------------------


def _stored_orgs(conn: Connection, ws: int, orgs: list[str]) -> dict[str, tuple[str, str]]:
    """org -> (domain, origin) of the workspace's mapping rows for these organizations."""
    out: dict[str, tuple[str, str]] = {}
    t = linkedin_orgs.c
    for i in range(0, len(orgs), 5000):
        q = select(t.org, t.domain, t.origin).where(
            t.workspace_id == ws, t.org.in_(orgs[i : i + 5000])
        )
        for org, domain, origin in conn.execute(q):
            out[org] = (domain, origin)
    return out


def _orgs_by_linkedin_url(
    conn: Connection, ws: int, *, ids: dict[str, str], vanities: dict[str, str]
) -> dict[str, str]:
    """org -> domain of the oldest account whose linkedinUrl names it (by id or vanity name).

    linkedinUrl is free text without an index, so this reads the workspace's accounts that
    have a company URL once per call, streamed; callers ask once per chunk of rows.
    """
    a = accounts_t.c
    url = func.lower(a.linkedin_url)
    q = (
        select(a.domain, a.linkedin_url)
        .where(
            a.workspace_id == ws,
            a.linkedin_url.is_not(None),
            or_(url.like("%linkedin.com/company/%"), url.like("urn:li:%")),
        )
        .order_by(a.created_at, a.id)
        .execution_options(yield_per=2000)
    )
    out: dict[str, str] = {}
    for domain, linkedin_url in conn.execute(q):
        ref = company_ref(linkedin_url)
        if ref is None:
            continue
        org = ids.get(ref[1]) if ref[0] == "id" else vanities.get(ref[1])
        if org is not None and org not in out:
            out[org] = domain
    return out


def _store_websites(conn: Connection, ws: int, rows: list[tuple[str, str, str | None]]) -> None:
    """Keep websites learned for organizations; never over a mapping made by hand."""
    m = param_marker(conn)
    now = now_us()
    conn.exec_driver_sql(
        "INSERT INTO linkedin_orgs (workspace_id, org, domain, name, origin, updated_at) "
        f"VALUES ({m}, {m}, {m}, {m}, 'website', {m}) ON CONFLICT (workspace_id, org) "
        "DO UPDATE SET domain = excluded.domain, "
        "name = COALESCE(excluded.name, linkedin_orgs.name), updated_at = excluded.updated_at "
        "WHERE linkedin_orgs.origin = 'website'",
        [(ws, org, domain, name, now) for org, domain, name in rows],
    )


def _open_unknown_records(conn: Connection, ws: int, orgs: set[str]) -> Iterator[Any]:
    """The records of the open unknown-organization rejects of these organizations."""
    r = signal_rejects.c
    refs = sorted(orgs)
    for i in range(0, len(refs), 5000):
        q = select(r.record).where(
            and_(
                r.workspace_id == ws,
                r.source == SOURCE,
                r.status == "open",
                r.reason == UNKNOWN,
                r.ref.in_(refs[i : i + 5000]),
            )
        )
        for (record,) in conn.execute(q.execution_options(yield_per=2000)):
            yield record
