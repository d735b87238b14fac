"""LinkedIn rows: what a row of the company engagement export or an adAnalytics element
says (an organization, a day or period, a campaign and its counts), and its signals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from intently.catalog import SIGNAL_TYPES
from intently.ingest.files import match_columns
from intently.ingest.linkedin.orgs import (
    InvalidOrganization,
    Match,
    OrgHints,
    company_ref,
    normalise_org,
)
from intently.kit.domains import try_normalise_domain
from intently.kit.timefmt import US_PER_DAY
from intently.signals.store import SignalIn

SOURCE = "linkedin"
PROVIDER = "linkedin"

# Signal type per count, in the order a row's readings are taken.
TYPES = SIGNAL_TYPES[SOURCE]

_EPOCH = date(1970, 1, 1)


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
    return match_columns(headers, {**REQUIRED, **OPTIONAL})


# What the header must hold, as the error names it.
EXPECTED = ", ".join(a[0] for a in REQUIRED.values()) + (
    ", an organization column and a date or period"
)


def missing_columns(cols: dict[str, int]) -> list[str]:
    """Every column (or choice of columns) the file lacks, in the order EXPECTED names them."""
    missing = [aliases[0] for name, aliases in REQUIRED.items() if name not in cols]
    if "urn" not in cols and "page" not in cols:
        missing.append("Organization URN or Company Page URL")
    if "day" not in cols and not ("start" in cols and "end" in cols):
        missing.append("Date, or Start Date and End Date")
    return missing


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
